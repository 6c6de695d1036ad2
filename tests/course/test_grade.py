"""The grader without kernels: the course it trusts, where it grades each exercise, its command line.

The grader on real kernels (cheating learners, dead kernels, time-outs, a class) is in test_grade_runs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from helpers import load_fixture

from minirims.course import grade

gdemo = load_fixture("grading_demo")


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
        grade.run_notebook(tmp_path / "missing.ipynb")


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


def test_csv_cells_that_look_like_formulas_are_quoted(tmp_path):
    import csv

    from minirims.course import grade_class
    from minirims.course.grade import ExerciseResult

    course = gdemo.install(tmp_path / "t")
    names = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tTAB", "\rCR", "plain", "a=b"]
    grades = [grade_class.LearnerGrade(name) for name in names]
    for grade_row in grades:
        grade_row.results["5.1"] = ExerciseResult("5.1", "pass")
        grade_row.sources["5.1"] = "x.ipynb"
    grades[0].notes.append("=cmd|' /C calc'!A0")
    grade_class.write_table(grades, course, tmp_path / "out", {})
    with (tmp_path / "out" / "grades.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == ["'" + n for n in names[:6]] + ["plain", "a=b"]
    assert rows[1][-1] == "'=cmd|' /C calc'!A0"
    table = json.loads((tmp_path / "out" / "grades.json").read_text(encoding="utf-8"))
    assert [row["learner"] for row in table["learners"]] == names  # the JSON keeps the names as they are


def test_csv_gives_the_reason_of_every_exercise_that_did_not_pass(tmp_path):
    import csv

    from minirims.course import grade_class
    from minirims.course.grade import ExerciseResult

    course = gdemo.install(tmp_path / "t")
    ann, ben = grade_class.LearnerGrade("ann"), grade_class.LearnerGrade("ben")
    ann.results["5.1"] = ExerciseResult("5.1", "pass", "✔ double passed: 3 cases")
    ann.results["5.2"] = ExerciseResult(
        "5.2", "fail", "ExerciseFailure: triple output: expected 9,\n got 3. Hint: multiply by 3"
    )
    ben.results["5.2"] = ExerciseResult("5.2", "not attempted", "Exercise 5.2: triple x")
    ben.results["5.1"] = ExerciseResult("5.1", "not run", "")
    ben.results["5.3"] = ExerciseResult("5.3", "uses reference", "=1+2 " + "x" * 400)
    for grade_row in (ann, ben):
        grade_row.sources.update(dict.fromkeys(grade_row.results, "x.ipynb"))
    grade_class.write_table([ann, ben], course, tmp_path / "out", {})
    with (tmp_path / "out" / "grades.csv").open(newline="", encoding="utf-8") as handle:
        header, ann_row, ben_row = list(csv.reader(handle))
    assert header[-2:] == ["reasons", "notes"]
    assert ann_row[-2] == "5.2 fail: ExerciseFailure: triple output: expected 9, got 3. Hint: multiply by 3"
    long = "=1+2 " + "x" * (grade_class.REASON_LIMIT - 6) + "…"
    assert ben_row[-2] == (
        f"5.1 not run | 5.2 not attempted: Exercise 5.2: triple x | 5.3 uses reference: {long}"
    )
    # a reason that starts like a formula is quoted like any other cell
    ann.results = {"-1": ExerciseResult("-1", "fail", "@SUM(A1)")}
    ann.sources = {"-1": "x.ipynb"}
    grade_class.write_table([ann], course, tmp_path / "out", {})
    with (tmp_path / "out" / "grades.csv").open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1][-2] == "'-1 fail: @SUM(A1)"


def test_every_unreadable_submission_is_named_on_the_console(tmp_path, monkeypatch, capsys):
    import os

    from minirims.course import grade_class

    course = gdemo.install(tmp_path / "t")
    monkeypatch.setattr(grade_class, "default_course", lambda: course)
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "ann.ipynb").write_text("{not json")
    (folder / "ben").mkdir()
    (folder / "ben" / "05_week.ipynb").write_text('{"cells": 3}')
    (folder / "cat").mkdir()
    (folder / "cat" / "notes.ipynb").mkdir()  # a folder named like a notebook: not a submission
    locked = folder / "dan"
    (locked / "week1").mkdir(parents=True)
    gdemo.write(gdemo.tour(), locked / "week1" / "00_tour.ipynb")
    scandir = os.scandir

    def refuse(path="."):  # as a folder without read permission does (a test run as root reads them all)
        if os.fspath(path) == str(locked / "week1"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    assert grade.main(_args(str(folder), "--out", str(tmp_path / "out"), "--json")) == 1
    monkeypatch.undo()
    printed = capsys.readouterr()
    assert json.loads(printed.out) == []
    err = printed.err
    assert (
        f"ann: {folder / 'ann.ipynb'}  unreadable: {folder / 'ann.ipynb'}: not a readable Jupyter notebook"
        in err
    )
    assert f"ben: {folder / 'ben' / '05_week.ipynb'}  unreadable:" in err
    assert f"dan: unreadable: cannot read {locked / 'week1'}: [Errno 13] Permission denied" in err
    assert "grade: 3 submission(s) not graded:" in err and "dan (unreadable folder)" in err
    table = json.loads((tmp_path / "out" / "grades.json").read_text())
    notes = {row["learner"]: row["notes"] for row in table["learners"]}
    assert notes["cat"] == ["no notebooks in this folder"]


def test_an_impossible_out_fails_in_one_line_before_any_grading(tmp_path, monkeypatch, capsys):
    import os

    from minirims.course import grade_class

    def never(*args, **kwargs):
        raise AssertionError("graded before --out was checked")

    monkeypatch.setattr(grade_class, "grade_submissions", never)
    path = gdemo.write(gdemo.tour(), tmp_path / "class" / "ann.ipynb")
    (tmp_path / "file.txt").write_text("x")
    cases = [
        (tmp_path / "file.txt" / "sub", "--out: cannot write the table into"),  # under a file
        (tmp_path / "file.txt", "--out: expected a folder, got"),
    ]
    (tmp_path / "taken" / "grades.csv").mkdir(parents=True)
    cases.append((tmp_path / "taken", "grades.csv exists and is not a file"))
    if os.geteuid() != 0:
        (tmp_path / "readonly").mkdir(mode=0o555)
        cases.append((tmp_path / "readonly", "--out: cannot write the table into"))
        cases.append((tmp_path / "readonly" / "sub", "--out: cannot write the table into"))
    for out, message in cases:
        assert grade.main(_args(str(path.parent), "--out", str(out))) == 2, out
        err = _one_line_error(capsys)
        assert err.startswith("grade: ") and message in err, err


def test_the_kept_stdout_is_bounded_and_finds_lines_split_across_messages():
    from minirims.course.grade_kernel import _Stdout

    kept = _Stdout(10, None)
    for chunk in ("abc", "defghij", "klmnop"):
        kept.write(chunk)
    assert kept.text() == "abcdefghij" and kept.truncated
    lines = _Stdout(100, "MARK ")
    for chunk in ("noise MARK no\nMA", "RK one\n", "x" * 10_000, "\nMARK two"):
        lines.write(chunk)
    assert lines.text() == "MARK one\nMARK two" and not lines.truncated
    long = _Stdout(8, "M")
    long.write("M" + "y" * 1_000 + "\nM ok\n")
    assert long.truncated and len(long.text()) <= 8
