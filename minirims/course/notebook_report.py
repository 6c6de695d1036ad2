"""A notebook's exercise report from its own outputs, and what the grader shares: reading notebooks, results.

:func:`execute_notebook` runs a copy of a notebook with nbclient (as the course's own tests do on
``notebooks/``) and :func:`evaluate` reads its error and ``✔`` outputs. This trusts the notebook: its check
cells decide, and a check cell that prints "✔" passes. It is **not** how learners are graded: the grader
(:mod:`minirims.course.grade`) ignores every output and runs its own checks. Exercise ``N.M`` is

* **not attempted** if its exercise cell or one of its check cells raised the
  ``NotImplementedError("Exercise N.M: ...")`` left in the exercise;
* **fail** if its exercise cell or one of its check cells raised anything else (the message is the error);
* **pass** otherwise (the message is the check's ``✔`` line).

Exercises and their checks are found from the cell metadata written by ``tools/make_exercises.py``
(``{"minirims": {"exercise": "N.M"}}`` and ``{"minirims": {"check": "N.M" | ["N.M", ...]}}``). Without that
metadata, exercise cells are recognized by their ``# Exercise:`` line or their ``Exercise N.M``
``NotImplementedError``, and check cells are the cells after an exercise (before the next) that call
``check_*``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from minirims.course.grade_kernel import positive_seconds

STATUSES = ("pass", "fail", "not attempted")  #: what evaluate() reports
_NOTEBOOK_NAME = re.compile(r"^(\d\d).*\.ipynb$")
_EXERCISE_LINE = re.compile(r"^[ \t]*#[ \t]*Exercise:", re.MULTILINE)
_RAISE_TEXT = re.compile(r"NotImplementedError\(\s*[\"']Exercise (\d+\.\d+)\b")
_CHECK_CALL = re.compile(r"\bcheck_\w*\s*\(")
_MENTION = re.compile(r"\bExercise (\d+\.\d+)")


@dataclass(frozen=True)
class ExerciseResult:
    """The grade of one exercise: ``status`` is "pass", "fail", "not attempted" or (grader only) "not run"."""

    exercise: str
    status: str
    message: str = ""


@dataclass
class _Exercise:
    cells: list[int] = field(default_factory=list)
    checks: list[int] = field(default_factory=list)


def _key(exercise: str) -> tuple[int, ...]:
    """Exercise ids in course order: "1.2" < "1.10"."""
    return tuple(int(part) if part.isdigit() else 0 for part in exercise.split("."))


def _one_line(text: object, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _meta(cell: nbformat.NotebookNode) -> Mapping:
    """The cell's ``{"minirims": {...}}`` metadata (empty if it has none)."""
    meta = cell.get("metadata", {}).get("minirims", {})
    return meta if isinstance(meta, Mapping) else {}


def _exercise_id(cell: nbformat.NotebookNode) -> str | None:
    """The exercise a cell is marked as (``{"minirims": {"exercise": "N.M"}}``), if any."""
    value = _meta(cell).get("exercise")
    return value if isinstance(value, str) else None


def _check_ids(cell: nbformat.NotebookNode) -> list[str]:
    """The exercises a cell checks (``{"minirims": {"check": "N.M" | ["N.M", ...]}}``)."""
    checks = _meta(cell).get("check", [])
    if isinstance(checks, str):
        return [checks]
    return [str(c) for c in checks] if isinstance(checks, list) else []


def kernel_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """``os.environ`` updated by ``env``, with ``MINIRIMS_PROFILE=smoke`` unless set."""
    kernel_env = {**os.environ, **(env or {})}
    kernel_env.setdefault("MINIRIMS_PROFILE", "smoke")
    return kernel_env


def read_notebook(path: str | os.PathLike[str]) -> nbformat.NotebookNode:
    """Read a notebook; FileNotFoundError / ValueError with a clear message if it is missing or not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if path.suffix != ".ipynb":
        raise ValueError(f"{path}: not a Jupyter notebook (expected a .ipynb file)")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several kinds (JSON, validation, reader errors)
        raise ValueError(f"{path}: not a readable Jupyter notebook ({type(err).__name__}: {err})") from None


def execute_notebook(
    path: str | os.PathLike[str], timeout: float = 600, env: Mapping[str, str] | None = None
) -> tuple[nbformat.NotebookNode, str | None]:
    """Execute a copy of the notebook (the file is not modified); return it and why it stopped early, if so.

    ``timeout`` is per cell, in seconds (a cell that runs longer is interrupted). The kernel runs in the
    notebook's folder, with ``os.environ`` updated by ``env`` and ``MINIRIMS_PROFILE=smoke`` unless set.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = read_notebook(path)
    positive_seconds("timeout", timeout)
    client = NotebookClient(
        nb,
        timeout=math.ceil(timeout),  # nbclient takes whole seconds
        kernel_name="python3",
        allow_errors=True,
        interrupt_on_timeout=True,
        startup_timeout=120,
        extra_arguments=["--log-level=ERROR"],  # no kernel start-up warnings (e.g. about TCP transport)
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    try:
        client.execute(env=kernel_environment(env))
    except Exception as err:  # dead kernel, kernel that does not start, ...
        return nb, f"{type(err).__name__}: {err}".strip()
    return nb, None


def _error(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", ""), output.get("evalue", "")
    return None


def _passed_line(cell: nbformat.NotebookNode) -> str:
    lines = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            lines += [line.strip() for line in output.get("text", "").splitlines() if line.startswith("✔")]
    return lines[-1] if lines else ""


def find_exercises(nb: nbformat.NotebookNode, name: str = "") -> dict[str, _Exercise]:
    """Exercise id -> its exercise cells and check cells (indices into ``nb.cells``), in notebook order."""
    exercises: dict[str, _Exercise] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if _exercise_id(cell) is not None:
            exercises.setdefault(_exercise_id(cell), _Exercise()).cells.append(index)
        for exercise in _check_ids(cell):
            exercises.setdefault(exercise, _Exercise()).checks.append(index)
    if any(entry.cells for entry in exercises.values()):
        return dict(sorted(exercises.items(), key=lambda item: _key(item[0])))
    # No metadata (e.g. a notebook written by hand): recognize exercise cells and checks from the sources.
    exercises = {}
    prefix = _NOTEBOOK_NAME.match(Path(name).name)
    count = 0
    current: str | None = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        raised = _RAISE_TEXT.search(cell.source)
        if _EXERCISE_LINE.search(cell.source) or raised:
            count += 1
            current = raised[1] if raised else f"{int(prefix[1])}.{count}" if prefix else f"?.{count}"
            exercises.setdefault(current, _Exercise()).cells.append(index)
        elif current is not None and _CHECK_CALL.search(cell.source):
            exercises[current].checks.append(index)
    return exercises


def evaluate(nb: nbformat.NotebookNode, name: str = "", stopped: str | None = None) -> list[ExerciseResult]:
    """Grade an already executed notebook (see the module docstring for the rules)."""
    errors = {
        index: err
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (err := _error(cell))
    }
    results = []
    for exercise, entry in find_exercises(nb, name).items():
        own = [errors[index] for index in entry.cells + entry.checks if index in errors]
        nie = [
            evalue
            for ename, evalue in own
            if ename == "NotImplementedError" and exercise in _MENTION.findall(evalue)
        ]
        if nie:
            results.append(ExerciseResult(exercise, "not attempted", _one_line(nie[0])))
            continue
        failure = None
        for index in entry.cells + entry.checks:
            if index in errors:
                ename, evalue = errors[index]
                if ename == "KeyboardInterrupt":
                    evalue = "the cell timed out and was interrupted"
                failure = _one_line(f"{ename}: {evalue}" if evalue else ename)
                break
        unrun = [i for i in entry.cells + entry.checks if nb.cells[i].get("execution_count") is None]
        if failure is None and stopped is not None and unrun:
            failure = f"not run: the notebook stopped early ({_one_line(stopped)})"
        if failure is not None:
            results.append(ExerciseResult(exercise, "fail", failure))
        elif entry.checks:
            results.append(ExerciseResult(exercise, "pass", _passed_line(nb.cells[entry.checks[-1]])))
        else:
            results.append(ExerciseResult(exercise, "pass", "ran without error (no check cell found)"))
    return results
