"""Checks for notebooks 01 (attention) and 02 (independent dynamics). See :mod:`minirims.checks`.

Every check takes the learner's function, calls it on fixed, seeded inputs (several cases: with and without a
mask, odd sizes), compares with the package's reference and prints one ``✔ <name> passed: ...`` line, or
raises :class:`~minirims.checks_base.ExerciseFailure` saying what differs (which output, shape, dtype, the
first differing entry, which head or module) and, when the answer matches a common mistake (no
``1/sqrt(d_k)``, heads interleaved, gates in the wrong order, ...), what that mistake probably is.

A ``NotImplementedError`` from the learner's function (the blanked exercise) propagates unchanged. A
learner's function that is not callable is a ``ValueError`` naming the argument.

Checks (notebook: exercise -> learner signature):

- 01: :func:`check_attention` -> ``attention(q, k, v, mask=None) -> (out, weights)``
- 01: :func:`check_split_heads` -> ``split_heads(x (B, L, H*d), n_heads) -> (B, H, L, d)``
- 01: :func:`check_merge_heads` -> ``merge_heads(x (B, H, L, d)) -> (B, L, H*d)``
- 01: :func:`check_multi_head_attention` -> ``multi_head_attention(mha, query, key_value, mask=None)
  -> (out (B, Lq, d_out), weights (B, H, Lq, Lk))``
- 02: :func:`check_group_linear` -> ``group_linear(x (B, n, d_in), weight (n, d_in, d_out), bias (n, d_out) or
  None) -> (B, n, d_out)``
- 02: :func:`check_group_lstm_step` -> ``group_lstm_step(x, h, c, weight_ih, weight_hh, bias) -> (h, c)``
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from minirims.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from minirims.checks_base import ExerciseFailure, compare, passed
from minirims.group import GroupLinear, GroupLSTMCell

__all__ = [
    "check_attention",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
    "check_group_linear",
    "check_group_lstm_step",
]

ATOL = 1e-5
RTOL = 1e-4
SEED = 1234


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _require_callable(fn: object, argument: str = "fn") -> None:
    if not callable(fn):
        raise ValueError(
            f"{argument}: expected your function (a callable), got {type(fn).__name__}; "
            "pass the function itself, e.g. check(my_function), not my_function(...)"
        )


def _call(name: str, fn: Callable[..., Any], args: Sequence[Any], label: str) -> Any:
    """Call the learner's function; NotImplementedError passes through, anything else becomes a failure."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise ExerciseFailure(f"{name}: your function raised {type(err).__name__} on {label}: {err}") from err


def _expect_pair(name: str, got: Any, label: str, first: str, second: str) -> tuple[Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        what = (
            f"a {type(got).__name__} of {len(got)} items"
            if isinstance(got, (tuple, list))
            else type(got).__name__
        )
        raise ExerciseFailure(f"{name} ({label}): expected a pair ({first}, {second}), got {what}")
    return got[0], got[1]


def _close(got: Any, expected: Tensor) -> bool:
    return (
        isinstance(got, Tensor)
        and tuple(got.shape) == tuple(expected.shape)
        and got.dtype == expected.dtype
        and bool(torch.allclose(got.detach(), expected, atol=ATOL, rtol=RTOL, equal_nan=True))
    )


def _differing(
    got: Tensor, expected: Tensor, dim: int, noun: str, view: Callable[[Tensor], Tensor] | None = None
) -> str:
    """'; it differs for head(s) 1, 2 of 4' -- which slices along ``dim`` hold a mismatch ('' if none).

    ``view`` reshapes both tensors first (e.g. (B, L, H*d) -> (B, L, H, d) to name heads).
    """
    if not isinstance(got, Tensor) or got.shape != expected.shape or got.dtype != expected.dtype:
        return ""
    if view is not None:
        got, expected = view(got), view(expected)
    bad = ~torch.isclose(got.detach(), expected, atol=ATOL, rtol=RTOL)
    if not bool(bad.any()):
        return ""
    other = [d for d in range(bad.dim()) if d != dim % bad.dim()]
    per = bad.any(dim=tuple(other)) if other else bad
    which = [str(i) for i in torch.nonzero(per).flatten().tolist()]
    total = expected.shape[dim]
    plural = "s" if len(which) > 1 else ""
    if len(which) == total:
        return f"; it differs for every {noun} ({total})"
    return f"; it differs for {noun}{plural} {', '.join(which)} of {total} (counting from 0)"


def _compare(
    name: str,
    got: Any,
    expected: Tensor,
    what: str,
    diagnose: Callable[[], str] | None = None,
    per: tuple[int, str] | tuple[int, str, Callable[[Tensor], Tensor]] | None = None,
) -> None:
    """compare() plus, on a value mismatch, which head/module differs and a likely-mistake hint."""
    try:
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)
    except ExerciseFailure as err:
        message = str(err)
        if per is not None:
            message += _differing(got, expected, *per)
        hint = diagnose() if diagnose is not None else ""
        if hint:
            message += f". Hint: {hint}"
        raise ExerciseFailure(message) from None


def _first_match(got: Any, candidates: Sequence[tuple[str, Callable[[], Any]]]) -> str:
    """The hint of the first candidate mistake whose output equals ``got`` ('' if none)."""
    for hint, make in candidates:
        try:
            alternative = make()
        except Exception:  # a candidate that does not apply to these shapes
            continue
        if _close(got, alternative):
            return hint
    return ""


def _generator(case: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + case)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen)


def _random_mask(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """A bool mask with about 1/3 False, but at least one True in every row (no fully masked query)."""
    mask = torch.rand(*shape, generator=gen) > 0.33
    mask[..., 0] |= ~mask.any(dim=-1)
    return mask


# ----------------------------------------------------------------------------------------------------------
# 01: scaled dot-product attention


def _attention_variant(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, scale: float, dim: int = -1, invert: bool = False
) -> tuple[Tensor, Tensor]:
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return weights @ v, weights


def _attention_cases() -> list[tuple[str, tuple[Tensor, ...]]]:
    cases = []
    g = _generator(0)
    cases.append(
        (
            "case 1: q (2, 3, 4), k (2, 5, 4), v (2, 5, 6), no mask",
            (_randn(g, 2, 3, 4), _randn(g, 2, 5, 4), _randn(g, 2, 5, 6)),
        )
    )
    g = _generator(1)
    q, k, v = _randn(g, 2, 3, 4, 8), _randn(g, 2, 3, 6, 8), _randn(g, 2, 3, 6, 5)
    cases.append(
        (
            "case 2: q (2, 3, 4, 8), k (2, 3, 6, 8), v (2, 3, 6, 5), mask (2, 3, 4, 6)",
            (q, k, v, _random_mask(g, (2, 3, 4, 6))),
        )
    )
    g = _generator(2)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    cases.append(
        (
            "case 3: q, k, v (1, 7, 3), causal mask (7, 7) broadcast over the batch",
            (_randn(g, 1, 7, 3), _randn(g, 1, 7, 3), _randn(g, 1, 7, 3), causal),
        )
    )
    g = _generator(3)
    cases.append(
        (
            "case 4: odd sizes q (3, 1, 9), k (3, 5, 9), v (3, 5, 2), mask (3, 1, 5)",
            (3.0 * _randn(g, 3, 1, 9), _randn(g, 3, 5, 9), _randn(g, 3, 5, 2), _random_mask(g, (3, 1, 5))),
        )
    )
    return cases


def check_attention(fn: Callable[..., Any]) -> None:
    """Check ``attention(q, k, v, mask=None) -> (out, weights)`` against the reference.

    ``out = softmax(q k^T / sqrt(d_k)) v`` of shape (..., Lq, d_v) and ``weights`` (..., Lq, Lk); where the
    bool ``mask`` is False the weight must be exactly 0. Cases: no mask, a random mask over extra batch dims,
    a broadcast causal mask, odd sizes. The mask is passed positionally when there is one.
    """
    _require_callable(fn)
    name = "attention"
    cases = _attention_cases()
    for label, args in cases:
        q, k, v = args[:3]
        mask = args[3] if len(args) == 4 else None
        exp_out, exp_w = scaled_dot_product_attention(q, k, v, mask)
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        got_out, got_w = _expect_pair(name, got, label, "out", "weights")
        if _close(got_out, exp_w) and _close(got_w, exp_out) and exp_w.shape != exp_out.shape:
            raise ExerciseFailure(f"{name} ({label}): you returned (weights, out); return (out, weights)")
        d_k = q.shape[-1]

        def diagnose(
            got_w: Any = got_w,
            q: Tensor = q,
            k: Tensor = k,
            v: Tensor = v,
            mask: Tensor | None = mask,
            d_k: int = d_k,
        ) -> str:
            candidates = [
                (
                    "the weights match softmax(q k^T) without the 1/sqrt(d_k) scaling; divide the scores by "
                    "sqrt(d_k) = sqrt(q.shape[-1])",
                    lambda: _attention_variant(q, k, v, mask, scale=1.0)[1],
                ),
                (
                    "the weights match softmax(q k^T / d_k); scale by 1/sqrt(d_k), not 1/d_k",
                    lambda: _attention_variant(q, k, v, mask, scale=1.0 / d_k)[1],
                ),
                (
                    "the softmax runs over the query dimension; take it over the keys (the last dim, dim=-1)",
                    lambda: _attention_variant(q, k, v, mask, scale=1 / math.sqrt(d_k), dim=-2)[1],
                ),
            ]
            if mask is not None:
                candidates += [
                    (
                        "the weights match attention without the mask; set the scores to -inf where mask is "
                        "False before the softmax",
                        lambda: _attention_variant(q, k, v, None, scale=1 / math.sqrt(d_k))[1],
                    ),
                    (
                        "the mask is inverted: True means 'may attend', so block the positions where mask "
                        "is False",
                        lambda: _attention_variant(q, k, v, mask, scale=1 / math.sqrt(d_k), invert=True)[1],
                    ),
                ]
            return _first_match(got_w, candidates)

        _compare(name, got_w, exp_w, f"weights ({label})", diagnose)
        _compare(
            name,
            got_out,
            exp_out,
            f"out ({label})",
            lambda got_out=got_out: (
                "the weights are right; the read is weights @ v" if got_out is not None else ""
            ),
        )
    passed(name, f"{len(cases)} cases (with and without a mask, extra batch dims, odd sizes)")


# ----------------------------------------------------------------------------------------------------------
# 01: heads


def _split_cases() -> list[tuple[str, Tensor, int]]:
    out = []
    for i, (shape, heads) in enumerate([((2, 5, 12), 3), ((1, 4, 8), 8), ((3, 2, 6), 1), ((2, 7, 10), 2)]):
        out.append((f"case {i + 1}: x {shape}, n_heads={heads}", _randn(_generator(10 + i), *shape), heads))
    return out


def check_split_heads(fn: Callable[..., Any]) -> None:
    """Check ``split_heads(x (B, L, H*d), n_heads) -> (B, H, L, d)``: head h holds features h*d:(h+1)*d."""
    _require_callable(fn)
    name = "split_heads"
    cases = _split_cases()
    for label, x, heads in cases:
        expected = split_heads(x, heads)
        got = _call(name, fn, (x.clone(), heads), label)
        b, length, features = x.shape
        d = features // heads

        def diagnose(
            got: Any = got, x: Tensor = x, b: int = b, length: int = length, d: int = d, heads: int = heads
        ) -> str:
            return _first_match(
                got,
                [
                    (
                        "you reshaped (B, L, H*d) straight to (B, H, L, d), which mixes positions into "
                        "heads; reshape to (B, L, H, d) first, then swap dims 1 and 2",
                        lambda: x.reshape(b, heads, length, d),
                    ),
                    (
                        "the heads are interleaved (head h got features h, h+H, h+2H, ...); head h must "
                        "hold the contiguous block h*d:(h+1)*d, so reshape to (B, L, H, d), not (B, L, d, H)",
                        lambda: x.reshape(b, length, d, heads).permute(0, 3, 1, 2),
                    ),
                ],
            )

        _compare(name, got, expected, f"output (B, H, L, d) ({label})", diagnose, per=(1, "head"))
    passed(name, f"{len(cases)} cases (1 to 8 heads)")


def _merge_cases() -> list[tuple[str, Tensor]]:
    shapes = [(2, 3, 5, 4), (1, 8, 4, 1), (3, 1, 2, 6), (2, 2, 7, 5)]
    return [
        (f"case {i + 1}: x {shape}", _randn(_generator(20 + i), *shape)) for i, shape in enumerate(shapes)
    ]


def check_merge_heads(fn: Callable[..., Any]) -> None:
    """Check ``merge_heads(x (B, H, L, d)) -> (B, L, H*d)``, the inverse of ``split_heads``."""
    _require_callable(fn)
    name = "merge_heads"
    cases = _merge_cases()
    for label, x in cases:
        expected = merge_heads(x)
        got = _call(name, fn, (x.clone(),), label)
        b, heads, length, d = x.shape

        def diagnose(
            got: Any = got, x: Tensor = x, b: int = b, heads: int = heads, length: int = length, d: int = d
        ) -> str:
            return _first_match(
                got,
                [
                    (
                        "you reshaped (B, H, L, d) straight to (B, L, H*d), which mixes heads into "
                        "positions; swap dims 1 and 2 first (x.transpose(1, 2)), then reshape",
                        lambda: x.reshape(b, length, heads * d),
                    ),
                    (
                        "the heads are interleaved in the features; the features of head h must be the "
                        "contiguous block h*d:(h+1)*d, so transpose to (B, L, H, d) before the reshape",
                        lambda: x.permute(0, 2, 3, 1).reshape(b, length, heads * d),
                    ),
                ],
            )

        _compare(
            name,
            got,
            expected,
            f"output (B, L, H*d) ({label})",
            diagnose,
            per=(2, "head", lambda t, b=b, length=length, heads=heads, d=d: t.reshape(b, length, heads, d)),
        )
    passed(name, f"{len(cases)} cases (1 to 8 heads)")


# ----------------------------------------------------------------------------------------------------------
# 01: multi-head key-value attention


def _mha_cases() -> list[tuple[str, MultiHeadAttention, tuple[Tensor, ...]]]:
    settings = [
        # (d_query, d_kv, H, d_k, d_v, d_out, B, Lq, Lk, mask)
        (6, 5, 2, 3, 4, None, 2, 3, 5, False),
        (8, 8, 4, 2, 3, 7, 2, 4, 4, True),
        (3, 7, 1, 5, 2, None, 1, 1, 6, False),
        (5, 4, 3, 4, 1, 2, 3, 2, 3, True),
    ]
    cases = []
    for i, (dq, dkv, heads, d_k, d_v, d_out, b, lq, lk, with_mask) in enumerate(settings):
        torch_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(SEED + 30 + i)
            mha = MultiHeadAttention(dq, dkv, heads, d_k, d_v, d_out).eval()
        finally:
            torch.random.set_rng_state(torch_state)
        with torch.no_grad():  # bigger weights: decisive attention, so a head mix-up shows
            for p in mha.parameters():
                p.mul_(2.0)
        g = _generator(30 + i)
        args: tuple[Tensor, ...] = (_randn(g, b, lq, dq), _randn(g, b, lk, dkv))
        label = f"case {i + 1}: H={heads}, d_k={d_k}, d_v={d_v}, query (B={b}, Lq={lq}), key_value (Lk={lk})"
        if with_mask:
            args += (_random_mask(g, (b, 1, lq, lk)),)
            label += ", mask (B, 1, Lq, Lk)"
        cases.append((label, mha, args))
    return cases


def check_multi_head_attention(fn: Callable[..., Any]) -> None:
    """Check ``multi_head_attention(mha, query, key_value, mask=None) -> (out, weights)``.

    ``mha`` is a :class:`~minirims.attention.MultiHeadAttention` whose layers (``mha.query``, ``mha.key``,
    ``mha.value``, ``mha.out``) and ``mha.n_heads`` the function must use; the result must equal
    ``mha(query, key_value, mask)``: out (B, Lq, d_out), weights (B, H, Lq, Lk).
    """
    _require_callable(fn)
    name = "multi_head_attention"
    cases = _mha_cases()
    for label, mha, args in cases:
        with torch.no_grad():
            exp_out, exp_w = mha(*args)
            got = _call(name, fn, (mha, *(t.clone() for t in args)), label)
        got_out, got_w = _expect_pair(name, got, label, "out", "weights")

        def diagnose_w(got_w: Any = got_w, mha: MultiHeadAttention = mha, args: tuple = args) -> str:
            query, key_value = args[:2]
            mask = args[2] if len(args) == 3 else None
            heads = mha.n_heads

            def interleaved(x: Tensor) -> Tensor:
                b, length, features = x.shape
                return x.reshape(b, length, features // heads, heads).permute(0, 3, 1, 2)

            return _first_match(
                got_w,
                [
                    (
                        "the weights match attention without the mask; pass the mask on to the attention",
                        lambda: mha(query, key_value)[1],
                    ),
                    (
                        "the heads are interleaved; split with split_heads (head h = features h*d:(h+1)*d)",
                        lambda: scaled_dot_product_attention(
                            interleaved(mha.query(query)),
                            interleaved(mha.key(key_value)),
                            interleaved(mha.value(key_value)),
                            mask,
                        )[1],
                    ),
                ],
            )

        _compare(name, got_w, exp_w, f"weights (B, H, Lq, Lk) ({label})", diagnose_w, per=(1, "head"))
        _compare(
            name,
            got_out,
            exp_out,
            f"out (B, Lq, d_out) ({label})",
            lambda: "the weights are right: check merge_heads and the final projection mha.out",
        )
    passed(name, f"{len(cases)} cases (1 to 4 heads, with and without a mask)")


# ----------------------------------------------------------------------------------------------------------
# 02: group linear


def _group_linear_cases() -> list[tuple[str, tuple[Any, ...]]]:
    settings = [(2, 3, 4, 5, True), (3, 1, 6, 2, True), (4, 5, 3, 3, False), (1, 6, 7, 1, True)]
    cases = []
    for i, (b, n, d_in, d_out, bias) in enumerate(settings):
        g = _generator(40 + i)
        x, weight = _randn(g, b, n, d_in), _randn(g, n, d_in, d_out)
        label = f"case {i + 1}: x (B={b}, n={n}, d_in={d_in}), weight ({n}, {d_in}, {d_out})"
        label += ", bias" if bias else ", bias=None"
        cases.append((label, (x, weight, _randn(g, n, d_out) if bias else None)))
    return cases


def check_group_linear(fn: Callable[..., Any]) -> None:
    """Check ``group_linear(x, weight, bias) -> y``, y[:, i] = x[:, i] @ weight[i] + bias[i].

    Shapes: x (B, n, d_in), weight (n, d_in, d_out), bias (n, d_out) or None -> y (B, n, d_out).
    Cases include ``bias=None``, one module, and non-square weights (so a transposed weight shows).
    """
    _require_callable(fn)
    name = "group_linear"
    cases = _group_linear_cases()
    for label, (x, weight, bias) in cases:
        ref = GroupLinear(*weight.shape, bias=bias is not None)
        with torch.no_grad():
            ref.weight.copy_(weight)
            if bias is not None:
                ref.bias.copy_(bias)
            expected = ref(x)
        got = _call(name, fn, (x.clone(), weight.clone(), None if bias is None else bias.clone()), label)

        def diagnose(
            got: Any = got, x: Tensor = x, weight: Tensor = weight, bias: Tensor | None = bias
        ) -> str:
            plain = torch.einsum("bni,nio->bno", x, weight)
            candidates = [
                (
                    "every module used module 0's weights; module i must use weight[i] (keep n in the einsum "
                    "output: 'bni,nio->bno')",
                    lambda: torch.einsum("bni,io->bno", x, weight[0]) + (0 if bias is None else bias[0]),
                ),
                (
                    "the inputs of all modules were summed; keep n in the output ('bni,nio->bno', not "
                    "'bni,nio->bo')",
                    lambda: plain.sum(1, keepdim=True).expand_as(plain) + (0 if bias is None else bias),
                ),
            ]
            if bias is not None:
                candidates.insert(
                    0,
                    (
                        "the output matches x @ weight without the bias; add bias (n, d_out), "
                        "which broadcasts over the batch",
                        lambda: plain,
                    ),
                )
            return _first_match(got, candidates)

        _compare(name, got, expected, f"output (B, n, d_out) ({label})", diagnose, per=(1, "module"))
    passed(name, f"{len(cases)} cases (with and without bias, 1 to 4 modules)")


# ----------------------------------------------------------------------------------------------------------
# 02: one GroupLSTMCell step


def _lstm_with_order(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor, order: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """An LSTM step that reads the four gate chunks in ``order`` (indices into i, f, g, o)."""
    gates = torch.einsum("bni,nio->bno", x, w_ih) + torch.einsum("bnh,nho->bno", h, w_hh) + bias
    chunks = gates.chunk(4, dim=-1)
    i, f, g, o = (chunks[j] for j in order)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _lstm_cases() -> list[tuple[str, tuple[Tensor, ...]]]:
    settings = [(2, 3, 5, 4), (1, 1, 3, 2), (3, 4, 2, 6), (2, 6, 7, 3)]
    cases = []
    for i, (b, n, d_in, d_h) in enumerate(settings):
        g = _generator(50 + i)
        args = (
            _randn(g, b, n, d_in),
            0.5 * _randn(g, b, n, d_h),
            _randn(g, b, n, d_h),
            0.5 * _randn(g, n, d_in, 4 * d_h),
            0.5 * _randn(g, n, d_h, 4 * d_h),
            0.5 * _randn(g, n, 4 * d_h),
        )
        cases.append((f"case {i + 1}: B={b}, n={n}, d_in={d_in}, d_h={d_h}", args))
    return cases


_GATES = "ifgo"


def check_group_lstm_step(fn: Callable[..., Any]) -> None:
    """Check ``group_lstm_step(x, h, c, weight_ih, weight_hh, bias) -> (h_new, c_new)``.

    Shapes: x (B, n, d_in); h, c (B, n, d_h); weight_ih (n, d_in, 4*d_h); weight_hh (n, d_h, 4*d_h);
    bias (n, 4*d_h); gate order i, f, g, o (as ``nn.LSTMCell`` and :class:`~minirims.group.GroupLSTMCell`).
    """
    _require_callable(fn)
    name = "group_lstm_step"
    cases = _lstm_cases()
    for label, args in cases:
        x, h, c, w_ih, w_hh, bias = args
        n, d_in, four_dh = w_ih.shape
        ref = GroupLSTMCell(n, d_in, four_dh // 4)
        with torch.no_grad():
            ref.weight_ih.copy_(w_ih)
            ref.weight_hh.copy_(w_hh)
            ref.bias.copy_(bias)
            exp_h, exp_c = ref(x, (h, c))
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        got_h, got_c = _expect_pair(name, got, label, "h_new", "c_new")

        def diagnose(got_c: Any = got_c, args: tuple = args) -> str:
            candidates = []
            for order in itertools.permutations(range(4)):
                if order == (0, 1, 2, 3):
                    continue
                words = ", ".join(_GATES[j] for j in order)
                candidates.append(
                    (
                        f"your c_new matches the chunks read as gates in the order ({words}); the stacked "
                        "weights hold the gates in PyTorch's order: i, f, g, o = gates.chunk(4, dim=-1)",
                        lambda order=order: _lstm_with_order(*args, order=order)[1],
                    )
                )
            return _first_match(got_c, candidates)

        _compare(name, got_c, exp_c, f"c_new (B, n, d_h) ({label})", diagnose, per=(1, "module"))
        _compare(
            name,
            got_h,
            exp_h,
            f"h_new (B, n, d_h) ({label})",
            lambda: "c_new is right; h_new = sigmoid(o) * tanh(c_new) (the new cell state, not the old)",
            per=(1, "module"),
        )
    passed(name, f"{len(cases)} cases (1 to 6 modules, odd sizes)")
