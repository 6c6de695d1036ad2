"""Checks for notebook 01: scaled dot-product attention, splitting and merging heads, multi-head attention."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minirims.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from minirims.course.checks._core import (
    ATOL,
    ExerciseFailure,
    _call,
    _close,
    _compare,
    _expect_tuple,
    _first_match,
    _gen,
    _randn,
    _require_callable,
    _seeded,
    passed,
)

__all__ = ["check_attention", "check_split_heads", "check_merge_heads", "check_multi_head_attention"]

SEED = 1234


def _random_key_mask(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """A bool mask with about 1/3 False, but at least one True in every row (no fully masked query)."""
    mask = torch.rand(*shape, generator=gen) > 0.33
    mask[..., 0] |= ~mask.any(dim=-1)
    return mask


# ----------------------------------------------------------------------------------------------------------
# scaled dot-product attention


def _weights_variant(
    q: Tensor,
    k: Tensor,
    mask: Tensor | None,
    scale: float,
    dim: int = -1,
    invert: bool = False,
    fill=-math.inf,
) -> Tensor:
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    return torch.softmax(scores, dim=dim)


def _attention_hint(got_w: Any, q: Tensor, k: Tensor, mask: Tensor | None, exp_w: Tensor) -> str:
    root = 1 / math.sqrt(q.shape[-1])
    candidates = [
        (
            "the weights match softmax(q k^T) without the 1/sqrt(d_k) scaling; divide the scores by "
            "sqrt(d_k) = sqrt(q.shape[-1])",
            lambda: _weights_variant(q, k, mask, 1.0),
        ),
        (
            "the weights match softmax(q k^T / d_k); scale by 1/sqrt(d_k), not 1/d_k",
            lambda: _weights_variant(q, k, mask, 1.0 / q.shape[-1]),
        ),
        (
            "the softmax runs over the query dimension; take it over the keys (the last dim, dim=-1)",
            lambda: _weights_variant(q, k, mask, root, dim=-2),
        ),
    ]
    if mask is not None:
        candidates += [
            (
                "the weights match attention without the mask; set the scores to -inf where mask is False "
                "before the softmax",
                lambda: _weights_variant(q, k, None, root),
            ),
            (
                "the mask is inverted: True means 'may attend', so block the positions where mask is False",
                lambda: _weights_variant(q, k, mask, root, invert=True),
            ),
            (
                "you filled the masked scores with 0, but 0 is an ordinary score (exp(0) = 1), so masked "
                "keys still get weight; fill with float('-inf'), whose softmax weight is exactly 0",
                lambda: _weights_variant(q, k, mask, root, fill=0.0),
            ),
        ]
    found = _first_match(got_w, candidates)
    if not found and mask is not None and isinstance(got_w, Tensor) and got_w.shape == exp_w.shape:
        leak = got_w.detach().masked_fill(mask, 0.0).abs()
        if bool((leak > ATOL).any()):
            found = (
                f"where mask is False the weight must be exactly 0, but yours reach {float(leak.max()):.3g} "
                "there; set those scores to float('-inf') before the softmax"
            )
    return found


def _attention_cases() -> list[tuple[str, tuple[Tensor, ...]]]:
    g = [_gen(SEED + i) for i in range(4)]
    q, k, v = _randn(g[1], 2, 3, 4, 8), _randn(g[1], 2, 3, 6, 8), _randn(g[1], 2, 3, 6, 5)
    return [
        (
            "case 1: q (2, 3, 4), k (2, 5, 4), v (2, 5, 6), no mask",
            (_randn(g[0], 2, 3, 4), _randn(g[0], 2, 5, 4), _randn(g[0], 2, 5, 6)),
        ),
        (
            "case 2: q (2, 3, 4, 8), k (2, 3, 6, 8), v (2, 3, 6, 5), mask (2, 3, 4, 6)",
            (q, k, v, _random_key_mask(g[1], (2, 3, 4, 6))),
        ),
        (
            "case 3: q, k, v (1, 7, 3), causal mask (7, 7) broadcast over the batch",
            (*(_randn(g[2], 1, 7, 3) for _ in range(3)), torch.ones(7, 7, dtype=torch.bool).tril()),
        ),
        (
            "case 4: odd sizes q (3, 1, 9), k (3, 5, 9), v (3, 5, 2), mask (3, 1, 5)",
            (3.0 * _randn(g[3], 3, 1, 9), _randn(g[3], 3, 5, 9), _randn(g[3], 3, 5, 2))
            + (_random_key_mask(g[3], (3, 1, 5)),),
        ),
    ]


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
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        exp_out, exp_w = scaled_dot_product_attention(q, k, v, mask)
        got_out, got_w = _expect_tuple(name, got, label, ("out", "weights"), "pair")
        if _close(got_out, exp_w) and _close(got_w, exp_out) and exp_w.shape != exp_out.shape:
            raise ExerciseFailure(f"{name} ({label}): you returned (weights, out); return (out, weights)")
        _compare(name, got_w, exp_w, f"weights ({label})", _attention_hint, (got_w, q, k, mask, exp_w))
        read_hint = "the weights are right; the read is weights @ v" if got_out is not None else ""
        _compare(name, got_out, exp_out, f"out ({label})", read_hint)
    passed(name, f"{len(cases)} cases (with and without a mask, extra batch dims, odd sizes)")


# ----------------------------------------------------------------------------------------------------------
# heads


def _split_hint(got: Any, x: Tensor, heads: int) -> str:
    b, length, features = x.shape
    d = features // heads
    return _first_match(
        got,
        [
            (
                "you reshaped (B, L, H*d) straight to (B, H, L, d), which mixes positions into heads; "
                "reshape to (B, L, H, d) first, then swap dims 1 and 2",
                lambda: x.reshape(b, heads, length, d),
            ),
            (
                "the heads are interleaved (head h got features h, h+H, h+2H, ...); head h must hold the "
                "contiguous block h*d:(h+1)*d, so reshape to (B, L, H, d), not (B, L, d, H)",
                lambda: x.reshape(b, length, d, heads).permute(0, 3, 1, 2),
            ),
        ],
    )


def check_split_heads(fn: Callable[..., Any]) -> None:
    """Check ``split_heads(x (B, L, H*d), n_heads) -> (B, H, L, d)``: head h holds features h*d:(h+1)*d."""
    _require_callable(fn)
    name = "split_heads"
    settings = [((2, 5, 12), 3), ((1, 4, 8), 8), ((3, 2, 6), 1), ((2, 7, 10), 2)]
    for i, (shape, heads) in enumerate(settings):
        label, x = f"case {i + 1}: x {shape}, n_heads={heads}", _randn(_gen(SEED + 10 + i), *shape)
        got = _call(name, fn, (x.clone(), heads), label)
        what = f"output (B, H, L, d) ({label})"
        _compare(name, got, split_heads(x, heads), what, _split_hint, (got, x, heads), per=(1, "head"))
    passed(name, f"{len(settings)} cases (1 to 8 heads)")


def _merge_hint(got: Any, x: Tensor) -> str:
    b, heads, length, d = x.shape
    return _first_match(
        got,
        [
            (
                "you reshaped (B, H, L, d) straight to (B, L, H*d), which mixes heads into positions; swap "
                "dims 1 and 2 first (x.transpose(1, 2)), then reshape",
                lambda: x.reshape(b, length, heads * d),
            ),
            (
                "the heads are interleaved in the features; the features of head h must be the contiguous "
                "block h*d:(h+1)*d, so transpose to (B, L, H, d) before the reshape",
                lambda: x.permute(0, 2, 3, 1).reshape(b, length, heads * d),
            ),
        ],
    )


def check_merge_heads(fn: Callable[..., Any]) -> None:
    """Check ``merge_heads(x (B, H, L, d)) -> (B, L, H*d)``, the inverse of ``split_heads``."""
    _require_callable(fn)
    name = "merge_heads"
    shapes = [(2, 3, 5, 4), (1, 8, 4, 1), (3, 1, 2, 6), (2, 2, 7, 5)]
    for i, shape in enumerate(shapes):
        label, x = f"case {i + 1}: x {shape}", _randn(_gen(SEED + 20 + i), *shape)
        got = _call(name, fn, (x.clone(),), label)
        b, heads, length, d = shape
        per = (2, "head", lambda t, b=b, length=length, heads=heads, d=d: t.reshape(b, length, heads, d))
        _compare(name, got, merge_heads(x), f"output (B, L, H*d) ({label})", _merge_hint, (got, x), per=per)
    passed(name, f"{len(shapes)} cases (1 to 8 heads)")


# ----------------------------------------------------------------------------------------------------------
# multi-head key-value attention


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
        with _seeded(SEED + 30 + i):
            mha = MultiHeadAttention(dq, dkv, heads, d_k, d_v, d_out).eval()
        with torch.no_grad():  # bigger weights: decisive attention, so a head mix-up shows
            for p in mha.parameters():
                p.mul_(2.0)
        g = _gen(SEED + 30 + i)
        args: tuple[Tensor, ...] = (_randn(g, b, lq, dq), _randn(g, b, lk, dkv))
        label = f"case {i + 1}: H={heads}, d_k={d_k}, d_v={d_v}, query (B={b}, Lq={lq}), key_value (Lk={lk})"
        if with_mask:
            args += (_random_key_mask(g, (b, 1, lq, lk)),)
            label += ", mask (B, 1, Lq, Lk)"
        cases.append((label, mha, args))
    return cases


def _mha_hint(
    got_w: Any, mha: MultiHeadAttention, query: Tensor, key_value: Tensor, mask: Tensor | None = None
):
    def interleaved(x: Tensor) -> Tensor:
        b, length, features = x.shape
        return x.reshape(b, length, features // mha.n_heads, mha.n_heads).permute(0, 3, 1, 2)

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
                    *(
                        interleaved(p(x))
                        for p, x in ((mha.query, query), (mha.key, key_value), (mha.value, key_value))
                    ),
                    mask,
                )[1],
            ),
        ],
    )


def check_multi_head_attention(fn: Callable[..., Any]) -> None:
    """Check ``multi_head_attention(mha, query, key_value, mask=None) -> (out, weights)``.

    ``mha`` is a :class:`~minirims.attention.MultiHeadAttention` whose layers (``mha.query``, ``mha.key``,
    ``mha.value``, ``mha.out``) and ``mha.n_heads`` the function must use; the result must equal
    ``mha(query, key_value, mask)``: out (B, Lq, d_out), weights (B, H, Lq, Lk).
    """
    _require_callable(fn)
    name = "multi_head_attention"
    cases = _mha_cases()
    for index, (label, learners, args) in enumerate(cases):
        with torch.no_grad():
            got = _call(name, fn, (learners, *(t.clone() for t in args)), label)
            mha = _mha_cases()[index][1]  # built anew: the learner's function may have changed its copy
            exp_out, exp_w = mha(*args)
            got_out, got_w = _expect_tuple(name, got, label, ("out", "weights"), "pair")
            what = f"weights (B, H, Lq, Lk) ({label})"
            _compare(name, got_w, exp_w, what, _mha_hint, (got_w, mha, *args), per=(1, "head"))
        _compare(
            name,
            got_out,
            exp_out,
            f"out (B, Lq, d_out) ({label})",
            "the weights are right: check merge_heads and the final projection mha.out",
        )
    passed(name, f"{len(cases)} cases (1 to 4 heads, with and without a mask)")
