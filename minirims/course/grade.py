"""Grade learners' notebooks: run each one fresh and check every exercise with the grader's own checks.

Command line (wired in ``minirims/__main__.py``)::

    python -m minirims grade SUBMISSIONS/ [--timeout S] [--out DIR] [--all] [--course DIR] [--json]
    python -m minirims grade alice/01_attention.ipynb [more notebooks]

**Grading runs the learner's code, with your permissions, on your machine. It is not a sandbox**: a notebook
can read, write or delete any file you can. Grade only what you would run yourself. The README's teacher
section lists exactly what grading guards against and what it does not.

What the grader trusts and what it does not:

* Saved outputs never count. The notebook's cells are run top to bottom from a copy with every output
  cleared, in a fresh ``python3`` kernel, inside a temporary copy of the notebook's folder (the learner's
  folder is never written to), with ``MINIRIMS_PROFILE=smoke`` unless that variable is set. Errors do not stop
  the run. Of each cell the grader keeps only its error and (for its own cells) its report line, bounded
  (:mod:`minirims.course.grade_kernel`); when grading ends, every process the kernel started is killed.
* The learner's check cells decide nothing. Which exercises a notebook holds, which name each exercise defines
  and which check grades it come from the course's own notebooks (``--course``, default: this checkout's
  ``notebooks/``), never from the learner's copy. Where the learner's notebook runs an exercise's check (after
  its exercise cell and check cells, before the next exercise or any cell that re-imports that name), the
  grader runs a cell of its own that calls the right check on the learner's object, looked up by name.
  Editing or deleting a check cell, replacing it by ``print("✔ ...")`` or rebinding the check functions
  changes nothing.
* The grader's cell runs in a namespace of its own, with the builtins and ``sys.stdout`` as they were before
  the learner's first cell (saved by :data:`_PROLOGUE`; the builtins module is put back that way while it
  grades, and the learner's changes return afterwards): names the learner binds (``list = [1, 2, 3]``,
  ``print = ...``), a replaced ``builtins.print`` or ``sys.stdout`` change nothing.
* The checks run on a fresh import of the whole package (the first part of ``Course.checks_module``) from the
  course's folder, refusing a copy loaded from anywhere else; the learner's own modules of that package are
  put back afterwards. So a reference function the learner patched in the kernel is not the one the check
  compares with.
* An answer that passes but is the package's own (the learner's object is, wraps, is a partial or a bound
  method of, or shares its code object with a function or class of the package) is reported as **uses
  reference**, not **pass**.
* A report line printed with the grader's marker by anything but the grader (more than one report) is not
  trusted: every exercise of that cell fails, saying so.

Each exercise ends in one of :data:`STATUSES`, with its reason:

* **pass**: the grader's check accepted the learner's answer (the message is the check's ``✔`` line);
* **uses reference**: the check accepted it, but the answer is the package's reference implementation;
* **fail**: the check refused it (the message says why), the answer's name is not defined, or no cell of the
  notebook defines it;
* **not attempted**: the exercise still raises its ``NotImplementedError("Exercise N.M: ...")``, or is blank;
* **not run**: the kernel died (``os._exit``, a crash) or a cell timed out before the exercise was graded.

``--timeout`` is per cell (seconds, a float). A cell that runs longer is interrupted; one that is still
running a few seconds later (it ignores the interrupt) gets its kernel killed, and the exercises after it are
not run.
A folder argument is a class (:mod:`minirims.course.grade_class`): a table, learner x exercise status plus the
totals and each learner's reasons (why each exercise did not pass, one line), is written to ``--out``.
Notebooks without exercises (``00_tour``) are skipped unless ``--all``.
The exit status is 0 when every exercise passes, 1 otherwise, 2 for a user error (one line on stderr).
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from minirims.course.grade_kernel import CellRun, Kernel, positive_seconds

__all__ = [
    "STATUSES",
    "Course",
    "Exercise",
    "ExerciseResult",
    "NotebookReport",
    "course_from_notebooks",
    "default_course",
    "plan",
    "read_notebook",
    "run_notebook",
]

STATUSES = ("pass", "uses reference", "fail", "not attempted", "not run")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  #: the folder that holds the ``minirims`` package
DEFAULT_COURSE = PACKAGE_ROOT / "notebooks"  #: the course's own notebooks in a source checkout
GRACE = 5.0  #: seconds an interrupted cell may take to stop before its kernel is killed
COPY_LIMIT = (500 * 2**20, 5000)  #: a notebook's folder is copied only below this many bytes and files
_NOTEBOOK_NAME = re.compile(r"^(\d\d)(?:\D.*)?\.ipynb$")
_CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\s*\(\s*([A-Za-z_]\w*)")
_MENTION = re.compile(r"\bExercise (\d+)\.\d+\b")
_RAISE_TEXT = re.compile(r"NotImplementedError\(\s*[\"']Exercise (\d+\.\d+)\b")  # the blanked exercise's stub


@dataclass(frozen=True)
class ExerciseResult:
    """The grade of one exercise: ``status`` is one of :data:`STATUSES`, ``message`` says why."""

    exercise: str
    status: str
    message: str = ""


def _key(exercise: str) -> tuple[int, ...]:
    """Exercise ids in course order: "1.2" < "1.10"."""
    return tuple(int(part) if part.isdigit() else 0 for part in exercise.split("."))


def _one_line(text: object, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _meta(cell: nbformat.NotebookNode) -> Mapping:
    """The cell's ``{"minirims": {...}}`` metadata (written by ``tools/make_exercises.py``; empty if none)."""
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


# ------------------------------------------------------------------------------------------- the course


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id ``"N.M"``, the name its answer is bound to, and the check that grades it."""

    id: str
    name: str
    check: str


@dataclass(frozen=True)
class Course:
    """What the grader trusts: the exercises of each notebook (by its two-digit number) and the checks.

    ``checks_module`` is imported from ``root`` (a ``sys.path`` entry) in the learner's kernel, anew for
    every grading; ``check`` names are attributes of that module.
    """

    notebooks: Mapping[str, tuple[Exercise, ...]]
    checks_module: str = "minirims.course.checks"
    root: Path = PACKAGE_ROOT


def course_from_notebooks(
    folder: str | os.PathLike[str],
    checks_module: str = "minirims.course.checks",
    root: str | os.PathLike[str] = PACKAGE_ROOT,
) -> Course:
    """Read the course's own (generated) notebooks: each check cell ``checks.check_x(name)`` marked
    ``{"minirims": {"check": "N.M"}}`` makes exercise N.M graded by ``check_x`` on the learner's ``name``.

    ValueError (naming ``course``) if ``folder`` is not a folder of ``NN_*.ipynb`` notebooks with exercises.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"course: expected the course's notebooks folder, got {str(folder)!r} (not a folder)"
        )
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: expected the folder that holds {checks_module}, got {str(root)!r}")
    notebooks: dict[str, tuple[Exercise, ...]] = {}
    for path in sorted(folder.glob("*.ipynb")):
        match = _NOTEBOOK_NAME.match(path.name)
        if not match:
            continue
        nb = read_notebook(path)
        found: dict[str, Exercise] = {}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            calls = _CHECK_CALL.findall(cell.source)
            for exercise, (check, name) in zip(_check_ids(cell), calls, strict=False):
                found.setdefault(exercise, Exercise(exercise, name, check))
        if found:
            notebooks[match[1]] = tuple(sorted(found.values(), key=lambda e: _key(e.id)))
    if not notebooks:
        raise ValueError(
            f"course: no exercises found in {folder} (expected the course's generated notebooks, NN_*.ipynb, "
            'whose check cells carry {"minirims": {"check": "N.M"}})'
        )
    return Course(notebooks, checks_module, root)


def default_course() -> Course:
    """The course of this checkout: its ``notebooks/`` and :mod:`minirims.course.checks`."""
    if not DEFAULT_COURSE.is_dir():
        raise ValueError(
            f"course: {DEFAULT_COURSE} not found (minirims is not run from a source checkout); pass --course "
            "with the folder of the course's own notebooks"
        )
    return course_from_notebooks(DEFAULT_COURSE)


# --------------------------------------------------------------------------- where each exercise is graded


@dataclass(frozen=True)
class Slot:
    """Where exercise ``exercise`` is graded in a learner's notebook: after cell ``after`` (0-based).

    ``cell`` is its exercise cell (None: no cell defines its name; then ``after`` is None too).
    """

    exercise: Exercise
    cell: int | None
    after: int | None


def _defines(source: str, name: str) -> bool:
    n = re.escape(name)
    pattern = rf"^(?:async[ \t]+)?def[ \t]+{n}\b|^class[ \t]+{n}\b|^{n}[ \t]*(?::[^=\n]*)?=(?!=)"
    return re.search(pattern, source, re.MULTILINE) is not None


def _rebinds(source: str, name: str) -> bool:
    """Whether a cell re-binds ``name`` by an import or a plain top-level assignment (not a ``def``)."""
    n = re.escape(name)
    return (
        re.search(rf"^[ \t]*(?:from[ \t]+\S+[ \t]+)?import\b[^\n]*\b{n}\b", source, re.MULTILINE) is not None
        or re.search(rf"^{n}[ \t]*(?::[^=\n]*)?=(?!=)", source, re.MULTILINE) is not None
    )


def _notebook_key(nb: nbformat.NotebookNode, name: str, course: Course) -> str | None:
    match = _NOTEBOOK_NAME.match(Path(name).name)
    if match and match[1] in course.notebooks:
        return match[1]
    mentions: Counter[str] = Counter()
    for cell in nb.cells:
        if cell.cell_type == "code":
            exercise = _exercise_id(cell)
            mentions.update(
                [f"{int(exercise.split('.')[0]):02d}"] if exercise and exercise[0].isdigit() else []
            )
            mentions.update(f"{int(n):02d}" for n in _MENTION.findall(cell.source))
    for key, _ in mentions.most_common():
        if key in course.notebooks:
            return key
    return None


def plan(nb: nbformat.NotebookNode, name: str, course: Course) -> tuple[str | None, list[Slot]]:
    """Which course notebook ``nb`` is (by its file ``name``'s number, else the exercises it mentions) and
    where each of that notebook's exercises is graded. ``(None, [])`` for a notebook without exercises.

    An exercise's cell is the learner's cell marked ``{"minirims": {"exercise": "N.M"}}``, else the cell
    that still raises its ``NotImplementedError``, else the first cell that defines its name. It is graded
    after the last of its exercise cell and the following cells that check it (by metadata or by calling its
    check), before the next exercise's cell or any cell that re-imports or re-assigns its name.
    """
    key = _notebook_key(nb, name, course)
    if key is None:
        return None, []
    exercises = course.notebooks[key]
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]

    def locate(exercise: Exercise) -> int | None:
        for test in (
            lambda c: _exercise_id(c) == exercise.id,
            lambda c: exercise.id in _RAISE_TEXT.findall(c.source),
            lambda c: _defines(c.source, exercise.name),
        ):
            for i in code:
                if test(nb.cells[i]):
                    return i
        return None

    cells = {exercise.id: locate(exercise) for exercise in exercises}
    slots = []
    for exercise in exercises:
        cell = cells[exercise.id]
        if cell is None:
            slots.append(Slot(exercise, None, None))
            continue
        others = {i for ex, i in cells.items() if i is not None and ex != exercise.id}
        after = cell
        for i in (i for i in code if i > cell):
            source = nb.cells[i].source
            own = _exercise_id(nb.cells[i])
            if i in others or (own is not None and own != exercise.id) or _rebinds(source, exercise.name):
                break
            if exercise.id in _check_ids(nb.cells[i]) or re.search(rf"\b{exercise.check}\s*\(", source):
                after = i
        slots.append(Slot(exercise, cell, after))
    return key, slots


# ------------------------------------------------------------------------------------- the grader's cell

_PROLOGUE = """
def __minirims_grade_prologue():
    import builtins, sys, types
    saved = types.ModuleType("__minirims_grader__")
    saved.builtins = builtins.dict(builtins.__dict__)
    saved.stdout = sys.stdout
    sys.modules["__minirims_grader__"] = saved
__minirims_grade_prologue()
del __minirims_grade_prologue
"""

#: run by the grader in a private namespace (its own builtins, saved before the learner's first cell): nothing
#: the learner binds, shadows or deletes in the notebook's namespace changes what it does
_GRADER_CODE = """
import contextlib, functools, importlib, os, sys, types

_LIMIT = 2000  # characters of a message reported at most


class _Tail:
    # what the check prints, bounded: the last characters only (the check's pass line is its last line)
    def __init__(self):
        self.tail = ""

    def write(self, text):
        self.tail = (self.tail + str.__str__(text))[-4 * _LIMIT :]
        return len(text)

    def flush(self):
        pass


def _text(value):
    text = str.__str__(str(value))
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"


def _ours(name, package):
    return type(name) is str and (name == package or name.startswith(package + "."))


def _codes(modules, package):
    # id(code) -> "module.qualname" for every function and method defined in the package's modules
    found, todo = {}, []
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, type) and _ours(value.__dict__.get("__module__"), package):
                todo += [(v, value) for v in list(vars(value).values())]
            else:
                todo.append((value, None))
    while todo:
        value, owner = todo.pop()
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            todo += [(f, owner) for f in (value.fget, value.fset) if f is not None]
            continue
        code = value if isinstance(value, types.CodeType) else None
        if isinstance(value, types.FunctionType) and _ours(value.__module__, package):
            code = value.__code__
        if code is None or id(code) in found:
            continue
        where = code.co_qualname if value is code else f"{value.__module__}.{value.__qualname__}"
        found[id(code)] = (code, where)
        todo += [(c, owner) for c in code.co_consts if isinstance(c, types.CodeType)]
    return found


def _origin(answer, package, codes):
    # what in the package the learner's answer is ('' if it is not the package's): by identity of its code,
    # by the module it was defined in, through bound methods, partials and functools.wraps
    todo, seen = [answer], set()
    while todo and len(seen) < 64:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        try:
            if isinstance(value, types.MethodType):
                todo.append(value.__func__)
                continue
            if isinstance(value, functools.partial):
                todo.append(value.func)
                continue
            if isinstance(value, types.FunctionType):
                if id(value.__code__) in codes:
                    return codes[id(value.__code__)][1]
                if _ours(value.__module__, package):
                    return f"{value.__module__}.{value.__qualname__}"
                wrapped = value.__dict__.get("__wrapped__")
                if wrapped is not None:
                    todo.append(wrapped)
                continue
            kind = value if isinstance(value, type) else type(value)
            module = kind.__dict__.get("__module__")
            if _ours(module, package):
                return f"{module}.{kind.__qualname__}" + ("" if kind is value else " (an instance)")
            call = getattr(kind, "__call__", None)
            if isinstance(call, types.FunctionType) and kind is not value:
                todo.append(call)
        except Exception:
            continue
    return ""


def _grade(items, module, root, expected, marker, learner, out, saved):
    # the builtins module as it was before the learner's first cell, while grading (the check and its
    # messages see no patched print, len or isinstance); the learner's own changes come back afterwards
    import builtins
    current = dict(builtins.__dict__)
    builtins.__dict__.update(saved)
    try:
        _grade_checks(items, module, root, expected, marker, learner, out)
    finally:
        for name in [n for n in builtins.__dict__ if n not in current]:
            del builtins.__dict__[name]
        builtins.__dict__.update(current)


def _grade_checks(items, module, root, expected, marker, learner, out):
    report = {}
    package = module.split(".")[0]

    def in_package(name):
        return name == package or name.startswith(package + ".")

    theirs = {n: m for n, m in list(sys.modules.items()) if in_package(n)}
    for name in theirs:
        del sys.modules[name]
    ours = {}
    checks, why = None, ""
    sys.path.insert(0, root)
    try:
        importlib.invalidate_caches()
        checks = importlib.import_module(module)
    except Exception as err:
        why = _text(f"cannot import {module}: {type(err).__name__}: {err}")
    finally:
        sys.path.remove(root)
    try:
        ours = {n: m for n, m in list(sys.modules.items()) if in_package(n)}
        if checks is not None:
            foreign = sorted(
                str(m.__file__) for m in ours.values() if getattr(m, "__file__", None)
                and not (os.path.realpath(m.__file__) == expected + ".py"
                         or os.path.realpath(m.__file__).startswith(expected + os.sep))
            )
            if foreign:
                why = f"{package} was loaded from {foreign[0]}, not from the course ({expected})"
                checks, why = None, _text(why)
        codes = _codes([*theirs.values(), *ours.values()], package) if checks is not None else {}
        for exercise, name, check in items:
            if checks is None:
                report[exercise] = ("grader", why)
                continue
            if name not in learner:
                report[exercise] = ("missing", f"`{name}` is not defined")
                continue
            tail = _Tail()
            try:
                with contextlib.redirect_stdout(tail):
                    getattr(checks, check)(learner[name])
            except NotImplementedError as err:
                report[exercise] = ("nie", _text(err))
            except (Exception, SystemExit) as err:
                what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                report[exercise] = ("fail", _text(what))
            else:
                origin = _origin(learner[name], package, codes)
                if origin:
                    what = f"`{name}` is {origin}, from the package, not your own code"
                    report[exercise] = ("reference", _text(what))
                    continue
                lines = [line.strip() for line in tail.tail.splitlines() if line.strip().startswith("✔")]
                report[exercise] = ("pass", _text(lines[-1] if lines else f"{check} accepted `{name}`"))
    finally:
        for name in [n for n in sys.modules if in_package(n)]:
            del sys.modules[name]
        sys.modules.update(theirs)
    try:  # the saved stream may still be tied to an older cell, if the learner replaced sys.stdout since
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and hasattr(out, "set_parent"):
            out.set_parent(shell.parent_header)
    except Exception:
        pass
    out.write(marker + repr(report) + "\\n")
    out.flush()
"""


def _grader_cell(slots: Sequence[Slot], course: Course, marker: str) -> str:
    """The cell that grades ``slots``: it runs :data:`_GRADER_CODE` in a namespace of its own, with the
    builtins and stdout saved by :data:`_PROLOGUE`, on the learner's objects looked up by name."""
    items = [(s.exercise.id, s.exercise.name, s.exercise.check) for s in slots]
    root = os.path.realpath(course.root)
    package = course.checks_module.split(".")[0]
    expected = os.path.join(root, package)
    call = (items, course.checks_module, root, expected, marker)
    code = f"{_GRADER_CODE}\n_grade(*{call!r}, __learner__, __stdout__, __builtins__)\n"
    # only imports, attribute look-ups and literals here: no name the learner could shadow
    return (
        "def __minirims_grade():\n"
        "    import builtins, sys\n"
        "    saved = sys.modules.get('__minirims_grader__')\n"
        "    names = saved.builtins if saved is not None else builtins.__dict__\n"
        "    out = saved.stdout if saved is not None else sys.stdout\n"
        "    scope = {'__builtins__': names, '__name__': '__minirims_grader__', '__stdout__': out,\n"
        "             '__learner__': sys._getframe().f_globals}\n"
        f"    names['exec']({code!r}, scope)\n"
        "__minirims_grade()\n"
        "del __minirims_grade\n"
    )


def _report(run: CellRun, marker: str) -> dict[str, tuple[str, str]] | str | None:
    """The grader cell's report; None if it printed none, a reason (str) if it cannot be trusted."""
    lines = [line for line in run.stdout.splitlines() if line.startswith(marker)]
    if len(lines) > 1 or run.truncated:
        return (
            "the grader's report cannot be trusted: lines that look like it were printed (something in the "
            "notebook forged one)"
        )
    if not lines:
        return None
    try:
        value = ast.literal_eval(lines[0][len(marker) :])
        return {str(k): (str(v[0]), str(v[1])) for k, v in value.items()}
    except (ValueError, TypeError, IndexError, AttributeError, SyntaxError, MemoryError, RecursionError):
        return None


# ------------------------------------------------------------------------------------ grading a notebook


def _where(nb: nbformat.NotebookNode, index: int) -> str:
    first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "")
    return f"cell {index + 1} ({_one_line(first, 60)!r})" if first else f"cell {index + 1}"


def _is_blank_source(source: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in source.splitlines())


def _blank_definition(source: str, name: str) -> bool:
    """Whether ``source`` defines function ``name`` with an empty body (docstring, pass, ..., the stub)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # magics, or a syntax error (reported by the run)
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            for stmt in node.body:
                if isinstance(stmt, ast.Pass) or (
                    isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                ):
                    continue
                if isinstance(stmt, ast.Raise) and "NotImplementedError" in ast.unparse(stmt):
                    continue
                return False
            return True
    return False


@dataclass
class NotebookReport:
    """The grade of one notebook: its course notebook number (``key``), the results, and how the run went."""

    path: Path
    key: str | None
    results: list[ExerciseResult] = field(default_factory=list)
    stopped: str | None = None  #: why the run ended before the last cell, if it did
    seconds: float = 0.0


def _check_copy_size(folder: Path) -> None:
    """ValueError if ``folder`` holds more than :data:`COPY_LIMIT` (say, a notebook in the home folder)."""
    size = files = 0
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
        for name in names:
            files += 1
            try:
                size += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                continue
            if size > COPY_LIMIT[0] or files > COPY_LIMIT[1]:
                raise ValueError(
                    f"{folder}: too big to copy for grading (more than {COPY_LIMIT[0] // 2**20} MB or "
                    f"{COPY_LIMIT[1]} files); put the notebook in a folder of its own"
                )


def _environment(course: Course, env: Mapping[str, str] | None) -> dict[str, str]:
    """``os.environ`` updated by ``env``, ``MINIRIMS_PROFILE=smoke`` unless set, and ``course.root`` first on
    ``PYTHONPATH``: the learner's ``import minirims`` finds the package the grader trusts."""
    kernel_env = {"MINIRIMS_PROFILE": "smoke", **os.environ, **(env or {})}
    paths = [str(course.root), *[p for p in kernel_env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    kernel_env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return kernel_env


def run_notebook(
    path: str | os.PathLike[str],
    timeout: float = 600,
    course: Course | None = None,
    env: Mapping[str, str] | None = None,
    copy_folder: bool = True,
    grace: float = GRACE,
) -> NotebookReport:
    """Run a fresh copy of the notebook at ``path`` and grade its exercises (see the module docstring).

    ``timeout``: seconds per cell; ``course``: what the grader trusts (default: :func:`default_course`);
    ``env``: variables set in the kernel on top of ``os.environ``; ``copy_folder``: run in a temporary copy of
    the notebook's folder (else in a temporary folder holding only the notebook); ``grace``: seconds an
    interrupted cell has to stop before its kernel is killed. A notebook without exercises is run too (``key``
    None). Nothing under ``path``'s folder is written. ValueError if the folder is too big to copy
    (:data:`COPY_LIMIT`).
    """
    path = Path(path)
    positive_seconds("timeout", timeout)
    if course is not None and not isinstance(course, Course):
        raise ValueError(f"course: expected a Course, got {type(course).__name__}")
    nb = read_notebook(path)
    course = course or default_course()
    key, slots = plan(nb, path.name, course)
    report = NotebookReport(path, key)
    for cell in nb.cells:  # saved outputs never count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.perf_counter()
    graded: dict[str, ExerciseResult] = {}
    runs: dict[int, CellRun] = {}
    grader_runs: dict[int, CellRun] = {}
    marker = f"MINIRIMS-GRADE-{secrets.token_hex(8)} "
    by_after: dict[int, list[Slot]] = {}
    for slot in slots:
        if slot.after is not None:
            by_after.setdefault(slot.after, []).append(slot)
    stopped_at: int | None = None
    with tempfile.TemporaryDirectory(prefix="minirims-grade-") as tmp:
        work = Path(tmp) / "work"
        if copy_folder:
            _check_copy_size(path.parent)
            shutil.copytree(
                path.parent, work, symlinks=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints")
            )
        else:
            work.mkdir()
        nbformat.write(nb, work / path.name)
        kernel = Kernel(work, _environment(course, env), grace=grace)
        try:
            kernel.start()
            prologue = kernel.run(_PROLOGUE, timeout, store_history=False, limit=0)
            if prologue.outcome != "ok":
                raise RuntimeError(f"the grader's set-up cell ended {prologue.outcome}: {prologue.evalue}")
        except Exception as err:
            kernel.close()
            report.stopped = f"the kernel did not start ({type(err).__name__}: {_one_line(err, 200)})"
        else:
            try:
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type == "code" and cell.source.strip():
                        runs[index] = kernel.run(cell.source, timeout, limit=0)  # its output is not graded
                        if not kernel.alive:
                            stopped_at = index
                            break
                    if index in by_after:
                        grader_runs[index] = run = kernel.run(
                            _grader_cell(by_after[index], course, marker),
                            timeout,
                            store_history=False,
                            keep=marker,
                        )
                        if not kernel.alive:
                            stopped_at = index
                            break
                        answers = _report(run, marker) if run.outcome == "ok" else None
                        for slot in by_after[index]:
                            graded[slot.exercise.id] = _judge(nb, slot, runs, run, answers, timeout)
            finally:
                kernel.close()
    if stopped_at is not None:
        run = grader_runs.get(stopped_at) or runs[stopped_at]
        what = "the grader's check" if stopped_at in grader_runs else _where(nb, stopped_at)
        report.stopped = (
            f"{what} ignored the interrupt after timing out ({timeout:g} s), so its kernel was killed"
            if run.outcome == "killed"
            else f"the kernel died while running {what}"
        )
    for slot in slots:
        if slot.cell is None:
            result = ExerciseResult(
                slot.exercise.id,
                "fail",
                f"no cell defines `{slot.exercise.name}` (the exercise cell is missing)",
            )
        else:
            result = graded.get(slot.exercise.id) or ExerciseResult(
                slot.exercise.id, "not run", f"not run: {report.stopped or 'the notebook stopped early'}"
            )
        report.results.append(result)
    report.seconds = time.perf_counter() - start
    return report


def _judge(
    nb: nbformat.NotebookNode,
    slot: Slot,
    runs: Mapping[int, CellRun],
    grader: CellRun,
    answers: Mapping[str, tuple[str, str]] | str | None,
    timeout: float,
) -> ExerciseResult:
    """One exercise's result, from its cells' runs and the grader cell's report."""
    exercise, name = slot.exercise.id, slot.exercise.name
    assert slot.cell is not None and slot.after is not None
    own = [i for i in range(slot.cell, slot.after + 1) if i in runs]
    for i in own:
        if runs[i].outcome == "interrupted":
            return ExerciseResult(
                exercise, "not run", f"not run: {_where(nb, i)} timed out ({timeout:g} s) and was interrupted"
            )
    if grader.outcome == "interrupted":
        return ExerciseResult(
            exercise,
            "not run",
            f"not run: the check of `{name}` timed out ({timeout:g} s) and was interrupted",
        )
    if isinstance(answers, str):
        return ExerciseResult(exercise, "fail", answers)
    if answers is None or exercise not in answers:
        why = f"{grader.ename}: {grader.evalue}" if grader.ename else "it printed no report"
        return ExerciseResult(exercise, "fail", _one_line(f"the grader's check could not run ({why})", 300))
    kind, message = answers[exercise]
    first = runs.get(slot.cell)
    stub = f"Exercise {exercise}"
    if kind == "pass":
        return ExerciseResult(exercise, "pass", _one_line(message))
    if kind == "reference":
        return ExerciseResult(
            exercise, "uses reference", _one_line(f"uses the reference implementation: {message}")
        )
    if kind == "nie" and re.match(rf"{re.escape(stub)}\b", message):
        return ExerciseResult(exercise, "not attempted", _one_line(message))
    if kind == "missing":
        if first is not None and first.ename == "NotImplementedError" and first.evalue.startswith(stub):
            return ExerciseResult(exercise, "not attempted", _one_line(first.evalue))
        if _is_blank_source(nb.cells[slot.cell].source):
            return ExerciseResult(exercise, "not attempted", f"the exercise cell is blank: define `{name}`")
        if first is not None and first.ename:
            return ExerciseResult(
                exercise,
                "fail",
                _one_line(f"{message}: {_where(nb, slot.cell)} raised {first.ename}: {first.evalue}", 300),
            )
        return ExerciseResult(exercise, "fail", f"{message} after {_where(nb, slot.cell)}")
    if kind == "fail" and _blank_definition(nb.cells[slot.cell].source, name):
        return ExerciseResult(exercise, "not attempted", f"`{name}` is still blank")
    if kind == "nie":
        message = f"NotImplementedError: {message}"
    return ExerciseResult(exercise, "fail", _one_line(message, 500))


# ---------------------------------------------------------------------------------------- command line


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``grade`` command's arguments to ``parser``."""
    parser.description = (
        "Grade learners' notebooks: run a fresh copy of each (saved outputs never count) in a temporary copy "
        "of its folder, and check every exercise with the grader's own checks. Grading RUNS THE LEARNER'S "
        "CODE with your permissions: it is not a sandbox; grade only what you would run yourself."
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a learner's notebook (.ipynb), or a folder of submissions: each .ipynb in it is one learner, "
        "each sub-folder is one learner with any number of notebooks",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        metavar="S",
        help=f"per-cell time limit in seconds, e.g. 2.5 (default: 600); a cell still running {GRACE:g} s "
        "after the interrupt has its kernel killed",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write the table (grades.csv, grades.json) here (default: the current folder, when a folder "
        "of submissions is graded)",
    )
    parser.add_argument("--all", action="store_true", help="also run notebooks that hold no exercises")
    parser.add_argument(
        "--course",
        metavar="DIR",
        default=None,
        help="the course's own notebooks, which say which exercises exist and which check grades each "
        f"(default: {DEFAULT_COURSE})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    """Run the ``grade`` command; return the exit status (0 all pass, 1 otherwise, 2 user error)."""
    from minirims.course import grade_class

    return grade_class.main(args)
