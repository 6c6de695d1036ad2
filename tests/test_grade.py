"""minirims.course.checks._base (exercise-check helpers) and minirims.course.grade (the notebook grader)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import NamedTuple

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_output

from minirims.course import grade
from minirims.course.checks._base import Case, ExerciseFailure, compare, passed, run_check


def _load(name: str):
    path = Path(__file__).parent / "fixtures" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"minirims_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load("demo_course")
mx = demo.load_tool()


# ------------------------------------------------------------------------------------------ checks_base


def test_compare_reports_shape_mismatch():
    with pytest.raises(
        ExerciseFailure, match=r"^attention output: expected shape \(2, 3, 4\), got \(2, 4, 3\)$"
    ):
        compare("attention", torch.zeros(2, 4, 3), torch.zeros(2, 3, 4))


def test_compare_reports_values_with_max_difference_and_first_index():
    expected = torch.zeros(2, 3)
    got = expected.clone()
    got[0, 2] = 0.5
    got[1, 1] = -2.0
    with pytest.raises(ExerciseFailure) as info:
        compare("attention", got, expected, what="weights")
    assert str(info.value) == (
        "attention weights: values differ in 2 of 6 entries; first differing index (0, 2): "
        "expected 0, got 0.5; max abs difference 2 at index (1, 1) (atol=1e-05, rtol=1e-05)"
    )
    compare("attention", expected + 1e-7, expected)  # within tolerance


def test_compare_reports_type_dtype_and_items():
    with pytest.raises(ExerciseFailure, match=r"^f output: expected a torch.Tensor, got list$"):
        compare("f", [1.0], torch.ones(1))
    with pytest.raises(ExerciseFailure, match=r"^f output: expected dtype torch.float32, got torch.float64$"):
        compare("f", torch.ones(2, dtype=torch.float64), torch.ones(2))
    with pytest.raises(ExerciseFailure, match=r"^f output\[1\]: expected shape \(3,\), got \(2,\)$"):
        compare("f", (torch.ones(1), torch.ones(2)), (torch.ones(1), torch.ones(3)))
    with pytest.raises(ExerciseFailure, match=r"^f output: expected a tuple of 2 items, got 1 items$"):
        compare("f", (torch.ones(1),), (torch.ones(1), torch.ones(3)))
    with pytest.raises(ExerciseFailure, match=r"^f output: expected a tuple of 2 items, got torch.Tensor$"):
        compare("f", torch.ones(1), (torch.ones(1), torch.ones(3)))

    class Out(NamedTuple):
        read: torch.Tensor
        mask: torch.Tensor

    mask = torch.tensor([[True, False, True]])
    with pytest.raises(ExerciseFailure) as info:
        compare("competition", Out(torch.ones(1), ~mask), Out(torch.ones(1), mask))
    assert str(info.value) == (
        "competition output.mask: values differ in 3 of 3 entries; first differing index (0, 0): "
        "expected True, got False"
    )
    with pytest.raises(ExerciseFailure, match=r"expected a numpy.ndarray, got torch.Tensor"):
        compare("f", torch.ones(2), np.ones(2))
    with pytest.raises(ExerciseFailure, match=r"^f output\['k'\]: expected 2, got 3"):
        compare("f", {"k": 3}, {"k": 2})
    with pytest.raises(ExerciseFailure, match=r"^f output: expected 0.5, got 0.6 \(abs difference 0.1\)$"):
        compare("f", 0.6, 0.5)
    compare("f", {"a": (np.arange(3), None, "x", 2, True)}, {"a": (np.arange(3), None, "x", 2, True)})


def test_compare_flags_nan():
    with pytest.raises(ExerciseFailure, match="your output contains NaN or inf"):
        compare("f", torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))


def test_passed_prints_one_line(capsys):
    passed("attention")
    passed("attention", "3 cases")
    assert capsys.readouterr().out == "✔ attention passed\n✔ attention passed: 3 cases\n"


def _cases():
    torch.manual_seed(0)
    cases = []
    for label in ("small", "masked"):
        x = torch.randn(2, 3)
        cases.append(Case((x,), torch.softmax(x, dim=-1), label))
    return cases


def test_run_check_passes_with_exactly_one_line(capsys):
    run_check("softmax", lambda x: x.exp() / x.exp().sum(-1, keepdim=True), _cases())
    assert capsys.readouterr().out == "✔ softmax passed: 2 cases\n"
    run_check("sum", lambda a, b=0: a + b, [((1,), 3, "", {"b": 2})], detail="")
    assert capsys.readouterr().out == "✔ sum passed\n"


def test_run_check_names_the_case_and_the_mismatch(capsys):
    with pytest.raises(
        ExerciseFailure, match=r"^softmax output \(small\): expected shape \(2, 3\), got \(3, 2\)$"
    ):
        run_check("softmax", lambda x: torch.softmax(x, -1).T, _cases())
    calls = []

    def wrong_the_second_time(x):
        calls.append(x)
        return torch.softmax(x, dim=-1 if len(calls) == 1 else 0)

    with pytest.raises(ExerciseFailure, match=r"^softmax output \(masked\): values differ in"):
        run_check("softmax", wrong_the_second_time, _cases())
    assert capsys.readouterr().out == ""


def test_run_check_lets_not_implemented_through_and_wraps_other_errors():
    error = NotImplementedError("Exercise 1.1: implement attention")

    def blank(x):
        raise error

    with pytest.raises(NotImplementedError) as info:
        run_check("attention", blank, _cases())
    assert info.value is error
    with pytest.raises(
        ExerciseFailure, match=r"^attention: your function raised TypeError on small: boom$"
    ) as info:
        run_check("attention", lambda x: (_ for _ in ()).throw(TypeError("boom")), _cases())
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(ExerciseFailure, match=r"^attention: expected a function, got int$"):
        run_check("attention", 3, _cases())


# ---------------------------------------------------------------------------------- evaluate (no kernel)


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
    assert grade.evaluate(nb) == [
        grade.ExerciseResult("1.1", "pass", "✔ f passed: 3 cases"),
        grade.ExerciseResult("1.2", "fail", "ExerciseFailure: g output: expected shape (2,), got (3,)"),
        grade.ExerciseResult("1.3", "not attempted", "Exercise 1.3: write h"),
        grade.ExerciseResult("1.4", "not attempted", "Exercise 1.4: set x"),
        grade.ExerciseResult("1.10", "fail", "SyntaxError: invalid syntax (1, 2)"),
        grade.ExerciseResult("1.11", "pass", "ran without error (no check cell found)"),
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
    results = grade.evaluate(nb, "07_x.ipynb", stopped="DeadKernelError: Kernel died")
    assert results == [
        grade.ExerciseResult("7.1", "fail", "KeyboardInterrupt: the cell timed out and was interrupted"),
        grade.ExerciseResult("7.2", "not attempted", "Exercise 7.2: b"),
        grade.ExerciseResult(
            "7.3", "fail", "not run: the notebook stopped early (DeadKernelError: Kernel died)"
        ),
    ]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bad_inputs_are_reported_clearly(tmp_path, capsys):
    assert grade.main(_args(str(tmp_path / "missing.ipynb"))) == 2
    assert "missing.ipynb: no such file" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hi")
    assert grade.main(_args(str(tmp_path / "notes.txt"))) == 2
    assert "not a Jupyter notebook (expected a .ipynb file)" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert grade.main(_args(str(tmp_path / "broken.ipynb"))) == 2
    assert "broken.ipynb: not a readable Jupyter notebook" in capsys.readouterr().err
    assert grade.main(_args(str(tmp_path / "notes.txt"), "--timeout", "0")) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert grade.main(_args(str(empty))) == 2
    assert "no .ipynb notebooks" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no such file"):
        grade.grade_notebook(tmp_path / "missing.ipynb")


# ------------------------------------------------------------------------------------------ real kernels


@pytest.fixture
def course(tmp_path, monkeypatch) -> dict[str, Path]:
    """The demo solved, blank (generated) and half-done, each in its own folder with its data.txt."""
    monkeypatch.delenv("MINIRIMS_PROFILE", raising=False)  # the grader must default to smoke
    solution = demo.solution()
    blank = mx.generate(solution, demo.NAME)
    mixed = mx.generate(solution, demo.NAME)
    mixed.cells[3].source = mixed.cells[3].source.replace(
        'raise NotImplementedError("Exercise 2.1', "return x + 1  #"
    )
    mixed.cells[7].source = demo.COUNTER.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")
    return {
        name: demo.write(nb, tmp_path / name / demo.NAME)
        for name, nb in (("solved", solution), ("blank", blank), ("mixed", mixed))
    }


@pytest.mark.slow
def test_solved_notebook_passes(course, capsys):
    assert grade.main(_args(str(course["solved"]))) == 0
    out = capsys.readouterr().out
    assert "✔ 2.1  pass           ✔ double passed: 3 cases" in out
    assert "3/3 exercises pass" in out
    assert nbformat.read(course["solved"], as_version=4) == demo.solution()  # the file is not modified


@pytest.mark.slow
def test_blank_notebook_is_not_attempted(course, capsys):
    assert grade.main(_args(str(course["blank"]), "--json")) == 1
    records = json.loads(capsys.readouterr().out)
    assert [(r["exercise"], r["status"]) for r in records] == [
        ("2.1", "not attempted"),
        ("2.2", "not attempted"),
        ("2.3", "not attempted"),
    ]
    assert records[0]["message"] == "Exercise 2.1: return twice x"
    assert records[0]["notebook"] == str(course["blank"])


@pytest.mark.slow
def test_wrong_answer_fails_with_the_checks_message(course):
    assert grade.grade_notebook(course["mixed"], timeout=60) == [
        grade.ExerciseResult("2.1", "fail", "ExerciseFailure: double output: expected 0, got 1 for x=0"),
        grade.ExerciseResult(
            "2.2",
            "not attempted",
            'Exercise 2.2: set `profile` to the value of the "MINIRIMS_PROFILE" environment variable',
        ),
        grade.ExerciseResult("2.3", "pass", "✔ counter passed"),
    ]
