"""The course: notebooks/ is what solutions/ generates, and a blank notebook fails only at its exercises.

The executing test runs every ``notebooks/NN_*.ipynb`` top to bottom (``MINIRIMS_PROFILE=smoke``) and
requires that every cell that fails raises its exercise's ``NotImplementedError("Exercise N.M: ...")`` and
nothing else, that such cells carry the nbval tag ``raises-exception``, and that every exercise's stub is
reached (its check calls the learner's function), and that each exercise's cells (marked by
``tools/make_exercises.py``) report it "not attempted". It is stricter than nbval on ``notebooks/`` (nbval
accepts any error, or none, in a tagged cell).
"""

from __future__ import annotations

import copy
import math
import os
import re
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from helpers import load_fixture
from nbformat.v4 import new_code_cell, new_output

from minirims.experiments.train import PROFILES

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"
NO_COURSE = (
    "no course notebooks yet: solutions/ and notebooks/ hold no NN_*.ipynb (runs once the course exists)"
)
CELL_TIMEOUT = 900  # seconds per cell; the smoke profile keeps every cell far below this
SLOW_CELL = 120  # seconds: a cell this slow on smoke is named in a warning (its kernel and client times)
STUB = re.compile(r"\bExercise (\d+\.\d+)")


mx = load_fixture("demo_course").load_tool()  # tools/make_exercises.py


def _names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if mx.NOTEBOOK_NAME.match(path.name))


SOLVED = _names(SOLUTIONS)
BLANK = _names(NOTEBOOKS)


def _each(names: list[str], folder: str) -> list:
    reason = f"{folder}/ holds no NN_*.ipynb yet" if SOLVED or BLANK else NO_COURSE
    return names or [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-course")]


def _exercises(nb: nbformat.NotebookNode) -> list[str]:
    return [
        cell.metadata["minirims"]["exercise"]
        for cell in nb.cells
        if "exercise" in cell.metadata.get("minirims", {})
    ]


def _checked(nb: nbformat.NotebookNode) -> set[str]:
    out: set[str] = set()
    for cell in nb.cells:
        checks = cell.metadata.get("minirims", {}).get("check", [])
        out.update([checks] if isinstance(checks, str) else checks)
    return out


def execute_notebook(
    path: Path, timeout: float, env: dict[str, str]
) -> tuple[nbformat.NotebookNode, str | None]:
    """Execute a copy of the notebook in its folder; return it and why it stopped early, if it did."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    started: dict[int, float] = {}

    def start(cell, cell_index, **_):
        started[cell_index] = time.monotonic()

    def executed(cell, cell_index, **_):  # after the kernel's reply to the cell
        cell.metadata.setdefault("minirims_timing", {})["client_seconds"] = (
            time.monotonic() - started[cell_index]
        )

    client = NotebookClient(
        nb,
        timeout=math.ceil(timeout),
        kernel_name="python3",
        allow_errors=True,
        interrupt_on_timeout=True,
        startup_timeout=120,
        extra_arguments=["--log-level=ERROR"],  # no kernel start-up warnings (e.g. about TCP transport)
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_start=start,
        on_cell_executed=executed,
    )
    begun = time.monotonic()
    try:
        client.execute(env={**os.environ, **env})
    except Exception as err:  # dead kernel, kernel that does not start, ...
        return nb, f"{type(err).__name__}: {err}".strip()
    finally:
        nb.metadata["minirims_timing"] = {"total_seconds": time.monotonic() - begun}
    return nb, None


def slow_cells(nb: nbformat.NotebookNode, limit: float) -> list[str]:
    """The executed cells that took longer than ``limit`` seconds, each with the time the client waited
    and the time the kernel reports (busy to its reply): a client time far above the kernel's means the
    wait was for a message, not for the cell's work."""
    slow = []
    for index, cell in enumerate(nb.cells, start=1):
        client = cell.metadata.get("minirims_timing", {}).get("client_seconds")
        if client is None or client <= limit:
            continue
        stamps = cell.metadata.get("execution", {})
        try:
            kernel = (
                datetime.fromisoformat(stamps["shell.execute_reply"].replace("Z", "+00:00"))
                - datetime.fromisoformat(stamps["iopub.status.busy"].replace("Z", "+00:00"))
            ).total_seconds()
            kernel_text = f"{kernel:.0f} s"
        except (KeyError, ValueError):
            kernel_text = "unknown"
        first_line = cell.source.strip().split("\n")[0][:80]
        slow.append(f"cell {index} ({first_line!r}): client {client:.0f} s, kernel {kernel_text}")
    total = nb.metadata.get("minirims_timing", {}).get("total_seconds")
    in_cells = sum(c.metadata.get("minirims_timing", {}).get("client_seconds", 0.0) for c in nb.cells)
    if total is not None and total - in_cells > limit:
        slow.append(f"outside the cells (kernel start-up, shut-down): {total - in_cells:.0f} s")
    return slow


def _one_line(text: str) -> str:
    return " ".join(text.split())


def evaluate(nb: nbformat.NotebookNode, stopped: str | None = None) -> list[tuple[str, str, str]]:
    """(exercise, status, message) from an executed notebook's own outputs, trusting its check cells:
    "not attempted" if one of the exercise's cells raised its ``NotImplementedError("Exercise N.M: ...")``,
    "fail" if one raised anything else or never ran (``stopped``), else "pass" with the check's ✔ line."""
    cells: dict[str, list[int]] = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("minirims", {})
        marked = [meta["exercise"]] if "exercise" in meta else []
        marked += [meta["check"]] if isinstance(meta.get("check"), str) else meta.get("check", [])
        for exercise in marked:
            cells.setdefault(exercise, []).append(index)
    results = []
    for exercise, own in sorted(cells.items(), key=lambda item: [int(n) for n in item[0].split(".")]):
        errors = [
            (out.get("ename", ""), out.get("evalue", ""))
            for index in own
            for out in nb.cells[index].get("outputs", [])
            if out.get("output_type") == "error"
        ]
        stub = [v for e, v in errors if e == "NotImplementedError" and exercise in STUB.findall(v)]
        if stub:
            results.append((exercise, "not attempted", _one_line(stub[0])))
        elif errors:
            ename, evalue = errors[0]
            if ename == "KeyboardInterrupt":
                evalue = "the cell timed out and was interrupted"
            results.append((exercise, "fail", _one_line(f"{ename}: {evalue}" if evalue else ename)))
        elif stopped and any(nb.cells[i].get("execution_count") is None for i in own):
            results.append((exercise, "fail", f"not run: the notebook stopped early ({_one_line(stopped)})"))
        else:
            out = "".join(o.get("text", "") for o in nb.cells[own[-1]].outputs if o.get("name") == "stdout")
            passed = [line.strip() for line in out.splitlines() if line.startswith("✔")]
            results.append((exercise, "pass", passed[-1] if passed else "ran without error"))
    return results


def blank_notebook_problems(nb: nbformat.NotebookNode, stopped: str | None = None) -> list[str]:
    """What is wrong with an executed blank notebook (empty when every failure is an exercise's stub)."""
    problems = [f"the run stopped early: {stopped}"] if stopped else []
    exercises = _exercises(nb)
    reached: set[str] = set()
    for index, cell in enumerate(nb.cells, start=1):
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        if cell.cell_type != "code" or not errors:
            continue
        ename, evalue = errors[0].get("ename", ""), errors[0].get("evalue", "")
        first_line = cell.source.strip().split("\n")[0][:80]
        if ename != "NotImplementedError" or not evalue.startswith("Exercise "):
            problems.append(
                f"cell {index} ({first_line!r}) raised {ename}: {' '.join(evalue.split())[:300]}; only an "
                "exercise's NotImplementedError may fail in notebooks/ (keep answers inside functions so "
                "that checks raise the stub's error, and make later cells use the package's reference)"
            )
        else:
            exercise = evalue.split()[1].rstrip(":")
            reached.add(exercise)
            if exercise not in exercises:
                problems.append(f"cell {index} ({first_line!r}) raised for an unknown exercise: {evalue}")
        if "raises-exception" not in cell.metadata.get("tags", []):
            problems.append(f"cell {index} ({first_line!r}) fails but has no 'raises-exception' tag")
    for exercise in exercises:
        if exercise not in reached:
            problems.append(
                f"Exercise {exercise}: no cell raised its NotImplementedError; its check must call the "
                "learner's function"
            )
    if not stopped and not problems:
        for exercise, status, message in evaluate(nb):
            if status != "not attempted":
                problems.append(f"grade: Exercise {exercise} is {status!r} ({message})")
    return problems


def test_notebooks_are_generated_from_solutions():
    if not SOLVED and not BLANK:
        pytest.skip(NO_COURSE)
    problems = mx.check(SOLUTIONS, NOTEBOOKS)
    assert not problems, "\n".join([*problems, "regenerate them: python tools/make_exercises.py"])


@pytest.mark.parametrize("name", _each(SOLVED, "solutions"))
def test_solution_notebook_has_checked_exercises(name):
    solution = mx.read_notebook(SOLUTIONS / name)
    kernel = solution.metadata.get("kernelspec", {}).get("name", "python3")
    assert kernel == "python3", (
        f"solutions/{name}: kernelspec {kernel!r}; save it with the standard 'python3' kernel"
    )
    blank = mx.generate(solution, name)
    exercises = _exercises(blank)
    if 1 <= int(name[:2]) <= 5:
        assert exercises, f"solutions/{name}: notebooks 01-05 must hold at least one exercise"
    unchecked = [exercise for exercise in exercises if exercise not in _checked(blank)]
    assert not unchecked, (
        f"solutions/{name}: exercise(s) {', '.join(unchecked)} have no check: a later cell should call "
        "checks.check_<thing>(<the learner's function>)"
    )


def run_blank_notebook(path: Path) -> list[str]:
    """Execute a blank notebook as CI does (smoke profile, this checkout importable); return its problems."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    nb, stopped = execute_notebook(
        path, timeout=CELL_TIMEOUT, env={"MINIRIMS_PROFILE": "smoke", "PYTHONPATH": pythonpath}
    )
    for line in slow_cells(nb, SLOW_CELL):
        warnings.warn(f"{path.name}: slow on smoke: {line}", stacklevel=2)
    return blank_notebook_problems(nb, stopped)


@pytest.mark.slow
@pytest.mark.parametrize("name", _each(BLANK, "notebooks"))
def test_blank_notebook_fails_only_with_its_exercises(name):
    problems = run_blank_notebook(NOTEBOOKS / name)
    assert not problems, f"notebooks/{name}:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------- the checker itself


def _executed(*cells) -> nbformat.NotebookNode:
    out = []
    for source, minirims, tagged, error in cells:
        cell = new_code_cell(source, metadata={"minirims": minirims} if minirims else {})
        if tagged:
            cell.metadata["tags"] = ["raises-exception"]
        if error:
            cell.outputs = [new_output("error", ename=error[0], evalue=error[1], traceback=[])]
        cell.execution_count = 1
        out.append(cell)
    return nbformat.v4.new_notebook(cells=out)


def test_checker_accepts_a_notebook_that_fails_only_at_its_exercises():
    nb = _executed(
        ("def f(): ...", {"exercise": "1.1"}, False, None),
        ("check_f(f)", {"check": "1.1"}, True, ("NotImplementedError", "Exercise 1.1: write f")),
        ("x = 1", {"exercise": "1.2"}, True, ("NotImplementedError", "Exercise 1.2: set x")),
        ("print(reference(1))", None, False, None),
    )
    assert blank_notebook_problems(nb) == []


def test_checker_reports_other_errors_missing_tags_and_unreached_exercises():
    nb = _executed(
        ("def f(): ...", {"exercise": "1.1"}, False, None),
        ("check_f(f)", {"check": "1.1"}, False, ("NotImplementedError", "Exercise 1.1: write f")),
        ("def g(): ...", {"exercise": "1.2"}, False, None),
        ("print(y)", None, True, ("NameError", "name 'y' is not defined")),
    )
    problems = blank_notebook_problems(nb, stopped="DeadKernelError: Kernel died")
    assert problems[0] == "the run stopped early: DeadKernelError: Kernel died"
    assert "cell 2 ('check_f(f)') fails but has no 'raises-exception' tag" in problems
    assert any(
        p.startswith("cell 4 ('print(y)') raised NameError: name 'y' is not defined") for p in problems
    )
    assert problems[-1].startswith("Exercise 1.2: no cell raised its NotImplementedError")


def test_evaluate_pass_fail_not_attempted_timeouts_and_early_stops():
    nb = _executed(
        ("def f(): ...", {"exercise": "1.1"}, False, None),
        ("check_f(f)", {"check": "1.1"}, False, None),
        ("def g(): ...", {"exercise": "1.2"}, False, None),
        ("check_g(g)", {"check": "1.2"}, False, ("ExerciseFailure", "g: expected shape (2,), got (3,)")),
        ("def h(): ...", {"exercise": "1.3"}, False, None),
        ("check_h(h)", {"check": "1.3"}, False, ("NotImplementedError", "Exercise 1.3: write h")),
        ("x = 1", {"exercise": "1.4"}, False, ("NotImplementedError", "Exercise 1.4: set x")),
        ("check_x(x)", {"check": ["1.4"]}, False, ("NameError", "name 'x' is not defined")),
        ("def k(): ...", {"exercise": "1.10"}, False, ("SyntaxError", "invalid syntax (1, 2)")),
        ("check_k(k, x)", {"check": "1.10"}, False, ("NotImplementedError", "Exercise 1.1: elsewhere")),
        ("def m(): ...", {"exercise": "1.11"}, False, None),
        ("check_m(m)", {"check": "1.11"}, False, ("KeyboardInterrupt", "")),
        ("def n(): ...", {"exercise": "1.12"}, False, None),
        ("check_n(n)", {"check": "1.12"}, False, None),
    )
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="✔ f passed: 3 cases\n")]
    nb.cells[-1].execution_count = None  # never ran
    assert evaluate(nb, stopped="DeadKernelError: Kernel died") == [
        ("1.1", "pass", "✔ f passed: 3 cases"),
        ("1.2", "fail", "ExerciseFailure: g: expected shape (2,), got (3,)"),
        ("1.3", "not attempted", "Exercise 1.3: write h"),
        ("1.4", "not attempted", "Exercise 1.4: set x"),
        ("1.10", "fail", "SyntaxError: invalid syntax (1, 2)"),
        ("1.11", "fail", "KeyboardInterrupt: the cell timed out and was interrupted"),
        ("1.12", "fail", "not run: the notebook stopped early (DeadKernelError: Kernel died)"),
    ]


@pytest.mark.slow
def test_checker_end_to_end_on_the_demo_course(tmp_path):
    demo = load_fixture("demo_course")
    demo.write(demo.solution(), tmp_path / "solutions" / demo.NAME)
    mx.write(tmp_path / "solutions", tmp_path / "notebooks")
    (tmp_path / "notebooks" / "data.txt").write_text("here\n")
    assert run_blank_notebook(tmp_path / "notebooks" / demo.NAME) == []
    nb, stopped = execute_notebook(tmp_path / "notebooks" / demo.NAME, timeout=60, env={})
    timed = [c.metadata["minirims_timing"]["client_seconds"] for c in nb.cells if c.cell_type == "code"]
    assert stopped is None and timed and all(0 <= t < 60 for t in timed)
    assert sum(timed) <= nb.metadata["minirims_timing"]["total_seconds"] < 60
    assert slow_cells(nb, 60) == []


def test_slow_cells_name_the_cell_with_the_client_and_kernel_times():
    nb = _executed(("import time", None, False, None), ("time.sleep(500)", None, False, None))
    nb.cells[0].metadata["minirims_timing"] = {"client_seconds": 2.0}
    nb.cells[1].metadata["minirims_timing"] = {"client_seconds": 911.4}
    busy = datetime.fromtimestamp(0, timezone.utc)  # the kernel's stamps: ISO 8601, "Z" for UTC
    nb.cells[1].metadata["execution"] = {
        "iopub.status.busy": busy.isoformat().replace("+00:00", "Z"),
        "shell.execute_reply": (busy + timedelta(seconds=9.6)).isoformat().replace("+00:00", "Z"),
    }
    assert slow_cells(nb, 120) == ["cell 2 ('time.sleep(500)'): client 911 s, kernel 10 s"]
    del nb.cells[1].metadata["execution"]
    assert slow_cells(nb, 120) == ["cell 2 ('time.sleep(500)'): client 911 s, kernel unknown"]
    assert slow_cells(nb, 1000) == []
    nb.metadata["minirims_timing"] = {"total_seconds": 1100.0}  # 187 s spent outside the cells
    assert slow_cells(nb, 1000) == []
    assert slow_cells(nb, 150)[-1] == "outside the cells (kernel start-up, shut-down): 187 s"


SCREEN_LINES = 40  # "no cell prints more than a screen of text"


@pytest.mark.parametrize("name", _each(SOLVED, "solutions"))
def test_solution_is_saved_after_run_all_with_short_outputs(name):
    """Saved after run-all (counts 1..N, no error), opens with markdown, prints no wall of text."""
    nb = nbformat.read(SOLUTIONS / name, as_version=4)
    assert nb.cells[0].cell_type == "markdown", f"{name}: the first cell should say what the learner will do"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: execution counts {counts} (run all, then save)"
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{name} cell {index}: saved with an error output"
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            lines = text.count("\n")
            assert lines <= SCREEN_LINES, f"{name} cell {index}: prints {lines} lines (> {SCREEN_LINES})"


# ---------------------------------------------------------------------------------- the course template

#: notebooks not yet brought up to the template (each entry says who owns the change); the test is a strict
#: xfail for them, so it fails as soon as one meets the template and the entry should be removed
TEMPLATE_PENDING: dict[str, str] = {}
TITLE = re.compile(r"^# (?P<number>\d\d) · \S")
TIME = re.compile(r"\*\*Time:\*\*[^\n]*?\b\d+(?:-\d+)? minutes")
EXERCISE_HEADING = r"^### Exercise {number} — .+ \((?:easy|medium|hard), (?:about )?\d+ minutes\)[ \t]*$"
HINT = re.compile(r"<details><summary>Hint (?P<number>\d+) \((?P<label>[^)]+)\)</summary>")
FOLDED = re.compile(r"<details>.*?</details>", re.DOTALL)
INLINE_HINT = re.compile(r"^[ \t>]*[*_]*hints?\b", re.IGNORECASE | re.MULTILINE)


def template_problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """How a solution notebook departs from the course template (empty when it follows it)."""
    problems = []
    cells = nb.cells
    first = cells[0].source if cells and cells[0].cell_type == "markdown" else ""
    title = TITLE.match(first)
    if not title or title["number"] != name[:2]:
        problems.append(f"the first cell must open with the title '# {name[:2]} · <title>'")
    bullets = first.split("**You will be able to**", 1)
    if len(bullets) < 2 or bullets[1].count("\n- ") < 2:
        problems.append(
            "the first cell must say '**You will be able to**' and list at least two goals ('- ...')"
        )
    if "**Prerequisites:**" not in first:
        problems.append("the first cell must name the '**Prerequisites:**'")
    if not TIME.search(first):
        problems.append("the first cell must give an honest '**Time:** about N minutes'")
    last = cells[-1].source if cells and cells[-1].cell_type == "markdown" else ""
    if "## Recap" not in last or "## Questions" not in last:
        problems.append("the last cell must hold '## Recap' and '## Questions'")
    elif "<details><summary>Sample answers</summary>" not in last.split("## Questions", 1)[1]:
        problems.append(
            "the questions need sample answers folded in <details><summary>Sample answers</summary>"
        )
    code = [cell for cell in cells if cell.cell_type == "code"]
    if code and not code[0].source.startswith("%matplotlib inline"):
        problems.append(
            "the first code cell must start with '%matplotlib inline' (figures whatever the backend)"
        )
    for index, cell in enumerate(cells, start=1):
        if cell.cell_type == "code" and "NBVAL_" in cell.source:
            problems.append(
                f"cell {index}: an nbval marker in the code; use the cell tag instead (nbval-...)"
            )
        if cell.cell_type == "markdown" and INLINE_HINT.search(FOLDED.sub("", cell.source)):
            problems.append(f"cell {index}: a hint printed inline; fold it in <details><summary>Hint 1 (...)")
    count, text = 0, ""
    for index, cell in enumerate(cells, start=1):
        if cell.cell_type == "markdown":
            text += cell.source + "\n"
            continue
        if mx.find_region(cell.source, f"{name}, cell {index}") is None:
            continue
        count += 1
        exercise = f"{name[:2].lstrip('0') or '0'}.{count}"
        heading = EXERCISE_HEADING.format(number=re.escape(exercise))
        if not re.search(heading, text, re.MULTILINE):
            problems.append(
                f"Exercise {exercise}: the markdown before it needs the heading "
                f"'### Exercise {exercise} — <what> (easy|medium|hard, N minutes)'"
            )
        hints = HINT.findall(text)
        numbers = [int(number) for number, _ in hints]
        if len(hints) < 2 or numbers != list(range(1, len(hints) + 1)):
            problems.append(
                f"Exercise {exercise}: needs at least two folded hints, numbered from 1 "
                "(<details><summary>Hint 1 (a nudge)</summary> ... Hint 2 (near-code))"
            )
        elif "nudge" not in hints[0][1] or "near-code" not in hints[-1][1]:
            problems.append(
                f"Exercise {exercise}: hints are graded: 'Hint 1 (a nudge)' first, '(near-code)' last"
            )
        text = ""
    return problems


@pytest.mark.parametrize("name", _each(SOLVED, "solutions"))
def test_notebook_follows_the_course_template(name, request):
    if name in TEMPLATE_PENDING:
        request.applymarker(pytest.mark.xfail(strict=True, reason=TEMPLATE_PENDING[name]))
    nb = nbformat.read(SOLUTIONS / name, as_version=4)
    problems = template_problems(nb, name)
    assert not problems, f"solutions/{name}:\n" + "\n".join(problems)


def test_template_checker_finds_each_departure():
    from nbformat.v4 import new_markdown_cell, new_notebook

    good = new_notebook(
        cells=[
            new_markdown_cell(
                "# 03 · Title\n\n**You will be able to**\n\n- one\n- two\n\n**Prerequisites:** 02. "
                "**Time:** about 30 minutes."
            ),
            new_code_cell("%matplotlib inline\nimport torch"),
            new_markdown_cell(
                "### Exercise 3.1 — a thing (easy, 5 minutes)\n\n"
                "<details><summary>Hint 1 (a nudge)</summary>\nx\n</details>\n\n"
                "<details><summary>Hint 2 (near-code)</summary>\n\ny\n</details>"
            ),
            new_code_cell(
                "def f():\n    # Exercise: do it\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
            ),
            new_markdown_cell(
                "## Recap\n\n- a\n\n## Questions\n\n1. q\n\n"
                "<details><summary>Sample answers</summary>\n\n1. a\n</details>"
            ),
        ]
    )
    assert template_problems(good, "03_x.ipynb") == []
    bad = copy.deepcopy(good)
    bad.cells[0].source = "# 3 Title\n\nWe build things."
    bad.cells[1].source = "# NBVAL_CHECK_OUTPUT\nimport torch"
    bad.cells[2].source = "### Exercise 3.1 — a thing\n\n*Hint:* use torch.\n"
    bad.cells[4].source = "## Summary\n\n- a"
    problems = "\n".join(template_problems(bad, "03_x.ipynb"))
    for fragment in (
        "title",
        "You will be able to",
        "Prerequisites",
        "Time:",
        "'## Recap' and '## Questions'",
        "%matplotlib inline",
        "nbval marker",
        "hint printed inline",
        "the heading",
        "two folded hints",
    ):
        assert fragment in problems, fragment


EXERCISE_TITLE = re.compile(r"^#+ Exercise (\d+\.\d+) — (.+?) \(", re.MULTILINE)


def _map_rows(text: str, header: str) -> dict[str, str]:
    """The rows of the markdown table under ``header``: first cell (without ** or `) -> last cell."""
    rows, inside = {}, False
    for line in text.splitlines():
        if line.startswith(header):
            inside = True
        elif inside and line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("*`")] = cells[-1]
        elif inside and not line.startswith("|"):
            break
    return rows


def test_the_tours_course_map_lists_every_exercise_of_every_notebook():
    if "00_tour.ipynb" not in SOLVED:
        pytest.skip("no solutions/00_tour.ipynb")
    tour = "\n".join(cell.source for cell in mx.read_notebook(SOLUTIONS / "00_tour.ipynb").cells)
    rows = _map_rows(tour, "| notebook | you build | exercises |")
    assert sorted(rows) == [name.removesuffix(".ipynb") for name in SOLVED], (
        "a notebook is missing from the map"
    )
    for name in SOLVED:
        solution = mx.read_notebook(SOLUTIONS / name)
        prose = "\n".join(cell.source for cell in solution.cells if cell.cell_type == "markdown")
        titles = EXERCISE_TITLE.findall(prose)  # [(number, title)] from "### Exercise N.M — title (...)"
        ids = _exercises(mx.generate(solution, name))
        assert [number for number, _ in titles] == ids, (
            f"solutions/{name}: exercise titles and cells disagree"
        )
        listed = "; ".join(f"{number} {title}" for number, title in titles) or "none"
        assert rows[name.removesuffix(".ipynb")] == listed, f"00_tour's map is wrong about {name}"
    profiles = _map_rows(tour, "| profile | meant for |")
    assert sorted(profiles) == sorted(PROFILES), "00_tour's profile table"


def test_the_tour_claims_no_full_run_only_while_there_is_none():
    if "00_tour.ipynb" not in SOLVED:
        pytest.skip("no solutions/00_tour.ipynb")
    tour = "\n".join(cell.source for cell in mx.read_notebook(SOLUTIONS / "00_tour.ipynb").cells)
    recorded = any((REPO / "results").glob("*_full.json"))
    assert ("no `full` run is recorded" in tour) != recorded, "00_tour's profile table: the full row"
