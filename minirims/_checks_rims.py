"""Checks for notebooks 03 (competition), 04 (communication) and 05 (the cell); see :mod:`minirims.checks`.

Every check takes the learner's function, calls it on fixed, seeded inputs (several cases: one input slot and
m slots, k = 1 and k = n), compares with the package's reference and prints one ``✔ <name> passed: ...`` line,
or raises :class:`~minirims.checks_base.ExerciseFailure` saying what differs: the output, its shape or dtype,
the first differing entry, *which modules* were selected or changed against which were expected, and, when
the answer matches a common mistake (the null slot appended instead of prepended, top-k of the *most* null
attention, the update applied to inactive modules, ...), what that mistake probably is.

A ``NotImplementedError`` from the learner's function (the blanked exercise) propagates unchanged. A learner's
function that is not callable is a ``ValueError`` naming the argument. The checks draw their inputs from their
own seeds and leave the global random state as they found it.

Checks (notebook: learner signature):

- 03: :func:`check_input_attention` -> ``input_attention(x (B, m, d_in), h (B, n, d_h), key, value, query)
  -> (attn (B, n, 1+m), read (B, n, d_v))``; ``key``/``value`` are bias-free ``nn.Linear``, ``query`` a
  bias-free :class:`~minirims.group.GroupLinear`.
- 03: :func:`check_topk_mask` -> ``select_active(attn (B, n, 1+m), k) -> mask (B, n) bool``, True for the k
  modules with the least attention on the null slot.
- 04: :func:`check_module_attention` -> ``module_attention(h (B, n, d_h), query, key, value, n_heads)
  -> (a (B, n, H*d_v), attn (B, H, n, n))``; the projections are :class:`~minirims.group.GroupLinear`.
- 04: :func:`check_gated_update` -> ``gated_update(h (B, n, d_h), a (B, n, d_a), mask (B, n), f, g)
  -> h_out (B, n, d_h)``: ``h + sigmoid(g(a)) * tanh(f(a))`` for active modules, ``h`` for inactive ones.
- 05: :func:`check_rim_step` -> ``rim_step(cell, x (B, m, d_in), state) -> (RIMState(h, c), mask (B, n))``.
- 05: :func:`check_run_rim` -> ``run_rim(cell, x (B, T, m, d_in)) -> (hs (B, T, n, d_h), masks (B, T, n))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from minirims.attention import merge_heads, split_heads
from minirims.cell import RIMCell, RIMState
from minirims.checks_base import ExerciseFailure, compare, passed
from minirims.communication import CommunicationAttention
from minirims.competition import InputAttention, null_attention, topk_mask
from minirims.group import GroupLinear
from minirims.model import RIM

__all__ = [
    "check_input_attention",
    "check_topk_mask",
    "check_module_attention",
    "check_gated_update",
    "check_rim_step",
    "check_run_rim",
]

ATOL = 1e-5
RTOL = 1e-4
SEED = 3141


# ----------------------------------------------------------------------------------------------------------
# Helpers

Hint = Callable[..., str]


def _require_callable(fn: object, argument: str = "fn") -> None:
    if not callable(fn):
        raise ValueError(
            f"{argument}: expected your function (a callable), got {type(fn).__name__}; "
            "pass the function itself, e.g. check(my_function), not my_function(...)"
        )


@contextmanager
def _seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed module initialisation and inputs without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed + 1)


def _call(name: str, fn: Callable[..., Any], args: Sequence[Any], label: str) -> Any:
    """Call the learner's function; NotImplementedError passes through, anything else becomes a failure."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise ExerciseFailure(f"{name}: your function raised {type(err).__name__} on {label}: {err}") from err


def _expect_tuple(name: str, got: Any, label: str, fields: Sequence[str]) -> tuple[Any, ...]:
    if not isinstance(got, (tuple, list)) or len(got) != len(fields):
        what = (
            f"a {type(got).__name__} of {len(got)} items"
            if isinstance(got, (tuple, list))
            else type(got).__name__
        )
        raise ExerciseFailure(f"{name} ({label}): expected a tuple ({', '.join(fields)}), got {what}")
    return tuple(got)


def _close(got: Any, expected: Tensor) -> bool:
    return (
        isinstance(got, Tensor)
        and tuple(got.shape) == tuple(expected.shape)
        and got.dtype == expected.dtype
        and bool(torch.allclose(got.detach(), expected, atol=ATOL, rtol=RTOL, equal_nan=True))
    )


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


def _with_hint(message: str, hint: Hint | None, hint_args: tuple) -> ExerciseFailure:
    extra = hint(*hint_args) if hint is not None else ""
    return ExerciseFailure(f"{message}. Hint: {extra}" if extra else message)


def _compare(
    name: str, got: Any, expected: Tensor, what: str, hint: Hint | None = None, hint_args: tuple = ()
) -> None:
    """compare() with the package tolerances, plus ``hint(*hint_args)`` (a likely mistake) on failure."""
    try:
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)
    except ExerciseFailure as err:
        raise _with_hint(str(err), hint, hint_args) from None


def _modules(row: Tensor) -> str:
    """'[0, 3]' -- the indices where a (n,) bool row is True."""
    return "[" + ", ".join(str(i) for i in torch.nonzero(row).flatten().tolist()) + "]"


def _compare_mask(
    name: str, got: Any, expected: Tensor, what: str, k: int, hint: Hint | None = None, hint_args: tuple = ()
) -> None:
    """Compare a (B, n) bool mask; on a mismatch name the modules selected and the modules expected."""
    if isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != torch.bool:
        raise ExerciseFailure(
            f"{name} {what}: expected a bool mask (dtype torch.bool), got dtype {got.dtype}; build it with "
            "e.g. torch.zeros(B, n, dtype=torch.bool).scatter(-1, winners, True)"
        )
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        compare(name, got, expected, what=what)  # raises: type or shape
    got = got.detach().cpu()
    bad = torch.nonzero((got != expected).any(-1)).flatten().tolist()
    if not bad:
        return
    b = bad[0]
    message = (
        f"{name} {what}: example {b}: your mask selects modules {_modules(got[b])}, "
        f"expected {_modules(expected[b])}"
    )
    if len(bad) > 1:
        message += f" ({len(bad)} of {expected.shape[0]} rows differ)"
    counts = got.sum(-1)
    wrong_count = torch.nonzero(counts != k).flatten().tolist()
    if wrong_count:
        row = wrong_count[0]
        message += f"; row {row} has {int(counts[row])} True entries, expected exactly k={k}"
    raise _with_hint(message, hint, hint_args)


def _compare_states(
    name: str,
    got: Any,
    expected: Tensor,
    old: Tensor,
    mask: Tensor,
    what: str,
    hint: Hint | None = None,
    hint_args: tuple = (),
) -> None:
    """Compare states (B, n, d): inactive modules must equal ``old`` exactly, active ones ``expected``."""
    if not (isinstance(got, Tensor) and got.shape == expected.shape and got.dtype == expected.dtype):
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)  # raises: type, shape or dtype
    got = got.detach()
    changed = (got != old).any(-1) & ~mask  # (B, n): inactive modules whose state changed
    if bool(changed.any()):
        b = int(torch.nonzero(changed.any(-1)).flatten()[0])
        raise ExerciseFailure(
            f"{name} {what}: example {b}: inactive modules {_modules(changed[b])} must keep their state "
            f"exactly, but yours changed them (the active modules are {_modules(mask[b])}); apply the update "
            "to active modules only, e.g. torch.where(mask.unsqueeze(-1), new, old)"
        )
    close = torch.isclose(got, expected, atol=ATOL, rtol=RTOL)
    wrong = ~close.all(-1) & mask
    if bool(wrong.any()):
        b = int(torch.nonzero(wrong.any(-1)).flatten()[0])
        diff = torch.where(close[b], 0.0, (got[b] - expected[b]).abs().to(torch.float64))
        i, j = (int(v) for v in torch.unravel_index(diff.argmax(), diff.shape))
        message = (
            f"{name} {what}: example {b}: active modules {_modules(wrong[b])} differ from the reference (the "
            f"inactive ones are right); max abs difference {float(diff.max()):.3g} at index ({b}, {i}, {j}): "
            f"expected {float(expected[b, i, j]):.6g}, got {float(got[b, i, j]):.6g}"
        )
        raise _with_hint(message, hint, hint_args)


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _random_mask(gen: torch.Generator, b: int, n: int, k: int) -> Tensor:
    """(B, n) bool with exactly k True per row, at random places."""
    return topk_mask(torch.rand(b, n, generator=gen), k)


# ----------------------------------------------------------------------------------------------------------
# 03: input attention over [null, inputs]


def _slot_scores(x: Tensor, h: Tensor, inp: InputAttention, *, null_first: bool = True) -> Tensor:
    """Unscaled scores (B, n, 1+m) with the null slot first (the reference) or last (a common mistake)."""
    null = x.new_zeros(x.shape[0], 1, x.shape[-1])
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
    root = math.sqrt(inp.d_k)
    return _first_match(
        attn,
        [
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
        ],
    )


def check_input_attention(fn: Callable[..., Any]) -> None:
    """Check ``fn(x (B, m, d_in), h (B, n, d_h), key, value, query) -> (attn (B, n, 1+m), read (B, n, d_v))``.

    ``attn[b, i]`` is module i's softmax attention over the slots [null, x_1, ..., x_m] (the null slot, a
    vector of zeros, first), with scores ``q_i . k_j / sqrt(d_k)``; ``read[b, i] = sum_j attn[b, i, j] v_j``.
    Cases: m = 1 and m = 3 input slots. Reference: :class:`minirims.competition.InputAttention` (1 head).
    """
    name = "input attention"
    _require_callable(fn)
    cases = [(2, 1, 4, 5, 6, 8, 7), (3, 3, 5, 4, 6, 4, 3)]
    for index, (b, m, n, d_in, d_h, d_k, d_v) in enumerate(cases):
        label = f"case {index + 1}: B={b}, m={m} input slot{'s' if m > 1 else ''}, n={n} modules"
        with _seeded(SEED + index) as gen:
            inp = InputAttention(d_in, n, d_h, 1, d_k=d_k, d_v=d_v, n_heads=1, dropout=0.0).eval()
            x, h = _randn(gen, b, m, d_in, scale=2.0), _randn(gen, b, n, d_h, scale=2.0)
            with torch.no_grad():
                expected = inp(x, h)
            got = _call(name, fn, (x.clone(), h.clone(), inp.key, inp.value, inp.query), label)
        attn, read = _expect_tuple(name, got, label, ("attn (B, n, 1+m)", "read (B, n, d_v)"))
        _compare(name, attn, expected.attn, f"attn ({label})", _input_attention_hint, (attn, x, h, inp))
        _compare(
            name,
            read,
            expected.read,
            f"read ({label})",
            lambda: "read = attn @ value(slots): the attention-weighted sum of the 1+m values, null included",
        )
    passed(name, "2 cases (m = 1 and m = 3 input slots)")


# ----------------------------------------------------------------------------------------------------------
# 03: top-k of least null attention


def _topk_cases() -> list[tuple[str, Tensor, int]]:
    """(label, attn (B, n, 1+m), k): k = 1, k = n and two in between, 1 to 3 input slots."""
    cases = []
    for index, (b, n, m, k) in enumerate([(4, 6, 1, 1), (5, 6, 3, 3), (3, 5, 2, 5), (4, 7, 1, 4)]):
        gen = torch.Generator().manual_seed(SEED + 10 + index)
        attn = torch.softmax(torch.randn(b, n, 1 + m, generator=gen) * 1.5, dim=-1)
        cases.append((f"case {index + 1}: B={b}, n={n} modules, m={m}, k={k}", attn, k))
    return cases


def _topk_hint(got: Tensor, attn: Tensor, k: int) -> str:
    null = attn[..., 0]
    candidates = [
        (
            "you picked the modules that attend MOST to the null slot; the winners are the k modules with "
            "the LEAST null attention (e.g. (-null).topk(k) or null.topk(k, largest=False))",
            topk_mask(null, k),
        ),
        (
            "you ranked the modules by their largest attention on one input slot; rank them by the null slot "
            "(attn[..., 0]) instead -- with several input slots the two rules differ",
            topk_mask(attn[..., 1:].max(-1).values, k),
        ),
        (
            "you ranked the modules by slot 1 only; rank them by the null slot (attn[..., 0])",
            topk_mask(attn[..., 1], k),
        ),
    ]
    for text, mask in candidates:
        if bool((got == mask).all()):
            return text
    return "the mask is True at the k smallest values of attn[..., 0] in each row"


def check_topk_mask(fn: Callable[..., Any]) -> None:
    """Check ``fn(attn (B, n, 1+m), k) -> mask (B, n) bool``: True for the k modules that attend *least*
    to the null slot (slot 0). Cases: k = 1, k = n and two in between, with 1 to 3 input slots.
    Reference: ``topk_mask(-null_attention(attn), k)``.
    """
    name = "top-k mask"
    _require_callable(fn)
    for label, attn, k in _topk_cases():
        expected = topk_mask(-null_attention(attn), k)
        got = _call(name, fn, (attn.clone(), k), label)
        _compare_mask(name, got, expected, f"({label})", k, _topk_hint, (got, attn, k))
    passed(name, "4 cases (k = 1 to k = n, 1 to 3 input slots)")


# ----------------------------------------------------------------------------------------------------------
# 04: attention among modules


def _module_attention_hint(attn: Any, scores: Tensor, d_k: int, heads: int) -> str:
    if isinstance(attn, Tensor) and attn.dim() == 3:
        return (
            "keep one attention map per head, (B, H, n, n) even when H = 1: split q, k and v into heads "
            "with split_heads first"
        )
    root = math.sqrt(d_k)
    return _first_match(
        attn,
        [
            ("divide the scores by sqrt(d_k) (the key size per head)", lambda: torch.softmax(scores, dim=-1)),
            (
                "take the softmax over the modules being read (the last dim)",
                lambda: torch.softmax(scores / root, dim=-2),
            ),
        ],
    )


def _read_hint(a: Any) -> str:
    if isinstance(a, Tensor) and a.dim() == 4:
        return "merge the heads back into one vector per module: merge_heads(attn @ v) -> (B, n, H*d_v)"
    return "a = merge_heads(attn @ v): each module's attention-weighted sum of the values, heads concatenated"


def check_module_attention(fn: Callable[..., Any]) -> None:
    """Check ``fn(h (B, n, d_h), query, key, value, n_heads) -> (a (B, n, H*d_v), attn (B, H, n, n))``.

    ``query``, ``key``, ``value`` are per-module projections (:class:`~minirims.group.GroupLinear`); the
    attention is multi-head: split the projections into H heads, ``softmax(q k^T / sqrt(d_k))`` per head, read
    the values and merge the heads. Cases: 1, 2 and 4 heads. Reference:
    :class:`minirims.communication.CommunicationAttention`.
    """
    name = "module attention"
    _require_callable(fn)
    cases = [(2, 4, 6, 1, 4, 3), (3, 5, 8, 2, 4, 5), (2, 3, 8, 4, 2, 2)]
    for index, (b, n, d_h, heads, d_k, d_v) in enumerate(cases):
        label = f"case {index + 1}: B={b}, n={n} modules, H={heads} head{'s' if heads > 1 else ''}"
        with _seeded(SEED + 20 + index) as gen:
            comm = CommunicationAttention(n, d_h, n_heads=heads, d_k=d_k, d_v=d_v, dropout=0.0).eval()
            h = _randn(gen, b, n, d_h, scale=2.0)
            with torch.no_grad():
                _, attn_ref = comm(h, torch.ones(b, n, dtype=torch.bool))
                a_ref = merge_heads(attn_ref @ split_heads(comm.value(h), heads))
                q, k = split_heads(comm.query(h), heads), split_heads(comm.key(h), heads)
                scores = q @ k.transpose(-2, -1)
            got = _call(name, fn, (h.clone(), comm.query, comm.key, comm.value, heads), label)
        a, attn = _expect_tuple(name, got, label, ("a (B, n, H*d_v)", "attn (B, H, n, n)"))
        _compare(name, attn, attn_ref, f"attn ({label})", _module_attention_hint, (attn, scores, d_k, heads))
        _compare(name, a, a_ref, f"a ({label})", _read_hint, (a,))
    passed(name, "3 cases (1, 2 and 4 heads)")


# ----------------------------------------------------------------------------------------------------------
# 04: gated residual, active modules only


def _gated_update_hint(got: Any, h: Tensor, mask: Tensor, fa: Tensor, ga: Tensor) -> str:
    m = mask.unsqueeze(-1)
    return _first_match(
        got,
        [
            (
                "the gate is sigmoid(g(a)) and the candidate tanh(f(a)); you swapped f and g",
                lambda: torch.where(m, h + torch.sigmoid(fa) * torch.tanh(ga), h),
            ),
            (
                "the update is a residual: add it to h (h + sigmoid(g(a)) * tanh(f(a)))",
                lambda: torch.where(m, torch.sigmoid(ga) * torch.tanh(fa), h),
            ),
            (
                "the gate is a sigmoid and the candidate a tanh, not the other way round",
                lambda: torch.where(m, h + torch.tanh(ga) * torch.sigmoid(fa), h),
            ),
        ],
    )


def check_gated_update(fn: Callable[..., Any]) -> None:
    """Check ``fn(h (B, n, d_h), a (B, n, d_a), mask (B, n) bool, f, g) -> h_out (B, n, d_h)``.

    ``h_out = h + sigmoid(g(a)) * tanh(f(a))`` for active modules (mask True) and exactly ``h`` for inactive
    ones; ``f`` and ``g`` are per-module :class:`~minirims.group.GroupLinear`.
    Cases: k = 1, k = n, k = 3 of 6.
    """
    name = "gated update"
    _require_callable(fn)
    cases = [(3, 4, 6, 5, 1), (2, 5, 4, 8, 5), (4, 6, 6, 4, 3)]
    for index, (b, n, d_h, d_a, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, n={n} modules, k={k} active"
        with _seeded(SEED + 30 + index) as gen:
            f, g = GroupLinear(n, d_a, d_h), GroupLinear(n, d_a, d_h)
            h, a = _randn(gen, b, n, d_h), _randn(gen, b, n, d_a, scale=2.0)
            mask = _random_mask(gen, b, n, k)
            with torch.no_grad():
                fa, ga = f(a), g(a)
            expected = torch.where(mask.unsqueeze(-1), h + torch.sigmoid(ga) * torch.tanh(fa), h)
            got = _call(name, fn, (h.clone(), a.clone(), mask.clone(), f, g), label)
        _compare_states(
            name, got, expected, h, mask, f"h_out ({label})", _gated_update_hint, (got, h, mask, fa, ga)
        )
    passed(name, "3 cases (k = 1, 3 and n)")


# ----------------------------------------------------------------------------------------------------------
# 05: one step of the cell, and a sequence

_SMALL_CELL = dict(input_d_k=4, input_d_v=5, comm_heads=2, comm_d_k=3, comm_d_v=3, dropout=0.0)


def _rim_step_hint(h: Any, h_tilde: Tensor, mask: Tensor, old: Tensor) -> str:
    return _first_match(
        h,
        [
            (
                "active modules take the state after communication, cell.communication(h~, mask), not h~ "
                "straight from the recurrent cell",
                lambda: torch.where(mask.unsqueeze(-1), h_tilde, old),
            ),
        ],
    )


def check_rim_step(fn: Callable[..., Any]) -> None:
    """Check ``fn(cell, x (B, m, d_in), state) -> (RIMState(h, c), mask (B, n))`` against ``cell(x, state)``.

    One RIM step: competition -> independent dynamics -> communication -> masked update (active modules take
    the new h and c, inactive modules keep theirs exactly). Cases: (m = 1, k = 1), (m = 3, k = n),
    (m = 2, k = 3 of 6), from a random (non-zero) state.
    """
    name = "RIM step"
    _require_callable(fn)
    cases = [(2, 1, 4, 1), (3, 3, 5, 5), (4, 2, 6, 3)]
    d_in, d_h = 5, 6
    for index, (b, m, n, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, m={m} input slot{'s' if m > 1 else ''}, n={n}, k={k}"
        with _seeded(SEED + 40 + index) as gen:
            cell = RIMCell(d_in, n_modules=n, k_active=k, d_hidden=d_h, rnn="lstm", **_SMALL_CELL).eval()
            x = _randn(gen, b, m, d_in, scale=2.0)
            state = RIMState(_randn(gen, b, n, d_h, scale=0.5), _randn(gen, b, n, d_h, scale=0.5))
            with torch.no_grad():
                _, ref, info = cell(x, state)
                comp = cell.input_attention(x, state.h)
                h_tilde, _ = cell.rnn(comp.read, (state.h, state.c))
            got = _call(name, fn, (cell, x.clone(), RIMState(state.h.clone(), state.c.clone())), label)
        new_state, mask = _expect_tuple(name, got, label, ("RIMState(h, c)", "mask (B, n)"))
        if not isinstance(new_state, (tuple, list)) or len(new_state) != 2:
            raise ExerciseFailure(
                f"{name} ({label}): expected the new state as a RIMState(h, c), "
                f"got {type(new_state).__name__}"
            )
        h, c = new_state
        _compare_mask(
            name,
            mask,
            info.mask,
            f"mask ({label})",
            k,
            lambda: "return the mask of the competition, cell.input_attention(x, h).mask",
        )
        _compare_states(
            name,
            h,
            ref.h,
            state.h,
            info.mask,
            f"h ({label})",
            _rim_step_hint,
            (h, h_tilde, info.mask, state.h),
        )
        _compare_states(
            name,
            c,
            ref.c,
            state.c,
            info.mask,
            f"c ({label})",
            lambda: "active modules take the cell state c~ from the recurrent cell",
        )
    passed(name, "3 cases (1 to 3 input slots, k = 1, 3 and n)")


def _run_rim_hint(hs: Any, hs_ref: Tensor, rim: RIM, x: Tensor) -> str:
    if not isinstance(hs, Tensor):
        return ""
    if hs.shape == (hs_ref.shape[1], hs_ref.shape[0], *hs_ref.shape[2:]):
        return "stack the steps along dim 1 (time): torch.stack(hs, dim=1) -> (B, T, n, d_h)"
    if hs.shape != hs_ref.shape or hs.dtype != hs_ref.dtype:
        return ""
    with torch.no_grad():
        fresh = torch.stack([rim.cell(x[:, t])[0] for t in range(x.shape[1])], dim=1)
    if _close(hs, fresh):
        return "pass the state returned by each step into the next step (yours restarts from zeros)"
    bad = ~torch.isclose(hs.detach(), hs_ref, atol=ATOL, rtol=RTOL).flatten(2).all(-1).all(0)  # (T,)
    return (
        f"the first time step that differs is t={int(torch.nonzero(bad).flatten()[0])}" if bad.any() else ""
    )


def check_run_rim(fn: Callable[..., Any]) -> None:
    """Check ``fn(cell, x (B, T, m, d_in)) -> (hs (B, T, n, d_h), masks (B, T, n) bool)``.

    Run the cell over the sequence from its zero initial state, carrying the state from step to step;
    ``hs[:, t]`` is the module state after step t and ``masks[:, t]`` says who was active.
    Reference: :class:`minirims.model.RIM`. Cases: (T = 5, m = 1, k = 2 of 4), (T = 4, m = 2, k = 3 of 5),
    (T = 3, k = n).
    """
    name = "run RIM"
    _require_callable(fn)
    cases = [(2, 5, 1, 4, 2), (3, 4, 2, 5, 3), (2, 3, 1, 3, 3)]
    d_in, d_h = 3, 6
    for index, (b, t_len, m, n, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, T={t_len}, m={m}, n={n}, k={k}"
        with _seeded(SEED + 50 + index) as gen:
            rim = RIM(d_in, n_modules=n, k_active=k, d_hidden=d_h, rnn="lstm", **_SMALL_CELL).eval()
            x = _randn(gen, b, t_len, m, d_in, scale=2.0)
            with torch.no_grad():
                out, _, trace = rim(x, trace=True)
            hs_ref = out.reshape(b, t_len, n, d_h)
            got = _call(name, fn, (rim.cell, x.clone()), label)
        hs, masks = _expect_tuple(name, got, label, ("hs (B, T, n, d_h)", "masks (B, T, n)"))
        _compare(name, hs, hs_ref, f"hs ({label})", _run_rim_hint, (hs, hs_ref, rim, x))
        if isinstance(masks, Tensor) and masks.shape == trace.masks.shape:
            _compare_mask(
                name,
                masks.flatten(0, 1),
                trace.masks.flatten(0, 1),
                f"masks ({label}; row = example * T + t)",
                k,
                lambda: "keep info.mask of every step and stack along dim 1 (time)",
            )
        else:
            compare(name, masks, trace.masks, what=f"masks ({label})")
    passed(name, "3 cases (T = 3 to 5 steps, k = 2, 3 and n)")
