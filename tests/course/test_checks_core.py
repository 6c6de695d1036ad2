"""minirims.course.checks._core: comparing tensors, the pass line, and how a failed check shows in IPython
(the ✘ line and the hint, the learner's frames, no traceback through the checks)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from minirims.course import checks
from minirims.course.checks._core import ExerciseFailure, compare, passed

ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


def test_compare_reports_type_dtype_and_bool_values():
    with pytest.raises(ExerciseFailure, match=r"^f output: expected a torch.Tensor, got list$"):
        compare("f", [1.0], torch.ones(1))
    with pytest.raises(ExerciseFailure, match=r"^f output: expected dtype torch.float32, got torch.float64$"):
        compare("f", torch.ones(2, dtype=torch.float64), torch.ones(2))
    mask = torch.tensor([[True, False, True]])
    with pytest.raises(ExerciseFailure) as info:
        compare("competition", ~mask, mask, what="mask")
    assert str(info.value) == (
        "competition mask: values differ in 3 of 3 entries; first differing index (0, 0): "
        "expected True, got False"
    )


def test_compare_flags_nan():
    with pytest.raises(ExerciseFailure, match="your output contains NaN or inf"):
        compare("f", torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))


def test_passed_prints_one_line(capsys):
    passed("attention")
    passed("attention", "3 cases")
    assert capsys.readouterr().out == "✔ attention passed\n✔ attention passed: 3 cases\n"


# ----------------------------------------------------------------------------------------------------------
# how a failure shows in IPython


def fill_zero(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    return scores.softmax(-1) @ v, scores.softmax(-1)


def test_failure_renders_as_the_cross_line_and_the_hint():
    with pytest.raises(ExerciseFailure) as info:
        checks.check_attention(fill_zero)
    lines = [ANSI.sub("", line) for line in info.value._render_traceback_()]
    message, hint = info.value.message_and_hint()
    assert lines == [f"✘ {message}", f"  Hint: {hint}"]
    assert message.startswith("attention weights (case 2") and message.endswith(".")
    assert hint.startswith("you filled the masked scores with 0")
    assert str(info.value) == f"{message} Hint: {hint}"  # outside IPython: the whole message


def test_failure_without_a_hint_renders_one_line():
    err = ExerciseFailure("attention out (case 1): expected shape (2, 3, 6), got (2, 6, 3)")
    assert err.message_and_hint() == (str(err), "")
    assert [ANSI.sub("", line) for line in err._render_traceback_()] == [f"✘ {err}"]


def test_learner_error_renders_the_learners_frames_only():
    def crashes(q, k, v, mask=None):
        return q @ v  # (.., Lq, d_k) @ (.., Lk, d_v): the sizes do not line up

    with pytest.raises(ExerciseFailure) as info:
        checks.check_attention(crashes)
    text = "\n".join(info.value._render_traceback_())
    assert "✘ attention: your function raised RuntimeError on case 1" in text
    assert "Where your function raised it:" in text
    assert "return q @ v" in text  # the learner's line
    assert "test_checks_core.py" in text
    assert "minirims/course/checks" not in text.replace("\\", "/")  # none of the checks' frames
    assert text.rstrip().splitlines()[-1].startswith("RuntimeError: ")


def test_blank_exercise_renders_the_learners_raise_not_the_checks():
    def attention(q, k, v, mask=None):
        raise NotImplementedError("Exercise 1.1: compute the attention")

    with pytest.raises(NotImplementedError) as info:
        checks.check_attention(attention)
    assert type(info.value) is NotImplementedError  # unchanged: the grader reports "not attempted"
    lines = info.value._render_traceback_()
    text = "\n".join(lines)
    assert 'raise NotImplementedError("Exercise 1.1: compute the attention")' in text
    assert "minirims/course/checks" not in text.replace("\\", "/")
    assert lines[-1] == "NotImplementedError: Exercise 1.1: compute the attention"
