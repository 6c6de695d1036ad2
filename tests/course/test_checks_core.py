"""minirims.course.checks._core: comparing values, the pass line, the generic runner, and how a failed check
shows in IPython (the ✘ line and the hint, the learner's frames, no traceback through the checks)."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np
import pytest
import torch

from minirims.course import checks
from minirims.course.checks._core import Case, ExerciseFailure, compare, passed, run_check

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
