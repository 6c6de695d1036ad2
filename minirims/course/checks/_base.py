"""Building blocks for the exercise checks in ``minirims.course.checks``.

A check calls the learner's function on fixed, seeded inputs, compares each result with the reference and
prints exactly one line when everything matches::

    ✔ attention passed: 3 cases

Otherwise it raises :class:`ExerciseFailure` with one precise sentence, e.g.
``attention output: expected shape (2, 3, 4), got (2, 4, 3)``. A ``NotImplementedError`` raised by the
learner's function (the blanked exercise) propagates unchanged, so the grader (``python -m minirims grade``)
reports the exercise as "not attempted"; any other exception is re-raised as :class:`ExerciseFailure` saying
what the learner's function raised.

In a notebook a failed check shows only what the learner needs: IPython lets an exception render itself
(``_render_traceback_``), so the cell's error output is the ``✘`` line, the hint on its own line and, when the
learner's function raised, the learner's own frames -- not a traceback through the checks' internals (whose
source would also reveal the other hints). Outside IPython it is an ordinary exception with the same message,
and a kernel still reports it as an error (``ename`` ``ExerciseFailure``), so nbval and the grader see it.

This module does not import torch itself: it compares torch tensors, numpy arrays, Python numbers, strings,
None, and tuples / lists / NamedTuples / dicts of these.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Case",
    "CheckUsageError",
    "ExerciseFailure",
    "compare",
    "mark_not_attempted",
    "passed",
    "run_check",
]


_CHECKS_DIR = os.path.dirname(os.path.abspath(__file__))
_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"


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


class Case(NamedTuple):
    """One seeded check case: ``fn(*args, **kwargs)`` must match ``expected``; ``label`` names the case."""

    args: tuple
    expected: Any
    label: str = ""
    kwargs: Mapping[str, Any] | None = None


def _torch() -> Any:
    """The torch module if it has been imported (a tensor cannot exist otherwise), else None."""
    return sys.modules.get("torch")


def _is_tensor(x: object) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _type_name(x: object) -> str:
    if _is_tensor(x):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


def _fmt_shape(shape: Sequence[int]) -> str:
    dims = [int(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(str(d) for d in dims) + ")"


def _fmt_index(index: Sequence[int]) -> str:
    return _fmt_shape(index) if len(index) != 1 else f"({int(index[0])},)"


def _fmt_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def _to_numpy(x: Any) -> np.ndarray:
    """A tensor or array as a numpy array (low-precision floats widened to float32)."""
    if _is_tensor(x):
        torch = _torch()
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        if x.is_complex():
            return x.resolve_conj().numpy()
        return x.numpy()
    return np.asarray(x)


def _compare_arrays(label: str, got: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> None:
    """Compare two same-shape arrays; raise ExerciseFailure naming the max difference and first mismatch."""
    if expected.size == 0:
        return
    inexact = np.issubdtype(expected.dtype, np.inexact) or np.issubdtype(got.dtype, np.inexact)
    if inexact:
        close = np.isclose(got, expected, atol=atol, rtol=rtol, equal_nan=True)
    else:
        close = got == expected
    if bool(np.all(close)):
        return
    bad = ~close
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    count = int(bad.sum())
    detail = (
        f"{label}: values differ in {count} of {expected.size} entries; first differing index "
        f"{_fmt_index(first)}: expected {_fmt_value(expected[first])}, got {_fmt_value(got[first])}"
    )
    if inexact:
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        finite = np.isfinite(diff)
        if np.any(finite & bad):
            masked = np.where(finite & bad, diff, -np.inf)
            worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(masked)), diff.shape))
            detail += f"; max abs difference {float(diff[worst]):.3g} at index {_fmt_index(worst)}"
        if not np.all(np.isfinite(got)) and np.all(np.isfinite(expected)):
            detail += "; your output contains NaN or inf"
        detail += f" (atol={atol:g}, rtol={rtol:g})"
    raise ExerciseFailure(detail)


def _compare(label: str, got: Any, expected: Any, atol: float, rtol: float) -> None:
    if _is_tensor(expected) or isinstance(expected, np.ndarray):
        want_tensor = _is_tensor(expected)
        if want_tensor != _is_tensor(got) or (not want_tensor and not isinstance(got, np.ndarray)):
            raise ExerciseFailure(f"{label}: expected a {_type_name(expected)}, got {_type_name(got)}")
        if tuple(got.shape) != tuple(expected.shape):
            raise ExerciseFailure(
                f"{label}: expected shape {_fmt_shape(expected.shape)}, got {_fmt_shape(got.shape)}"
            )
        if got.dtype != expected.dtype:
            raise ExerciseFailure(f"{label}: expected dtype {expected.dtype}, got {got.dtype}")
        if want_tensor and got.device != expected.device:
            raise ExerciseFailure(f"{label}: expected a tensor on device {expected.device}, got {got.device}")
        _compare_arrays(label, _to_numpy(got), _to_numpy(expected), atol, rtol)
        return
    if isinstance(expected, tuple) and hasattr(expected, "_fields"):  # NamedTuple: name the fields
        if not isinstance(got, tuple) or len(got) != len(expected):
            raise ExerciseFailure(
                f"{label}: expected a {type(expected).__name__} of {len(expected)} fields "
                f"({', '.join(expected._fields)}), got {_describe_container(got)}"
            )
        for field, g, e in zip(expected._fields, got, expected, strict=True):
            _compare(f"{label}.{field}", g, e, atol, rtol)
        return
    if isinstance(expected, (tuple, list)):
        kind = type(expected).__name__
        if not isinstance(got, (tuple, list)):
            raise ExerciseFailure(
                f"{label}: expected a {kind} of {len(expected)} items, got {_type_name(got)}"
            )
        if len(got) != len(expected):
            raise ExerciseFailure(
                f"{label}: expected a {kind} of {len(expected)} items, got {len(got)} items"
            )
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _compare(f"{label}[{i}]", g, e, atol, rtol)
        return
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            raise ExerciseFailure(f"{label}: expected a dict, got {_type_name(got)}")
        if set(got) != set(expected):
            missing = sorted(map(repr, set(expected) - set(got)))
            extra = sorted(map(repr, set(got) - set(expected)))
            parts = [
                f"missing keys {', '.join(missing)}" if missing else "",
                f"extra keys {', '.join(extra)}" if extra else "",
            ]
            raise ExerciseFailure(f"{label}: {'; '.join(p for p in parts if p)}")
        for key in expected:
            _compare(f"{label}[{key!r}]", got[key], expected[key], atol, rtol)
        return
    if expected is None:
        if got is not None:
            raise ExerciseFailure(f"{label}: expected None, got {_type_name(got)}")
        return
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(got, (bool, np.bool_)) and not (_is_tensor(got) and got.ndim == 0):
            raise ExerciseFailure(f"{label}: expected a bool, got {_type_name(got)}")
        if bool(got) != bool(expected):
            raise ExerciseFailure(f"{label}: expected {bool(expected)}, got {bool(got)}")
        return
    if isinstance(expected, (int, float, np.integer, np.floating)):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
            raise ExerciseFailure(f"{label}: expected a number, got {_type_name(got)}")
        if isinstance(expected, (int, np.integer)) and isinstance(got, (int, np.integer)):
            ok = int(got) == int(expected)
        else:
            ok = math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol) or (
                math.isnan(float(got)) and math.isnan(float(expected))
            )
        if not ok:
            raise ExerciseFailure(
                f"{label}: expected {_fmt_value(expected)}, got {_fmt_value(got)} "
                f"(abs difference {abs(float(got) - float(expected)):.3g})"
            )
        return
    if type(got) is not type(expected) and not isinstance(got, type(expected)):
        raise ExerciseFailure(f"{label}: expected a {_type_name(expected)}, got {_type_name(got)}")
    if got != expected:
        raise ExerciseFailure(f"{label}: expected {expected!r}, got {got!r}")


def _describe_container(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} items"
    return _type_name(x)


def compare(
    name: str, got: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-5, what: str = "output"
) -> None:
    """Raise :class:`ExerciseFailure` unless ``got`` matches ``expected``.

    Tensors and arrays must agree in type, shape, dtype (and device) and be close
    (``|got - expected| <= atol + rtol * |expected|``; bool and integer values must be equal). Tuples, lists,
    NamedTuples and dicts are compared item by item, and the message names the item, e.g.
    ``attention output[1]: expected shape (2, 3, 4), got (2, 4, 3)``.
    """
    _compare(f"{name} {what}".strip(), got, expected, atol, rtol)


def passed(name: str, detail: str = "") -> None:
    """Print the single success line ``✔ <name> passed`` (``✔ <name> passed: <detail>`` with a detail)."""
    print(f"✔ {name} passed: {detail}" if detail else f"✔ {name} passed")


def _as_case(case: Any, index: int) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, tuple) and 2 <= len(case) <= 4:
        return Case(*case)
    raise TypeError(
        f"cases[{index}]: expected a Case or an (args, expected) tuple, got {type(case).__name__}"
    )


def run_check(
    name: str,
    fn: Callable[..., Any],
    cases: Iterable[Case | tuple],
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    what: str = "output",
    detail: str | None = None,
) -> None:
    """Call ``fn(*case.args, **case.kwargs)`` for each case, compare with ``case.expected``, print one line.

    ``NotImplementedError`` from ``fn`` propagates unchanged (the exercise is not attempted yet); any other
    exception becomes an :class:`ExerciseFailure` ("your function raised TypeError: ...") chained to the
    original, so a notebook still shows where in the learner's code it was raised.
    """
    if not callable(fn):
        raise ExerciseFailure(f"{name}: expected a function, got {_type_name(fn)}")
    cases = [_as_case(case, i) for i, case in enumerate(cases)]
    for i, case in enumerate(cases):
        label = case.label or (f"case {i + 1}" if len(cases) > 1 else "")
        try:
            got = fn(*case.args, **(case.kwargs or {}))
        except NotImplementedError as err:
            mark_not_attempted(err)
            raise
        except Exception as err:
            where = f" on {label}" if label else ""
            raise ExerciseFailure(f"{name}: your function raised {type(err).__name__}{where}: {err}") from err
        compare(name, got, case.expected, atol=atol, rtol=rtol, what=f"{what} ({label})" if label else what)
    passed(name, f"{len(cases)} case{'s' if len(cases) != 1 else ''}" if detail is None else detail)
