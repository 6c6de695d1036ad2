"""minirims.course.checks._core (check helpers), the CI output report, and the grader without kernels.

The grader on real kernels (cheating learners, dead kernels, time-outs, a class) is in test_grade_runs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import nbformat
import numpy as np
import pytest
import torch
from helpers import load_fixture
from nbformat.v4 import new_code_cell, new_output

from minirims.course import grade
from minirims.course.checks._core import Case, ExerciseFailure, compare, passed, run_check

demo = load_fixture("demo_course")
gdemo = load_fixture("grading_demo")


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


# ------------------------------------------------------------------------------- the course the grader trusts


REPO = Path(__file__).resolve().parents[2]


def test_the_course_map_comes_from_the_course_notebooks():
    from minirims.course import checks

    course = grade.default_course()
    assert course.checks_module == "minirims.course.checks" and course.root == REPO
    assert course.notebooks["01"] == (
        grade.Exercise("1.1", "attention", "check_attention"),
        grade.Exercise("1.2", "split_heads", "check_split_heads"),
        grade.Exercise("1.3", "merge_heads", "check_merge_heads"),
        grade.Exercise("1.4", "multi_head_attention", "check_multi_head_attention"),
    )
    assert "00" not in course.notebooks  # the tour has no exercises
    for key, exercises in course.notebooks.items():
        for exercise in exercises:
            assert exercise.id.startswith(f"{int(key)}."), exercise
            assert exercise.check in checks.BY_NOTEBOOK[key], exercise
            assert callable(getattr(checks, exercise.check)), exercise


def test_course_from_notebooks_refuses_what_is_not_a_course(tmp_path):
    with pytest.raises(ValueError, match=r"^course: expected the course's notebooks folder, got '.*nowhere'"):
        grade.course_from_notebooks(tmp_path / "nowhere")
    gdemo.write(gdemo.tour(), tmp_path / "00_tour.ipynb")
    with pytest.raises(ValueError, match=r"^course: no exercises found in .*NN_\*\.ipynb"):
        grade.course_from_notebooks(tmp_path)
    with pytest.raises(ValueError, match=r"^root: expected the folder that holds m, got"):
        grade.course_from_notebooks(tmp_path, "m", tmp_path / "none")
    nb = gdemo.learner("return 2 * x", "return 3 * x")
    gdemo.write(nb, tmp_path / "05_demo.ipynb")
    course = grade.course_from_notebooks(tmp_path, "demo_checks", tmp_path)
    assert course.notebooks == {
        "05": (
            grade.Exercise("5.1", "double", "check_double"),
            grade.Exercise("5.2", "triple", "check_triple"),
        )
    }


def test_plan_grades_each_exercise_where_its_check_is_before_the_reference_is_imported():
    course = grade.default_course()
    nb = grade.read_notebook(REPO / "notebooks" / "01_attention.ipynb")
    key, slots = grade.plan(nb, "01_attention.ipynb", course)
    assert key == "01"
    where = {slot.exercise.id: (slot.cell, slot.after) for slot in slots}
    # the cell after 1.3's check re-imports merge_heads from the package: graded after it, anyone would pass
    cell, after = where["1.3"]
    assert nb.cells[cell].metadata["minirims"] == {"exercise": "1.3"}
    assert nb.cells[after].metadata["minirims"] == {"check": "1.3"}
    reimport = next(i for i, c in enumerate(nb.cells) if "import merge_heads" in c.source)
    assert after < reimport
    # a solution notebook (no metadata), renamed: found by what it defines and the exercises it mentions
    solved = grade.read_notebook(REPO / "solutions" / "01_attention.ipynb")
    assert grade.plan(solved, "mine.ipynb", course) == (None, [])  # nothing says which notebook it is
    assert [(s.cell, s.after) for s in grade.plan(solved, "01_x.ipynb", course)[1]] == list(where.values())
    blank = grade.read_notebook(REPO / "notebooks" / "01_attention.ipynb")
    assert grade.plan(blank, "renamed.ipynb", course)[0] == "01"  # by its exercise metadata


def test_plan_finds_cheats_and_missing_cells(tmp_path):
    course = gdemo.install(tmp_path)
    key, slots = grade.plan(gdemo.cheat(), "02_cheat.ipynb", course)
    where = {slot.exercise.id: (slot.cell, slot.after) for slot in slots}
    assert key == "02"
    assert where["2.4"] == (8, 8)  # its check cell deleted: graded right after the exercise
    assert where["2.7"] == (None, None)  # no cell defines `absolute`
    assert where["2.8"] == (13, 14)  # before cell 15 imports the reference under the same name


# -------------------------------------------------------------------------- command line (no kernel runs)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    return parser.parse_args(list(argv))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_errors_end_in_one_line_with_status_2(tmp_path, capsys):
    assert grade.main(_args(str(tmp_path / "missing.ipynb"))) == 2
    assert _one_line_error(capsys) == f"grade: {tmp_path / 'missing.ipynb'}: no such file or folder\n"
    (tmp_path / "notes.txt").write_text("hi")
    assert grade.main(_args(str(tmp_path / "notes.txt"))) == 2
    assert "not a Jupyter notebook (expected a .ipynb file)" in _one_line_error(capsys)
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert grade.main(_args(str(tmp_path / "broken.ipynb"))) == 2
    assert "broken.ipynb: not a readable Jupyter notebook" in _one_line_error(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".ipynb_checkpoints").mkdir()
    assert grade.main(_args(str(empty))) == 2
    assert "empty: no submissions in this folder" in _one_line_error(capsys)
    twice = tmp_path / "twice"
    gdemo.write(gdemo.tour(), twice / "ann.ipynb")
    (twice / "ann").mkdir()
    assert grade.main(_args(str(twice))) == 2
    assert "two submissions are both named 'ann'" in _one_line_error(capsys)
    assert grade.main(_args(str(twice / "ann.ipynb"), "--out", str(tmp_path / "notes.txt"))) == 2
    assert "--out: expected a folder, got" in _one_line_error(capsys)
    assert grade.main(_args(str(twice / "ann.ipynb"), "--course", str(tmp_path / "nowhere"))) == 2
    assert "course: expected the course's notebooks folder" in _one_line_error(capsys)
    with pytest.raises(FileNotFoundError, match="no such file"):
        grade.grade_notebook(tmp_path / "missing.ipynb")


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "abc", ""])
def test_timeout_takes_positive_float_seconds_or_refuses_in_one_line(bad, capsys):
    from minirims.__main__ import main

    assert _args("x.ipynb", "--timeout", "2.5").timeout == 2.5
    with pytest.raises(SystemExit) as info:
        main(["grade", "x.ipynb", "--timeout", bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"argument --timeout: expected a {'positive, finite ' if bad not in ('abc', '') else ''}number" in err
    )
    assert "Traceback" not in err and "TraitError" not in err
    with pytest.raises(ValueError, match=r"^timeout: expected a positive, finite number of seconds, got 0$"):
        grade.run_notebook("x.ipynb", timeout=0)


def test_api_arguments_are_validated(tmp_path):
    from minirims.course.grade_kernel import Kernel

    with pytest.raises(
        ValueError, match=r"^timeout: expected a positive, finite number of seconds, got True"
    ):
        grade.run_notebook("x.ipynb", timeout=True)
    with pytest.raises(ValueError, match=r"^course: expected a Course, got dict$"):
        grade.run_notebook("x.ipynb", timeout=1, course={})
    with pytest.raises(ValueError, match=r"^cwd: expected an existing folder, got '.*nowhere'$"):
        Kernel(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"^grace: expected a positive, finite number of seconds, got -1$"):
        Kernel(tmp_path, grace=-1)
    from minirims.course import grade_class

    with pytest.raises(ValueError, match=r"^paths: expected a non-empty list of paths, got \[\]$"):
        grade_class.collect([])


def test_the_docs_say_grading_runs_the_learners_code(capsys):
    from minirims.__main__ import main

    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "RUNS THE LEARNER'S CODE with your permissions: it is not a sandbox" in help_text
    assert "It is not a sandbox" in grade.__doc__
    readme = (REPO / "README.md").read_text()
    assert "not a sandbox" in readme[readme.index("## For teachers") :]


def test_a_class_folder_names_learners_and_skips_notebooks_without_exercises(tmp_path, capsys):
    from minirims.course import grade_class

    folder = tmp_path / "class"
    gdemo.write(gdemo.tour(), folder / "zoe.ipynb", data=False)
    gdemo.write(gdemo.tour(), folder / "yan" / "week1" / "00_tour.ipynb")
    gdemo.write(gdemo.tour(), folder / "yan" / ".ipynb_checkpoints" / "00_tour-checkpoint.ipynb")
    (folder / ".hidden").mkdir()
    submissions, is_class = grade_class.collect([folder])
    assert is_class
    assert [(s.learner, [p.relative_to(folder) for p in s.notebooks], s.alone) for s in submissions] == [
        ("yan", [Path("yan/week1/00_tour.ipynb")], False),
        ("zoe", [Path("zoe.ipynb")], True),
    ]
    grades = grade_class.grade_submissions(submissions, gdemo.install(tmp_path / "t"), progress=True)
    printed = capsys.readouterr()
    assert printed.err.rstrip().split("\r")[-1].startswith("grading: 100%")  # the tqdm bar
    assert f"zoe: {folder / 'zoe.ipynb'}  skipped: no exercises (run it with --all)" in printed.out
    assert [(g.learner, g.notebooks[0]["status"], g.notes, g.results) for g in grades] == [
        ("yan", "skipped", ["00_tour.ipynb skipped: no exercises"], {}),
        ("zoe", "skipped", ["zoe.ipynb skipped: no exercises"], {}),
    ]
    assert grade_class.collect([folder / "zoe.ipynb"])[0][0].learner == str(folder / "zoe")


def test_a_folder_too_big_to_copy_is_refused_before_any_kernel_starts(tmp_path, monkeypatch, capsys):
    from minirims.course import grade_class

    course = gdemo.install(tmp_path / "t")
    path = gdemo.write(gdemo.learner("return 2 * x", "return 3 * x"), tmp_path / "home" / "05_big.ipynb")
    (path.parent / "photo.jpg").write_bytes(b"x" * 100)
    monkeypatch.setattr(grade, "COPY_LIMIT", (50, 100))
    with pytest.raises(
        ValueError, match=r"home: too big to copy for grading \(more than 0 MB or 100 files\)"
    ):
        grade.run_notebook(path, timeout=1, course=course)
    monkeypatch.setattr(grade_class, "default_course", lambda: course)
    assert grade.main(_args(str(path), "--json")) == 1
    assert json.loads(capsys.readouterr().out) == []
