"""A failed check in a real kernel: the notebook shows the ✘ line and the hint, not the checks' traceback.

The cell's error output must still be an error (``ename`` ExerciseFailure, ``evalue`` the whole message), so
that nbval's ``raises-exception`` tag and the grader (``python -m minirims grade``) see it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;]*m")

IMPORTS = "from minirims.course import checks\nimport math, torch"
FILL_ZERO = """\
def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)  # the mistake: 0 is an ordinary score
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights

checks.check_attention(attention)"""
CRASH = """\
def attention(q, k, v, mask=None):
    return q @ v, None  # the sizes do not line up

checks.check_attention(attention)"""
BLANK = """\
def attention(q, k, v, mask=None):
    raise NotImplementedError("Exercise 1.1: compute the attention")

checks.check_attention(attention)"""


def _notebook(*sources: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(IMPORTS)]
    for source in sources:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    errors = [out for out in cell.outputs if out.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return errors[0]


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> nbformat.NotebookNode:
    nb = _notebook(FILL_ZERO, CRASH, BLANK)
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": os.getcwd()}},
    ).execute()
    return nb


def test_failed_check_shows_the_cross_line_and_the_hint_only(executed):
    error = _error(executed.cells[1])
    assert error.ename == "ExerciseFailure"
    assert (
        error.evalue.startswith("attention weights (case 2") and "Hint: you filled the masked" in error.evalue
    )
    lines = [ANSI.sub("", line) for line in error.traceback]
    assert len(lines) == 2, lines
    assert lines[0].startswith("✘ attention weights (case 2") and "Hint" not in lines[0]
    assert lines[1].startswith("  Hint: you filled the masked scores with 0")
    assert "float('-inf')" in lines[1]


def test_learner_error_shows_their_frame_and_no_checks_frame(executed):
    error = _error(executed.cells[2])
    assert error.ename == "ExerciseFailure"
    text = ANSI.sub("", "\n".join(error.traceback))
    assert text.startswith("✘ attention: your function raised RuntimeError on case 1")
    assert "return q @ v, None" in text  # the learner's line, from the cell
    assert "checks/_core.py" not in text and "checks/attention.py" not in text
    assert "RuntimeError:" in text.splitlines()[-1]


def test_blank_exercise_still_raises_not_implemented_from_the_learners_cell(executed):
    error = _error(executed.cells[3])
    assert error.ename == "NotImplementedError"
    assert error.evalue == "Exercise 1.1: compute the attention"
    text = ANSI.sub("", "\n".join(error.traceback))
    assert 'raise NotImplementedError("Exercise 1.1: compute the attention")' in text  # the learner's cell
    assert "minirims/course/checks" not in text  # not the checks' internals
    assert text.splitlines()[-1] == "NotImplementedError: Exercise 1.1: compute the attention"


def test_nbval_sees_the_failure_as_an_error(tmp_path):
    tagged = tmp_path / "tagged.ipynb"
    untagged = tmp_path / "untagged.ipynb"
    nbformat.write(_notebook(FILL_ZERO, tags=("raises-exception",)), tagged)
    nbformat.write(_notebook(FILL_ZERO), untagged)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax"]
        + ["--nbval-current-env", "-o", "addopts=", "--rootdir", str(tmp_path), str(tagged), str(untagged)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert re.search(r"untagged\.ipynb::Cell 1 FAILED|FAILED .*untagged\.ipynb::Cell 1", out), out
    assert "tagged.ipynb::Cell 1" not in out.replace("untagged.ipynb::Cell 1", ""), out
    assert re.search(r"1 failed, 3 passed", out), out
