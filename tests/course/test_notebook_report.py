"""minirims.course.notebook_report: the exercise report read from a notebook's own outputs (no kernel)."""

from __future__ import annotations

import nbformat
from helpers import load_fixture
from nbformat.v4 import new_code_cell, new_output

from minirims.course import notebook_report
from minirims.course.notebook_report import ExerciseResult

demo = load_fixture("demo_course")


def _executed(*cells) -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: cells are (source, metadata, error or None, stdout)."""
    out = []
    for count, (source, minirims, error, stdout) in enumerate(cells, start=1):
        cell = new_code_cell(source, metadata={"minirims": minirims} if minirims else {})
        cell.execution_count = count
        if stdout:
            cell.outputs.append(new_output("stream", name="stdout", text=stdout))
        if error:
            cell.outputs.append(new_output("error", ename=error[0], evalue=error[1], traceback=[]))
        out.append(cell)
    return demo.notebook(out)


def test_evaluate_pass_fail_not_attempted():
    nb = _executed(
        ("def f(): ...", {"exercise": "1.1"}, None, ""),
        ("check_f(f)", {"check": "1.1"}, None, "✔ f passed: 3 cases\n"),
        ("def g(): ...", {"exercise": "1.2"}, None, ""),
        ("check_g(g)", {"check": "1.2"}, ("ExerciseFailure", "g output: expected shape (2,), got (3,)"), ""),
        ("def h(): ...", {"exercise": "1.3"}, None, ""),
        ("check_h(h)", {"check": "1.3"}, ("NotImplementedError", "Exercise 1.3: write h"), ""),
        ("x = 1", {"exercise": "1.4"}, ("NotImplementedError", "Exercise 1.4: set x"), ""),
        ("check_x(x)", {"check": ["1.4"]}, ("NameError", "name 'x' is not defined"), ""),
        ("def k(): ...", {"exercise": "1.10"}, ("SyntaxError", "invalid syntax (1, 2)"), ""),
        ("check_k(k, x)", {"check": "1.10"}, ("NotImplementedError", "Exercise 1.1: elsewhere"), ""),
        ("def m(): ...", {"exercise": "1.11"}, None, ""),
    )
    assert notebook_report.evaluate(nb) == [
        ExerciseResult("1.1", "pass", "✔ f passed: 3 cases"),
        ExerciseResult("1.2", "fail", "ExerciseFailure: g output: expected shape (2,), got (3,)"),
        ExerciseResult("1.3", "not attempted", "Exercise 1.3: write h"),
        ExerciseResult("1.4", "not attempted", "Exercise 1.4: set x"),
        ExerciseResult("1.10", "fail", "SyntaxError: invalid syntax (1, 2)"),
        ExerciseResult("1.11", "pass", "ran without error (no check cell found)"),
    ]


def test_evaluate_without_metadata_timeouts_and_early_stops():
    nb = _executed(
        ("# Exercise: a\ndef a(): ...", None, None, ""),
        ("check_a(a)", None, ("KeyboardInterrupt", ""), ""),
        ("# Exercise: b\ndef b():\n    raise NotImplementedError('Exercise 7.2: b')", None, None, ""),
        ("checks.check_b(b)", None, ("NotImplementedError", "Exercise 7.2: b"), ""),
        ("# Exercise: c\nc = 1", None, None, ""),
        ("check_c(c)", None, None, ""),
    )
    nb.cells[-1].execution_count = None  # never ran
    results = notebook_report.evaluate(nb, "07_x.ipynb", stopped="DeadKernelError: Kernel died")
    assert results == [
        ExerciseResult("7.1", "fail", "KeyboardInterrupt: the cell timed out and was interrupted"),
        ExerciseResult("7.2", "not attempted", "Exercise 7.2: b"),
        ExerciseResult("7.3", "fail", "not run: the notebook stopped early (DeadKernelError: Kernel died)"),
    ]
