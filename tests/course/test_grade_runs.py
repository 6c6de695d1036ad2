"""The grader on real kernels: trust (own checks, fresh run, temporary folder), deaths, time-outs, a class.

Each test runs one to three tiny torch-free notebooks (``tests/fixtures/grading_demo.py``), a kernel each.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import pytest
from helpers import load_fixture

from minirims.course import grade, grade_class
from minirims.course.grade import ExerciseResult as R

demo = load_fixture("grading_demo")


@pytest.fixture
def course(tmp_path, monkeypatch) -> grade.Course:
    monkeypatch.delenv("MINIRIMS_PROFILE", raising=False)  # the grader must default to smoke
    return demo.install(tmp_path / "trusted")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_only_the_graders_own_checks_count(course, tmp_path):
    path = demo.write(demo.cheat(), tmp_path / "alice" / "02_cheat.ipynb")
    before = _snapshot(path.parent)
    report = grade.run_notebook(path, timeout=30, course=course)
    assert report.results == [
        R("2.1", "pass", "✔ double passed: 3 cases"),
        R(
            "2.2", "fail", "ExerciseFailure: triple output: expected 9, got 3 for x=3"
        ),  # print("✔") check cell
        R("2.3", "fail", "ExerciseFailure: square output: expected 9, got 3 for x=3"),  # checks rebound
        R("2.4", "fail", "ExerciseFailure: negate output: expected -3, got 3 for x=3"),  # check cell deleted
        R("2.5", "not attempted", "Exercise 2.5: return half of x"),
        R("2.6", "not attempted", "`cube` is still blank"),
        R("2.7", "fail", "no cell defines `absolute` (the exercise cell is missing)"),
        R(
            "2.8", "fail", "ExerciseFailure: increment output: expected 1, got 0 for x=0"
        ),  # before the reference
        R("2.9", "pass", "✔ profile passed"),  # MINIRIMS_PROFILE=smoke, in a copy of the folder (data.txt)
        R("2.10", "fail", "`ten` is not defined after cell 18 ('def wrong_name(x):')"),
        R("2.11", "not attempted", "the exercise cell is blank: define `eleven`"),
    ]
    assert report.stopped is None
    # the last cell deleted data.txt and wrote new.txt, in the copy: the learner's folder is as it was
    assert _snapshot(path.parent) == before


@pytest.mark.slow
def test_a_dead_kernel_leaves_the_rest_not_run_whatever_the_saved_outputs(course, tmp_path):
    path = demo.write(demo.dead(), tmp_path / "04_dead.ipynb")
    report = grade.run_notebook(path, timeout=30, course=course)
    why = "the kernel died while running cell 5 ('import os')"
    assert report.stopped == why
    assert report.results == [
        R("4.1", "pass", "✔ double passed: 3 cases"),
        R("4.2", "not run", f"not run: {why}"),
    ]


@pytest.mark.slow
def test_a_time_out_interrupts_then_kills(course, tmp_path):
    path = demo.write(demo.slow(), tmp_path / "03_slow.ipynb")
    start = time.monotonic()
    report = grade.run_notebook(path, timeout=1.5, course=course, grace=1.0)
    seconds = time.monotonic() - start
    killed = (
        "not run: cell 8 ('signal.signal(signal.SIGINT, signal.SIG_IGN)') ignored the interrupt after timing "
        "out (1.5 s), so its kernel was killed"
    )
    assert report.results == [
        R("3.1", "not run", "not run: cell 3 ('def double(x):') timed out (1.5 s) and was interrupted"),
        R("3.2", "pass", "✔ triple passed: 3 cases"),  # the kernel lived on after the interrupt
        R("3.3", "not run", killed),
        R("3.4", "not run", killed),
    ]
    # two time-outs (1.5 s each) and one grace (1 s) past the start: never the 60 s sleep, never a hang
    assert seconds < 30, seconds


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.slow
def test_grading_a_class_writes_the_table(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grade_class, "default_course", lambda: course)
    submissions = tmp_path / "class"
    # alice: one notebook loose in the class folder, run alone (it would fail if it could see bob's folder)
    demo.write(
        demo.learner("return 2 * x", "return 0 if os.path.exists('bob') else 3 * x"),
        submissions / "alice.ipynb",
        data=False,
    )
    bob = submissions / "bob"
    demo.write(
        demo.learner('raise NotImplementedError("Exercise 5.1: double x")', "return x"), bob / "05.ipynb"
    )
    (bob / "demo_checks.py").write_text(demo.FAKE_CHECKS)  # his own checks, which pass anything
    demo.write(demo.tour(), bob / "00_tour.ipynb")
    (submissions / "carol").mkdir()
    out = tmp_path / "table"
    before = _snapshot(submissions)
    assert grade.main(_args(str(submissions), "--timeout", "20.5", "--out", str(out), "--all")) == 1
    printed = capsys.readouterr().out
    assert "✔ 5.2  pass" in printed and "2/2 exercises pass" in printed and "0/2 exercises pass" in printed
    with (out / "grades.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["learner", "5.1", "5.2", "pass", "uses reference", "fail", "not attempted", "not run", "exercises"]
        + ["reasons", "notes"],
        ["alice", "pass", "pass", "2", "0", "0", "0", "0", "2", "", ""],
        ["bob", "not attempted", "fail", "0", "0", "1", "1", "0", "2"]
        + [
            "5.1 not attempted: Exercise 5.1: double x | "
            "5.2 fail: ExerciseFailure: triple output: expected 9, got 3 for x=3",
            "",
        ],
        ["carol", "", "", "0", "0", "0", "0", "0", "0", "", "no notebooks in this folder"],
    ]
    table = json.loads((out / "grades.json").read_text())
    assert table["exercises"] == ["5.1", "5.2"]
    assert table["settings"]["timeout"] == 20.5 and table["settings"]["all"] is True
    alice, bob_row, carol = table["learners"]
    assert bob_row["results"]["5.2"] == {
        "status": "fail",
        "message": "ExerciseFailure: triple output: expected 9, got 3 for x=3",
        "notebook": str(bob / "05.ipynb"),
    }
    assert bob_row["totals"] == {
        "pass": 0,
        "uses reference": 0,
        "fail": 1,
        "not attempted": 1,
        "not run": 0,
        "exercises": 2,
    }
    tour = next(entry for entry in bob_row["notebooks"] if entry["path"].endswith("00_tour.ipynb"))
    assert tour["status"] == "ran" and tour["note"] == "no exercises; it ran to the end"
    assert carol["notebooks"] == [] and alice["totals"]["pass"] == 2
    assert _snapshot(submissions) == before


@pytest.mark.slow
def test_an_honest_learner_who_shadows_builtins_and_names_is_graded_right(course, tmp_path):
    path = demo.write(demo.honest(), tmp_path / "06_honest.ipynb")
    report = grade.run_notebook(path, timeout=30, course=course)
    assert report.results == [
        R("6.1", "pass", "✔ double passed: 3 cases"),
        R("6.2", "pass", "✔ triple passed: 3 cases"),  # printed 6 MB while checked
        R("6.3", "fail", "ExerciseFailure: square output: expected 9, got 6 for x=3"),
    ]


@pytest.mark.slow
def test_answers_taken_from_the_package_are_reported_as_such(course, tmp_path):
    path = demo.write(demo.reference(), tmp_path / "07_reference.ipynb")
    report = grade.run_notebook(path, timeout=30, course=course)
    why = "uses the reference implementation: `{}` is {}, from the package, not your own code"
    assert report.results == [
        R("7.1", "uses reference", why.format("double", "demo_checks.reference_double")),  # imported
        R("7.2", "uses reference", why.format("triple", "demo_checks.reference_triple")),  # partial
        R("7.3", "uses reference", why.format("square", "demo_checks.reference_square")),  # its __code__
        R("7.4", "uses reference", why.format("negate", "demo_checks.reference_negate")),  # functools.wraps
        R("7.5", "uses reference", why.format("half", "demo_checks.Halver (an instance)")),
        R("7.6", "pass", "✔ cube passed: 3 cases"),
        R("7.7", "uses reference", why.format("increment", "demo_checks.Counter.increment")),  # bound method
    ]


@pytest.mark.slow
def test_every_process_the_kernel_started_ends_with_grading(course, tmp_path):
    psutil = pytest.importorskip("psutil")
    pids = tmp_path / "pids"
    pids.mkdir()
    path = demo.write(demo.processes(pids), tmp_path / "learner" / "08_processes.ipynb")
    report = grade.run_notebook(path, timeout=60, course=course)
    assert report.results == [R("8.1", "pass", "✔ double passed: 3 cases")]
    started = {p.name: int(p.read_text()) for p in pids.iterdir()}
    assert sorted(started) == ["bare", "child", "orphan", "session"]

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5
    while any(running(pid) for pid in started.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {name: running(pid) for name, pid in started.items()} == dict.fromkeys(started, False)


@pytest.mark.slow
def test_a_forged_report_or_a_patched_print_changes_nothing(course, tmp_path):
    path = demo.write(demo.forgers(), tmp_path / "09_forgers.ipynb")
    report = grade.run_notebook(path, timeout=30, course=course)
    forged = (
        "the grader's report cannot be trusted: lines that look like it were printed (something in the "
        "notebook forged one)"
    )
    assert report.results == [
        R("9.1", "pass", "✔ double passed: 3 cases"),
        R("9.2", "fail", forged),
        R("9.3", "fail", "ExerciseFailure: square output: expected 9, got 3 for x=3"),
    ]


@pytest.mark.slow
def test_the_grader_keeps_a_bounded_part_of_each_cells_output(tmp_path):
    from minirims.course.grade_kernel import STREAM_LIMIT, TEXT_LIMIT, Kernel

    kernel = Kernel(tmp_path)
    kernel.start()
    try:
        run = kernel.run("for _ in range(20):\n    print('x' * 1_000_000)", 30)
        assert run.outcome == "ok" and run.truncated and run.stdout == "x" * STREAM_LIMIT
        run = kernel.run("raise ValueError('y' * 10_000_000)", 30)
        assert run.ename == "ValueError" and len(run.evalue) == TEXT_LIMIT and run.evalue.endswith("…")
        cell = (
            "print('z' * 3_000_000)\nprint('KEEP', end='')\nprint(' this')\nprint('no KEEP')\nprint('KEEP 2')"
        )
        run = kernel.run(cell, 30, keep="KEEP")
        assert run.stdout == "KEEP this\nKEEP 2\n" and not run.truncated
        assert kernel.run("print('a' * 100)", 30, limit=0).stdout == ""
    finally:
        kernel.close()


ATTENTION = """def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights"""


@pytest.mark.slow
def test_the_course_checks_grade_in_a_fresh_copy_of_the_package(tmp_path):
    """On the real course (notebook 01): shadowed builtins change nothing, an answer imported from the package
    is named as such, and patching the package's reference in the learner's kernel does not fool the check."""
    nb = demo._nb(
        [
            "import torch\nfrom minirims.course import checks\nimport minirims.attention as package",
            "list = [1, 2, 3]\nsorted = print = len = isinstance = getattr = repr = None",
            (ATTENTION, demo.ex("1.1")),
            ("checks.check_attention(attention)", demo.chk("1.1")),
            ("from minirims.attention import split_heads", demo.ex("1.2")),
            ("checks.check_split_heads(split_heads)", demo.chk("1.2")),
            ("package.merge_heads = lambda x: x\n\n\ndef merge_heads(x):\n    return x", demo.ex("1.3")),
            ("checks.check_merge_heads(merge_heads)", demo.chk("1.3")),
        ]
    )
    path = demo.write(nb, tmp_path / "01_attention.ipynb")
    report = grade.run_notebook(path, timeout=120)
    assert [(r.exercise, r.status) for r in report.results] == [
        ("1.1", "pass"),
        ("1.2", "uses reference"),
        ("1.3", "fail"),
        ("1.4", "fail"),
    ]
    assert report.results[0].message.startswith("✔ attention passed: 4 cases")
    assert report.results[1].message == (
        "uses the reference implementation: `split_heads` is minirims.attention.split_heads, from the "
        "package, not your own code"
    )
    assert report.results[2].message.startswith("ExerciseFailure: merge_heads output (B, L, H*d) (case 1")
    assert (
        report.results[3].message == "no cell defines `multi_head_attention` (the exercise cell is missing)"
    )
