"""Checks for notebook 03: input attention over [null, inputs] and the top-k mask of the winning modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minirims.competition import InputAttention, null_attention, topk_mask
from minirims.course.checks._core import (
    ExerciseFailure,
    _call,
    _compare,
    _compare_mask,
    _expect_tuple,
    _failure,
    _first_match,
    _fmt_shape,
    _gen,
    _randn,
    _require_callable,
    _seeded,
    passed,
)

__all__ = ["check_input_attention", "check_topk_mask"]

SEED = 3141


# ----------------------------------------------------------------------------------------------------------
# input attention over [null, inputs]


def _slot_scores(
    x: Tensor, h: Tensor, inp: InputAttention, *, null_first: bool = True, null_value: float = 0.0
) -> Tensor:
    """Unscaled scores (B, n, 1+m) with the null slot first (the reference) or last (a common mistake), the
    null slot filled with ``null_value`` (zeros in the reference)."""
    null = x.new_full((x.shape[0], 1, x.shape[-1]), null_value)
    slots = torch.cat([null, x] if null_first else [x, null], dim=1)
    return inp.query(h) @ inp.key(slots).transpose(1, 2)


def _input_attention_hint(attn: Any, x: Tensor, h: Tensor, inp: InputAttention) -> str:
    if isinstance(attn, Tensor) and attn.dim() == 3 and attn.shape[-1] == x.shape[1]:
        return (
            f"your attention has m={x.shape[1]} columns; prepend the null slot (a row of zeros) to the "
            "inputs so that there are 1+m slots, the null slot first"
        )
    with torch.no_grad():
        scores, last = _slot_scores(x, h, inp), _slot_scores(x, h, inp, null_first=False)
        ones = _slot_scores(x, h, inp, null_value=1.0)
    root = math.sqrt(inp.d_k)
    return _first_match(
        attn,
        [
            (
                "the null slot is a vector of zeros (x.new_zeros(B, 1, d_in)), not ones: a zero input has a "
                "zero key and value, so attending to it reads nothing",
                lambda: torch.softmax(ones / root, dim=-1),
            ),
            (
                "the null slot must be slot 0: prepend it (torch.cat([null, x], dim=1)), do not append it",
                lambda: torch.softmax(last / root, dim=-1),
            ),
            ("divide the scores by sqrt(d_k) before the softmax", lambda: torch.softmax(scores, dim=-1)),
            (
                "take the softmax over the slots (the last dim): each module spreads its attention over "
                "[null, inputs]",
                lambda: torch.softmax(scores / root, dim=1),
            ),
            *_scale_mistakes(scores, x, h, inp),
        ],
    ) or _fitted_scale(attn, scores, inp.d_k)


def _scale_mistakes(scores: Tensor, x: Tensor, h: Tensor, inp: InputAttention) -> list[tuple[str, Any]]:
    """Scores divided by the square root of another size than d_k, by d_k itself, or multiplied by sqrt(d_k):
    (hint, the attention that mistake gives)."""
    d_k = inp.d_k
    right = f"divide by sqrt(d_k) = sqrt({d_k}), the size of the keys and queries: math.sqrt(k.shape[-1])"
    divided = "you divided the scores by"
    mistakes = [
        (f"{divided} sqrt(d_in) = sqrt({x.shape[-1]}), the size of the inputs x", math.sqrt(x.shape[-1])),
        (f"{divided} sqrt(d_h) = sqrt({h.shape[-1]}), the size of the states h", math.sqrt(h.shape[-1])),
        (f"{divided} sqrt(d_v) = sqrt({inp.d_v}), the size of the values", math.sqrt(inp.d_v)),
        (f"{divided} sqrt(1+m) = sqrt({x.shape[1] + 1}), the number of slots", math.sqrt(x.shape[1] + 1)),
        (f"{divided} sqrt(n) = sqrt({h.shape[1]}), the number of modules", math.sqrt(h.shape[1])),
        (f"{divided} d_k = {d_k} itself, not its square root", float(d_k)),
        (f"you multiplied the scores by sqrt(d_k) = sqrt({d_k}) instead of dividing", 1 / math.sqrt(d_k)),
    ]
    return [
        (f"{what}; {right}", lambda s=size: torch.softmax(scores / s, dim=-1))
        for what, size in mistakes
        if not math.isclose(size, math.sqrt(d_k)) and not math.isclose(size, 1.0)
    ]


def _fitted_scale(attn: Any, scores: Tensor, d_k: int) -> str:
    """When ``attn`` is the softmax of the right scores divided by some other number, name that number."""
    if not (isinstance(attn, Tensor) and attn.shape == scores.shape and bool((attn > 0).all())):
        return ""
    with torch.no_grad():
        logs = attn.detach().double().log()
        logs = logs - logs.mean(-1, keepdim=True)
        centred = scores.double() - scores.double().mean(-1, keepdim=True)
        factor = float((logs * centred).sum() / (centred * centred).sum())  # least squares: logs ~ factor * s
        if factor <= 0 or not torch.allclose(torch.softmax(centred * factor, -1), attn.double(), atol=1e-4):
            return ""
    return (
        f"your scores are divided by {1 / factor:.4g}; divide by sqrt(d_k) = sqrt({d_k}) = "
        f"{math.sqrt(d_k):.4g}, the size of the keys and queries: math.sqrt(k.shape[-1])"
    )


def check_input_attention(fn: Callable[..., Any]) -> None:
    """Check ``fn(x (B, m, d_in), h (B, n, d_h), key, value, query) -> (attn (B, n, 1+m), read (B, n, d_v))``.

    ``attn[b, i]`` is module i's softmax attention over the slots [null, x_1, ..., x_m] (the null slot, a
    vector of zeros, first), with scores ``q_i . k_j / sqrt(d_k)``; ``read[b, i] = sum_j attn[b, i, j] v_j``.
    ``key`` and ``value`` are bias-free ``nn.Linear``, ``query`` a bias-free
    :class:`~minirims.group.GroupLinear`.
    Cases: m = 1 and m = 3 input slots. Reference: :class:`minirims.competition.InputAttention` (1 head).
    """
    name = "input attention"
    _require_callable(fn)
    cases = [(2, 1, 4, 5, 6, 8, 7), (3, 3, 5, 4, 6, 4, 3)]
    for index, (b, m, n, d_in, d_h, d_k, d_v) in enumerate(cases):
        label = f"case {index + 1}: B={b}, m={m} input slot{'s' if m > 1 else ''}, n={n} modules"

        def make(index=index, b=b, m=m, n=n, d_in=d_in, d_h=d_h, d_k=d_k, d_v=d_v):
            with _seeded(SEED + index) as gen:
                inp = InputAttention(d_in, n, d_h, 1, d_k=d_k, d_v=d_v, n_heads=1, dropout=0.0).eval()
                return inp, _randn(gen, b, m, d_in, scale=2.0), _randn(gen, b, n, d_h, scale=2.0)

        theirs, x, h = make()
        got = _call(name, fn, (x, h, theirs.key, theirs.value, theirs.query), label)
        inp, x, h = make()  # built anew: the learner's function may have changed its copy
        with torch.no_grad():
            expected = inp(x, h)
        attn, read = _expect_tuple(name, got, label, ("attn (B, n, 1+m)", "read (B, n, d_v)"))
        if (
            isinstance(attn, Tensor)
            and isinstance(read, Tensor)
            and expected.attn.shape != expected.read.shape
            and attn.shape == expected.read.shape
            and read.shape == expected.attn.shape
        ):
            raise ExerciseFailure(
                f"{name} ({label}): you returned (read, attn): the first item has the shape of read "
                f"{_fmt_shape(expected.read.shape)} and the second that of attn "
                f"{_fmt_shape(expected.attn.shape)}; "
                "return (attn, read), in that order"
            )
        _compare(name, attn, expected.attn, f"attn ({label})", _input_attention_hint, (attn, x, h, inp))
        _compare(
            name,
            read,
            expected.read,
            f"read ({label})",
            "read = attn @ value(slots): the attention-weighted sum of the 1+m values, null included",
        )
    passed(name, "2 cases (m = 1 and m = 3 input slots)")


# ----------------------------------------------------------------------------------------------------------
# top-k of least null attention


def _topk_cases() -> list[tuple[str, Tensor, int]]:
    """(label, attn (B, n, 1+m), k): k = 1, k = n and two in between, 1 to 3 input slots."""
    cases = []
    for index, (b, n, m, k) in enumerate([(4, 6, 1, 1), (5, 6, 3, 3), (3, 5, 2, 5), (4, 7, 1, 4)]):
        attn = torch.softmax(_randn(_gen(SEED + 10 + index), b, n, 1 + m, scale=1.5), dim=-1)
        cases.append((f"case {index + 1}: B={b}, n={n} modules, m={m}, k={k}", attn, k))
    return cases


#: wrong rules a learner's select_active may follow: (hint, rule(attn, k) -> mask); the first rule that
#: explains the learner's output on every case is named (with one input slot several rules coincide)
_TOPK_MISTAKES: list[tuple[str, Callable[[Tensor, int], Tensor]]] = [
    (
        "you ranked the modules by attn[..., 1], the first input slot, as if it were the null slot; Python "
        "counts from 0, so the null slot is slot 0: rank by attn[..., 0] (the k smallest)",
        lambda attn, k: topk_mask(-attn[..., 1], k),
    ),
    (
        "you picked the modules that attend MOST to the null slot; the winners are the k modules with "
        "the LEAST null attention (e.g. (-null).topk(k) or null.topk(k, largest=False))",
        lambda attn, k: topk_mask(attn[..., 0], k),
    ),
    (
        "you ranked the modules by their largest attention on one input slot; rank them by the null slot "
        "(attn[..., 0]) instead -- with several input slots the two rules differ",
        lambda attn, k: topk_mask(attn[..., 1:].max(-1).values, k),
    ),
    (
        "you ranked the modules by slot 1 only; rank them by the null slot (attn[..., 0])",
        lambda attn, k: topk_mask(attn[..., 1], k),
    ),
]


def _topk_hint(
    fn: Callable[..., Any], got: Tensor, attn: Tensor, k: int, cases: list[tuple[str, Tensor, int]]
) -> str:
    """The wrong rule that reproduces the learner's mask on this case and on every other case where the
    learner's function returns a (B, n) bool mask: one case alone cannot tell apart rules that agree there
    (with one input slot, least attention on slot 1 is most attention on the null slot); when the evidence
    still fits two rules, both are named."""
    evidence = [(got, attn, k)]
    for _, other_attn, other_k in cases:
        if other_attn is attn:
            continue
        try:
            other = fn(other_attn.clone(), other_k)
        except Exception:  # the failing case is diagnosed on its own evidence
            continue
        if isinstance(other, Tensor) and other.dtype == torch.bool and other.shape == other_attn.shape[:2]:
            evidence.append((other.detach().cpu(), other_attn, other_k))
    fits = [
        text for text, rule in _TOPK_MISTAKES if all(bool((m == rule(a, kk)).all()) for m, a, kk in evidence)
    ]
    if len(fits) > 1:  # only cases where the rules agree gave evidence
        return f"your masks fit two mistakes: either {fits[0]}; or {fits[1]}"
    return fits[0] if fits else "the mask is True at the k smallest values of attn[..., 0] in each row"


def check_topk_mask(fn: Callable[..., Any]) -> None:
    """Check ``fn(attn (B, n, 1+m), k) -> mask (B, n) bool``: True for the k modules that attend *least*
    to the null slot (slot 0). Cases: k = 1, k = n and two in between, with 1 to 3 input slots.
    Reference: ``topk_mask(-null_attention(attn), k)``.
    """
    name = "top-k mask"
    _require_callable(fn)
    cases = _topk_cases()
    for label, attn, k in cases:
        got = _call(name, fn, (attn.clone(), k), label)
        try:
            _compare_mask(name, got, topk_mask(-null_attention(attn), k), f"({label})", k)
        except ExerciseFailure as err:
            message = str(err)
        else:
            continue
        if not (isinstance(got, Tensor) and got.dtype == torch.bool and got.shape == attn.shape[:2]):
            raise ExerciseFailure(message)  # a wrong type, shape or dtype: said as such, without a hint
        # the hint calls the learner's function again: only now, when the expected mask is in no frame
        raise _failure(message, _topk_hint(fn, got, attn, k, cases))
    passed(name, "4 cases (k = 1 to k = n, 1 to 3 input slots)")
