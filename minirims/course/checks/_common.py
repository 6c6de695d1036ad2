"""Helpers shared by every notebook's checks: calling the learner's function, seeded inputs, comparisons.

:mod:`minirims.course.checks._base` compares values (torch-free); this module adds what the torch-side checks
need on top: tolerances, the call wrapper that lets the blanked exercise's ``NotImplementedError`` through,
tuple unpacking with a clear message, and comparisons that say *which* head, module or example differs and,
via a hint function, which common mistake the answer matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from minirims.competition import topk_mask
from minirims.course.checks._base import CheckUsageError, ExerciseFailure, compare, mark_not_attempted

ATOL = 1e-5
RTOL = 1e-4

#: a function that looks at a wrong answer and returns a likely-mistake hint ('' if none recognised)
Hint = Callable[..., str]


def _require_callable(fn: object, argument: str = "fn") -> None:
    if not callable(fn):
        raise CheckUsageError(
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
    except NotImplementedError as err:
        mark_not_attempted(err)
        raise
    except Exception as err:
        raise ExerciseFailure(f"{name}: your function raised {type(err).__name__} on {label}: {err}") from err


def _expect_tuple(
    name: str, got: Any, label: str, fields: Sequence[str], noun: str = "tuple"
) -> tuple[Any, ...]:
    """``got`` as ``len(fields)`` items, or a failure naming them: "expected a pair (out, weights)"."""
    if not isinstance(got, (tuple, list)) or len(got) != len(fields):
        what = (
            f"a {type(got).__name__} of {len(got)} items"
            if isinstance(got, (tuple, list))
            else type(got).__name__
        )
        raise ExerciseFailure(f"{name} ({label}): expected a {noun} ({', '.join(fields)}), got {what}")
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


def _with_hint(message: str, hint: Hint | None, hint_args: tuple) -> ExerciseFailure:
    extra = hint(*hint_args) if hint is not None else ""
    return ExerciseFailure(f"{message}. Hint: {extra}" if extra else message)


def _dtype_failure(name: str, got: Any, expected: Tensor, what: str) -> ExerciseFailure | None:
    """A failure naming a dtype mismatch of a right-shape tensor (None when it is not one).

    A wrong dtype is its own mistake: the value-level hints ("the read is weights @ v") would misdiagnose it.
    """
    if not (isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != expected.dtype):
        return None
    message = f"{name} {what}: expected dtype {expected.dtype}, got {got.dtype}"
    if got.dtype == torch.float64 and expected.dtype == torch.float32:
        why = (
            "the values may be right, but something in your computation is double precision (a numpy array "
            "or np.float64, torch.tensor(..., dtype=torch.float64), .double()); compute in the inputs' dtype "
            "(float32), e.g. build constants with dtype=x.dtype"
        )
    elif expected.dtype == torch.bool:
        why = "return a bool tensor (a comparison, or dtype=torch.bool), not 0/1 numbers"
    else:
        why = f"keep the inputs' dtype ({expected.dtype}): avoid casts and constants of another dtype"
    return ExerciseFailure(f"{message}. Hint: {why}")


def _compare(
    name: str,
    got: Any,
    expected: Tensor,
    what: str,
    hint: Hint | None = None,
    hint_args: tuple = (),
    per: tuple[int, str] | tuple[int, str, Callable[[Tensor], Tensor]] | None = None,
) -> None:
    """compare() with the checks' tolerances; on a value mismatch, add which slice along ``per`` differs
    (e.g. ``(1, "head")``) and ``hint(*hint_args)``, the likely mistake. A dtype mismatch is named as such,
    without the value hint."""
    dtype_failure = _dtype_failure(name, got, expected, what)
    if dtype_failure is not None:
        raise dtype_failure
    try:
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)
    except ExerciseFailure as err:
        message = str(err)
        if per is not None:
            message += _differing(got, expected, *per)
        raise _with_hint(message, hint, hint_args) from None


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
    dtype_failure = _dtype_failure(name, got, expected, what)
    if dtype_failure is not None:
        raise dtype_failure
    if not (isinstance(got, Tensor) and got.shape == expected.shape and got.dtype == expected.dtype):
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)  # raises: type or shape
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
