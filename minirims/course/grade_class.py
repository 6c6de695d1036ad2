"""Grade a class: collect the submissions, grade every notebook with a progress bar, write the table.

``python -m minirims grade SUBMISSIONS/`` (see :mod:`minirims.course.grade` for the rules of grading). In a
folder of submissions each ``*.ipynb`` is one learner (named by the file, run in a temporary folder holding
only that notebook, so that it sees no other learner's work) and each sub-folder is one learner (named by the
folder) with every notebook under it (each run in a temporary copy of its own folder). Notebooks given by path
are graded one by one, as learners named by their path. The table, one row per learner, one column per
exercise (its status; empty when the learner handed in no notebook with that exercise), plus the totals and
the reasons (each exercise that did not pass, with its status and its message on one line, ``" | "`` between
exercises), is written as ``grades.csv`` and ``grades.json`` (which holds every message in full, and every
note). ``--out`` is checked
before any grading (the folder is created and a file written there); in the CSV a cell that starts like a
spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab, CR) is prefixed with ``'``. Every notebook or learner
folder that cannot be read is named on the console as it is met, and counted in one line on stderr at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minirims.course.grade import (
    STATUSES,
    Course,
    ExerciseResult,
    NotebookReport,
    _one_line,
    course_from_notebooks,
    default_course,
    plan,
    read_notebook,
    run_notebook,
)
from minirims.course.grade_kernel import positive_seconds

TABLE_NAMES = ("grades.csv", "grades.json")
_MARKS = {"pass": "✔", "uses reference": "≡", "fail": "✘", "not attempted": "·", "not run": "-"}
REASON_LIMIT = 300  # characters of one exercise's message in the CSV's reasons (the JSON keeps it whole)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as the start of a formula


@dataclass
class Submission:
    """One learner's notebooks; ``alone``: run each in a folder of its own (a notebook loose in the class);
    ``unreadable``: why the learner's folder could not be read ('' if it could)."""

    learner: str
    notebooks: list[Path]
    alone: bool = False
    unreadable: str = ""


@dataclass
class LearnerGrade:
    """A learner's row: exercise id -> result (and the notebook it came from), notes, per-notebook runs."""

    learner: str
    results: dict[str, ExerciseResult] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notebooks: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """How many exercises ended in each status, and how many were graded."""
        counts = {status: 0 for status in STATUSES}
        for result in self.results.values():
            counts[result.status] += 1
        return {**counts, "exercises": len(self.results)}


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in ("__pycache__", ".ipynb_checkpoints")


def collect(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Submission], bool]:
    """The submissions named by ``paths`` and whether one of them was a folder of submissions (a class).

    FileNotFoundError / ValueError, naming the path, for a missing path, a file that is not a readable
    notebook, a folder without submissions, or two learners with the same name.
    """
    if isinstance(paths, (str, os.PathLike)) or not paths:
        raise ValueError(f"paths: expected a non-empty list of paths, got {paths!r}")
    submissions: list[Submission] = []
    is_class = False
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_file():
            read_notebook(path)  # validate before running anything
            submissions.append(Submission(str(path.with_suffix("")), [path]))
            continue
        is_class = True
        found = []
        for entry in sorted(p for p in path.iterdir() if not _hidden(p)):
            if entry.is_file() and entry.suffix == ".ipynb":
                found.append(Submission(entry.stem, [entry], alone=True))
            elif entry.is_dir():
                found.append(_folder(entry))
        if not found:
            raise ValueError(
                f"{path}: no submissions in this folder (expected .ipynb notebooks or learner folders)"
            )
        submissions += found
    names = [s.learner for s in submissions]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(
            f"two submissions are both named {twice[0]!r}: rename one (learners are named by file)"
        )
    return submissions, is_class


def _folder(folder: Path) -> Submission:
    """A learner's folder: every notebook under it (hidden folders left out); a folder or sub-folder that
    cannot be read makes the submission ``unreadable``, with why."""
    notebooks: list[Path] = []
    problems: list[str] = []
    for parent, dirs, names in os.walk(folder, onerror=lambda err: problems.append(f"{err.filename}: {err}")):
        dirs[:] = sorted(d for d in dirs if not _hidden(Path(d)))
        notebooks += [
            Path(parent) / name
            for name in names
            if name.endswith(".ipynb") and not _hidden(Path(name)) and (Path(parent) / name).is_file()
        ]
    why = f"cannot read {problems[0]}" if problems else ""
    return Submission(folder.name, sorted(notebooks), unreadable=why)


def grade_submissions(
    submissions: Sequence[Submission],
    course: Course,
    timeout: float = 600,
    run_all: bool = False,
    show: bool = True,
    progress: bool | None = None,
) -> list[LearnerGrade]:
    """Grade every notebook of every submission: a tqdm bar on stderr (``progress``: True, False, or None for
    "when stderr is a terminal") and, if ``show``, a report per notebook on stdout."""
    from tqdm.auto import tqdm

    jobs = [(index, path) for index, s in enumerate(submissions) for path in s.notebooks]
    grades = [LearnerGrade(s.learner) for s in submissions]

    def say(line: str) -> None:  # on stdout above the bar; on stderr when stdout is kept for --json
        if show:
            bar.write(line)
        else:
            bar.write(line, file=sys.stderr)

    unreadable = []
    for grade, submission in zip(grades, submissions, strict=True):
        if submission.unreadable:
            grade.notes.append(submission.unreadable)
            unreadable.append(f"{submission.learner}: unreadable: {submission.unreadable}")
        elif not submission.notebooks:
            grade.notes.append("no notebooks in this folder")
    bar = tqdm(
        total=len(jobs),
        desc="grading",
        unit="notebook",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )
    profile = os.environ.get("MINIRIMS_PROFILE", "smoke")
    try:
        for line in unreadable:
            say(line)
        for index, path in jobs:
            grade, submission = grades[index], submissions[index]
            bar.set_postfix_str(f"{submission.learner}: {path.name}", refresh=True)
            entry: dict[str, object] = {"path": str(path)}
            try:
                nb = read_notebook(path)
            except (OSError, ValueError) as err:
                entry.update(status="unreadable", note=str(err))
                grade.notes.append(str(err))
                say(f"{submission.learner}: {path}  unreadable: {err}")
            else:
                key, _ = plan(nb, path.name, course)
                if key is None and not run_all:
                    entry.update(status="skipped", note="no exercises (run it with --all)")
                    grade.notes.append(f"{path.name} skipped: no exercises")
                    if show:
                        bar.write(f"{submission.learner}: {path}  skipped: no exercises (run it with --all)")
                else:
                    try:
                        report = run_notebook(
                            path, timeout=timeout, course=course, copy_folder=not submission.alone
                        )
                    except (OSError, ValueError) as err:
                        entry.update(status="error", note=str(err))
                        grade.notes.append(str(err))
                        say(f"{submission.learner}: {path}  not graded: {err}")
                    else:
                        _record(grade, entry, report)
                        if show:
                            _show(bar, submission.learner, report, profile)
            grade.notebooks.append(entry)
            bar.update()
    finally:
        bar.close()
    return grades


def _record(grade: LearnerGrade, entry: dict[str, object], report: NotebookReport) -> None:
    entry.update(
        notebook=report.key,
        status="stopped" if report.stopped else "graded" if report.key else "ran",
        note=report.stopped or ("" if report.key else "no exercises; it ran to the end"),
        seconds=round(report.seconds, 2),
    )
    for result in report.results:
        if result.exercise in grade.results:
            grade.notes.append(
                f"{result.exercise} is in two notebooks; kept the one in {grade.sources[result.exercise]}"
            )
            continue
        grade.results[result.exercise] = result
        grade.sources[result.exercise] = str(report.path)


def _show(bar: Any, learner: str, report: NotebookReport, profile: str) -> None:
    """One notebook's report, a line per exercise, printed above the progress bar."""
    write = bar.write
    write(f"{learner}: {report.path}  (MINIRIMS_PROFILE={profile})")
    if not report.results:
        write(f"  no exercises; {report.stopped or 'it ran to the end'}")
    width = max((len(result.exercise) for result in report.results), default=0)
    for result in report.results:
        mark = _MARKS[result.status]
        line = f"  {mark} {result.exercise:<{width}}  {result.status:<14}  {_one_line(result.message, 200)}"
        write(line.rstrip())
    if report.results:
        count = sum(result.status == "pass" for result in report.results)
        write(f"  {count}/{len(report.results)} exercises pass ({report.seconds:.1f} s)")


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting like a formula is prefixed with ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def reasons(grade: LearnerGrade, exercises: Sequence[str]) -> str:
    """Why each exercise of ``grade`` did not pass, on one line, in the table's order: ``"3.1 fail: <the
    check's message> | 3.2 not attempted: <...>"`` (each message cut at :data:`REASON_LIMIT` characters)."""
    parts = []
    for exercise in exercises:
        result = grade.results.get(exercise)
        if result is not None and result.status != "pass":
            message = _one_line(result.message, REASON_LIMIT)
            parts.append(f"{exercise} {result.status}" + (f": {message}" if message else ""))
    return " | ".join(parts)


def check_out(out: Path) -> None:
    """Make sure the table can be written into ``out`` before any grading: create the folder and try a file
    there. OSError / ValueError naming ``--out`` if it cannot be."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: expected a folder, got {str(out)!r} (a file)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLE_NAMES:
            if (out / name).exists() and not (out / name).is_file():
                raise ValueError(f"--out: {out / name} exists and is not a file")
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OSError(f"--out: cannot write the table into {out} ({err.strerror or err})") from None


def write_table(
    grades: Sequence[LearnerGrade], course: Course, out: Path, settings: dict[str, object]
) -> list[Path]:
    """Write ``grades.csv`` and ``grades.json`` into ``out`` (created if needed); return their paths."""
    seen = {exercise for grade in grades for exercise in grade.results}
    order = [exercise.id for key in sorted(course.notebooks) for exercise in course.notebooks[key]]
    exercises = [e for e in order if e in seen] + sorted(seen - set(order))
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = (out / name for name in TABLE_NAMES)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ("learner", *exercises, *STATUSES, "exercises", "reasons", "notes")
        writer.writerow([_cell(c) for c in header])
        for grade in grades:
            totals = grade.totals()
            row = [
                grade.learner,
                *[grade.results[e].status if e in grade.results else "" for e in exercises],
                *[totals[s] for s in STATUSES],
                totals["exercises"],
                reasons(grade, exercises),
                "; ".join(grade.notes),
            ]
            writer.writerow([_cell(c) for c in row])
    table = {
        "settings": settings,
        "exercises": exercises,
        "learners": [
            {
                "learner": grade.learner,
                "results": {
                    e: {"status": r.status, "message": r.message, "notebook": grade.sources[e]}
                    for e, r in grade.results.items()
                },
                "totals": grade.totals(),
                "notebooks": grade.notebooks,
                "notes": grade.notes,
            }
            for grade in grades
        ],
    }
    json_path.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def main(args: argparse.Namespace) -> int:
    """The ``grade`` command (arguments from :func:`minirims.course.grade.add_arguments`)."""
    try:
        timeout = positive_seconds("--timeout", args.timeout)
        submissions, is_class = collect(list(args.paths))
        course = course_from_notebooks(args.course) if args.course else default_course()
        out = Path(args.out) if args.out else Path.cwd() if is_class else None
        if out is not None:
            check_out(out)
    except (OSError, ValueError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    grades = grade_submissions(
        submissions, course, timeout=float(timeout), run_all=bool(args.all), show=not args.json
    )
    not_graded = [
        f"{entry['path']} ({entry['status']})"
        for grade in grades
        for entry in grade.notebooks
        if entry.get("status") in ("unreadable", "error")
    ] + [f"{s.learner} (unreadable folder)" for s in submissions if s.unreadable]
    ok = not not_graded and all(
        result.status == "pass" for grade in grades for result in grade.results.values()
    )
    if not_graded:
        print(
            f"grade: {len(not_graded)} submission(s) not graded: {'; '.join(not_graded)}",
            file=sys.stderr,
        )
    if args.json:
        records = [
            {
                "learner": g.learner,
                "notebook": g.sources[e],
                "exercise": e,
                "status": r.status,
                "message": r.message,
            }
            for g in grades
            for e, r in g.results.items()
        ]
        print(json.dumps(records, indent=1, ensure_ascii=False))
    if out is not None:
        settings = {
            "timeout": float(timeout),
            "profile": os.environ.get("MINIRIMS_PROFILE", "smoke"),
            "course": str(args.course or "default"),
            "all": bool(args.all),
        }
        try:
            written = write_table(grades, course, out, settings)
        except OSError as err:
            print(f"grade: --out: cannot write the table into {out} ({err})", file=sys.stderr)
            return 2
        print(f"wrote {written[0]} and {written[1]}", file=sys.stderr if args.json else sys.stdout)
    return 0 if ok else 1
