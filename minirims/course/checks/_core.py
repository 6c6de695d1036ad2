"""What every exercise check is made of: its failure, the call of the learner's function, comparisons.

A check calls the learner's function on fixed, seeded inputs, compares each result with the reference and
prints exactly one line when everything matches. It calls the learner's function first and computes the
case's expected values only afterwards (from inputs and modules built anew, which the learner's function never
saw), so they are in no frame of the stack while the learner's code runs::

    ✔ attention passed: 3 cases

Otherwise it raises :class:`ExerciseFailure` with one precise sentence, e.g.
``attention output: expected shape (2, 3, 4), got (2, 4, 3)``, and, when the answer matches a common mistake,
``". Hint: <the mistake>"``; comparisons say *which* head, module or example differs. A
``NotImplementedError`` raised by the learner's function (the blanked exercise) propagates unchanged, so the
grader (``python -m minirims grade``) reports the exercise as "not attempted"; any other exception is
re-raised as :class:`ExerciseFailure` saying what the learner's function raised (with a hint when that error
is the sign of a common mistake, e.g. ``.mean()`` of a bool tensor).

In a notebook a failed check shows only what the learner needs: IPython lets an exception render itself
(``_render_traceback_``), so the cell's error output is the ``✘`` line, the hint on its own line and, when the
learner's function raised, the learner's own frames -- not a traceback through the checks' internals (whose
source would also reveal the other hints). Outside IPython it is an ordinary exception with the same message,
and a kernel still reports it as an error (``ename`` ``ExerciseFailure``), so nbval and the grader see it.
"""

from __future__ import annotations

import os
import re
import traceback
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import torch
from torch import Tensor

from minirims.competition import topk_mask

__all__ = ["CheckUsageError", "ExerciseFailure", "compare", "mark_not_attempted", "passed"]

ATOL = 1e-5
RTOL = 1e-4

#: the likely mistake behind a wrong answer: the hint itself, or a function that looks at the answer and
#: returns it ('' if none recognised)
Hint = str | Callable[..., str]

_CHECKS_DIR = os.path.dirname(os.path.abspath(__file__))
_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"


# ------------------------------------------------------------------------------------ failures and their look


def _learner_frames(err: BaseException) -> list[str]:
    """The traceback of ``err`` without the checks' own frames: the notebook cell and the learner's code."""
    frames = [
        frame
        for frame in traceback.extract_tb(err.__traceback__)
        if not os.path.abspath(frame.filename).startswith(_CHECKS_DIR + os.sep)
    ]
    lines = [line.rstrip("\n") for line in traceback.format_list(frames)]
    return lines + [line.rstrip("\n") for line in traceback.format_exception_only(type(err), err)]


class ExerciseFailure(AssertionError):
    """An exercise check failed; the message says what differs from the reference.

    The message is one sentence, optionally followed by ``". Hint: <the likely mistake>"``. In IPython (a
    notebook) the exception renders itself as that sentence after a ``✘`` and the hint on the next line, with
    no traceback; when it wraps an error raised by the learner's function (``__cause__``), the learner's
    frames of that error follow.
    """

    def message_and_hint(self) -> tuple[str, str]:
        """``(message, hint)``: the message split at its ``". Hint: "`` (hint ``''`` when there is none)."""
        message, sep, hint = str(self).partition(". Hint: ")
        return (message + "." if sep else message), hint

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the ✘ line, the hint, the learner's own frames."""
        message, hint = self.message_and_hint()
        lines = [f"{_RED}✘ {message}{_RESET}"]
        if hint:
            lines.append(f"  {_BOLD}Hint:{_RESET} {hint}")
        if self.__cause__ is not None:
            lines += ["", "Where your function raised it:", *_learner_frames(self.__cause__)]
        return lines


class CheckUsageError(ValueError):
    """A check was called wrongly (e.g. with ``my_function(...)``, not ``my_function``); in IPython it renders
    as its ``✘`` line only."""

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}✘ {self}{_RESET}"]


def mark_not_attempted(err: NotImplementedError) -> None:
    """Let the blanked exercise's ``NotImplementedError`` through unchanged (same object, type and message,
    so the grader reports "not attempted"), but have IPython show only the learner's frames and the message,
    not the checks' internals."""
    err._render_traceback_ = lambda: _learner_frames(err)  # type: ignore[attr-defined]


def _failure(message: str, hint: str = "") -> ExerciseFailure:
    """``message``, with ``". Hint: <hint>"`` when there is a hint."""
    return ExerciseFailure(f"{message}. Hint: {hint}" if hint else message)


def _with_hint(message: str, hint: Hint | None, hint_args: tuple) -> ExerciseFailure:
    return _failure(message, hint if isinstance(hint, str) else hint(*hint_args) if hint is not None else "")


def passed(name: str, detail: str = "") -> None:
    """Print the single success line ``✔ <name> passed`` (``✔ <name> passed: <detail>`` with a detail)."""
    print(f"✔ {name} passed: {detail}" if detail else f"✔ {name} passed")


# ---------------------------------------------------------------------------- calling the learner's function


def _require_callable(fn: object) -> None:
    if not callable(fn):
        raise CheckUsageError(
            f"fn: expected your function (a callable), got {type(fn).__name__}; "
            "pass the function itself, e.g. check(my_function), not my_function(...)"
        )


class _Opaque:
    """Stands for an object of the learner's that a check does not know (its class only gives the name), so
    that no method of it runs once the expected values exist."""

    __slots__ = ()


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _sealed(got: Any, depth: int = 0) -> Any:
    """The learner's result as plain data, made before any expected value is computed (so the learner's code
    that may run here finds none): tensors of exactly ``torch.Tensor`` (or ``nn.Parameter``), numpy arrays
    and scalars, numbers, strings, and tuples, lists and named tuples of them. A tensor subclass is refused
    (its ``__torch_function__`` would run the learner's code while the check compares); any other object
    becomes a stand-in of the same class name, on which no code of the learner's runs."""
    kind = type(got)
    if kind in (Tensor, torch.nn.Parameter, np.ndarray) or kind in _PLAIN or isinstance(got, np.generic):
        return got
    if isinstance(got, Tensor):
        raise ExerciseFailure(
            f"expected a torch.Tensor, got a {kind.__name__} (a subclass of torch.Tensor); return a plain "
            "tensor"
        )
    if isinstance(got, (tuple, list)) and depth < 4:
        base = tuple if isinstance(got, tuple) else list
        items = [_sealed(item, depth + 1) for item in base.__iter__(got)]
        if isinstance(got, list):
            return items
        fields = getattr(kind, "_fields", None)
        if kind is tuple or not isinstance(fields, tuple) or len(fields) != len(items):
            return tuple(items)
        with suppress(ValueError, TypeError):  # a named tuple: one like it, of sealed items
            return namedtuple(kind.__name__, fields)(*items)
        return tuple(items)
    return type(kind.__name__, (_Opaque,), {"__slots__": ()})()


#: PyTorch errors that a common mistake causes: (what the error says, the mistake in the learner's words)
_RAISED: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"mean\(\): could not infer output dtype.*Got: (Bool|Long|Int|Short|Byte|Char)"),
        "mean of {kind} tensor: convert with .float() first, e.g. (a == b).float().mean(0)",
    ),
]


def _raised_hint(err: BaseException) -> str:
    """The mistake behind an error the learner's function raised ('' if none recognised)."""
    for pattern, hint in _RAISED:
        found = pattern.search(str(err))
        if found:
            return hint.format(kind="a bool" if found.group(1) == "Bool" else "an integer")
    return ""


def _call(name: str, fn: Callable[..., Any], args: Sequence[Any], label: str) -> Any:
    """Call the learner's function on case ``label``; return its result :func:`_sealed`. NotImplementedError
    passes through, any other error becomes a failure naming the case (and the likely mistake, if the error is
    one of :data:`_RAISED`).

    A check calls this *before* it computes the case's expected values, so they are in no frame while the
    learner's code runs: a function that walks up the stack (``sys._getframe``, ``inspect.stack()``) finds
    only the case's inputs.
    """
    try:
        got = fn(*args)
    except NotImplementedError as err:
        mark_not_attempted(err)
        raise
    except Exception as err:
        message = f"{name}: your function raised {type(err).__name__} on {label}: {err}"
        raise _failure(message, _raised_hint(err)) from err
    try:
        return _sealed(got)
    except ExerciseFailure as err:
        raise ExerciseFailure(f"{name} ({label}): {err}") from None


def _expect_tuple(
    name: str, got: Any, label: str, fields: Sequence[str], noun: str = "tuple"
) -> tuple[Any, ...]:
    """``got`` as ``len(fields)`` items, or a failure naming them: "expected a pair (out, weights)"."""
    if not isinstance(got, (tuple, list)) or len(got) != len(fields):
        what = type(got).__name__
        what = f"a {what} of {len(got)} items" if isinstance(got, (tuple, list)) else what
        raise ExerciseFailure(f"{name} ({label}): expected a {noun} ({', '.join(fields)}), got {what}")
    return tuple(got)


def _expect_tensor(
    prefix: str,
    got: Any,
    expected: Tensor,
    shape_note: str = "",
    dtype_note: str | None = "",
    hint: str = "",
    type_note: str = "",
    dtype_why: str = "",
) -> Tensor:
    """``got`` if it is a tensor of ``expected``'s shape and dtype, else a failure ``"<prefix>: expected
    ..."``; the notes follow the expected shape / dtype / type (``dtype_note=None``: any dtype), ``dtype_why``
    follows a wrong dtype, and ``hint`` goes with a wrong shape."""
    if not isinstance(got, Tensor):
        raise ExerciseFailure(f"{prefix}: expected a torch.Tensor{type_note}, got {type(got).__name__}")
    if got.shape != expected.shape:
        shapes = f"expected shape {_fmt_shape(expected.shape)}{shape_note}, got {_fmt_shape(got.shape)}"
        raise _failure(f"{prefix}: {shapes}", hint)
    if dtype_note is not None and got.dtype != expected.dtype:
        raise ExerciseFailure(
            f"{prefix}: expected dtype {expected.dtype}{dtype_note}, got {got.dtype}{dtype_why}"
        )
    return got


@contextmanager
def _seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed module initialisation and inputs without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed + 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _random_mask(gen: torch.Generator, b: int, n: int, k: int) -> Tensor:
    """(B, n) bool with exactly k True per row, at random places."""
    return topk_mask(torch.rand(b, n, generator=gen), k)


# ----------------------------------------------------------------------------------------- comparing tensors


def _fmt_shape(shape: Sequence[int]) -> str:
    dims = [int(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(str(d) for d in dims) + ")"


def _fmt_value(value: Any) -> str:
    """A numpy scalar as the message shows it: ``True``, ``3``, ``0.5``."""
    if isinstance(value, np.bool_):
        return str(bool(value))
    return f"{float(value):.6g}" if isinstance(value, np.floating) else str(value)


def _to_numpy(x: Tensor) -> np.ndarray:
    """A tensor (any device) as a numpy array, half-precision floats widened to float32."""
    x = x.detach().cpu()
    return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()


def compare(
    name: str, got: Any, expected: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5, what: str = "output"
) -> None:
    """Raise :class:`ExerciseFailure` unless ``got`` is a tensor of ``expected``'s shape, dtype and device
    with close values (``|got - expected| <= atol + rtol * |expected|``; bool and integer values equal).

    The message names the first mismatch: type, shape (``attention output: expected shape (2, 3, 4), got
    (2, 4, 3)``), dtype, device, or how many values differ, the first differing index and the largest
    difference.
    """
    label = f"{name} {what}".strip()
    if not isinstance(got, Tensor):
        raise ExerciseFailure(f"{label}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        shapes = f"expected shape {_fmt_shape(expected.shape)}, got {_fmt_shape(got.shape)}"
        raise ExerciseFailure(f"{label}: {shapes}")
    if got.dtype != expected.dtype:
        raise ExerciseFailure(f"{label}: expected dtype {expected.dtype}, got {got.dtype}")
    if got.device != expected.device:
        raise ExerciseFailure(f"{label}: expected a tensor on device {expected.device}, got {got.device}")
    got_np, exp_np = _to_numpy(got), _to_numpy(expected)
    if exp_np.size == 0:
        return
    inexact = np.issubdtype(exp_np.dtype, np.inexact)
    close = np.isclose(got_np, exp_np, atol=atol, rtol=rtol, equal_nan=True) if inexact else got_np == exp_np
    if bool(np.all(close)):
        return
    bad = ~close
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    detail = (
        f"{label}: values differ in {int(bad.sum())} of {exp_np.size} entries; first differing index "
        f"{_fmt_shape(first)}: expected {_fmt_value(exp_np[first])}, got {_fmt_value(got_np[first])}"
    )
    if inexact:
        diff = np.abs(got_np.astype(np.float64) - exp_np.astype(np.float64))
        finite = np.isfinite(diff) & bad
        if np.any(finite):
            worst = np.unravel_index(int(np.argmax(np.where(finite, diff, -np.inf))), diff.shape)
            detail += f"; max abs difference {float(diff[worst]):.3g} at index {_fmt_shape(worst)}"
        if not np.all(np.isfinite(got_np)) and np.all(np.isfinite(exp_np)):
            detail += "; your output contains NaN or inf"
        detail += f" (atol={atol:g}, rtol={rtol:g})"
    raise ExerciseFailure(detail)


# ---------------------------------------------------------------- comparing tensors, naming what and why


def _close(got: Any, expected: Tensor, exact: bool = False) -> bool:
    """Whether ``got`` is a tensor of ``expected``'s shape and dtype, with close (``exact``: equal) values."""
    if not (isinstance(got, Tensor) and got.shape == expected.shape and got.dtype == expected.dtype):
        return False
    if exact:
        return bool(torch.equal(got, expected))
    return bool(torch.allclose(got.detach(), expected, atol=ATOL, rtol=RTOL, equal_nan=True))


def _first_match(got: Any, candidates: Iterable[tuple[str, Callable[[], Any]]], exact: bool = False) -> str:
    """The hint of the first candidate mistake whose output equals ``got`` ('' if none)."""
    for hint, make in candidates:
        try:
            alternative = make()
        except Exception:  # a candidate that does not apply to these shapes
            continue
        if isinstance(alternative, Tensor) and _close(got, alternative, exact):
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
    if len(which) == total:
        return f"; it differs for every {noun} ({total})"
    plural = "s" if len(which) > 1 else ""
    return f"; it differs for {noun}{plural} {', '.join(which)} of {total} (counting from 0)"


def _check_dtype(name: str, got: Any, expected: Tensor, what: str) -> None:
    """Raise a failure naming a dtype mismatch of a right-shape tensor, with why it happens.

    A wrong dtype is its own mistake: the value-level hints ("the read is weights @ v") would misdiagnose it.
    """
    if not (isinstance(got, Tensor) and got.shape == expected.shape and got.dtype != expected.dtype):
        return
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
    raise _failure(f"{name} {what}: expected dtype {expected.dtype}, got {got.dtype}", why)


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
    _check_dtype(name, got, expected, what)
    try:
        compare(name, got, expected, atol=ATOL, rtol=RTOL, what=what)
    except ExerciseFailure as err:
        message = str(err) + (_differing(got, expected, *per) if per is not None else "")
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
    _check_dtype(name, got, expected, what)
    if not (isinstance(got, Tensor) and got.shape == expected.shape):
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
