"""Mistakes the checks used to miss or misdiagnose (issue 13), and how a failed check shows in a notebook.

Each wrong answer below is a mistake a learner made while working through the course. Before, the check
either gave no hint (a generic "values differ") or named another mistake; each test asserts the diagnosis
that names it and, where there was one, that the old wrong diagnosis is gone.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from minirims.attention import scaled_dot_product_attention
from minirims.cell import RIMState
from minirims.course import checks
from minirims.course.checks._core import ExerciseFailure


def input_attention(x, h, key, value, query):  # the answer to exercise 3.1
    slots = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    k, v = key(slots), value(slots)
    attn = torch.softmax(query(h) @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
    return attn, attn @ v


def rim_step(cell, x, state):  # the answer to exercise 5.1
    h, c = state
    comp = cell.input_attention(x, h)
    h_tilde, c_tilde = cell.rnn(comp.read, (h, c))
    h_comm, _ = cell.communication(h_tilde, comp.mask)
    active = comp.mask.unsqueeze(-1)
    return RIMState(torch.where(active, h_comm, h), torch.where(active, c_tilde, c)), comp.mask


def failure(check, fn) -> str:
    with pytest.raises(ExerciseFailure) as info:
        check(fn)
    return str(info.value)


def assert_has(message: str, *patterns: str) -> None:
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"


# ----------------------------------------------------------------------------------------------------------
# 1.1: attention


def test_masked_scores_filled_with_zero_instead_of_minus_inf():
    def fill_zero(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, 0.0)
        weights = scores.softmax(-1)
        return weights @ v, weights

    message = failure(checks.check_attention, fill_zero)
    assert_has(message, r"^attention weights \(case 2", r"Hint: you filled the masked scores with 0", r"-inf")


def test_masked_weights_that_are_not_zero_are_named_when_no_known_mistake_matches():
    def renormalised_late(
        q, k, v, mask=None
    ):  # softmax first, then zero the masked weights: rows no longer sum to 1
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
        if mask is not None:
            weights = weights * mask + 0.05 * ~mask
        return weights @ v, weights

    message = failure(checks.check_attention, renormalised_late)
    assert_has(message, r"case 2", r"where mask is False the weight must be exactly 0, but yours reach 0\.05")


def test_float64_output_is_named_a_dtype_mismatch_not_a_wrong_read():
    def double_read(q, k, v, mask=None):
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out.double(), weights

    message = failure(checks.check_attention, double_read)
    assert_has(
        message,
        r"^attention out \(case 1.*\): expected dtype torch\.float32, got torch\.float64",
        r"Hint: the values may be right, but something in your computation is double precision",
    )
    assert "weights @ v" not in message  # the old, wrong diagnosis


def test_a_wrong_read_still_gets_the_read_hint():
    def scaled_read(q, k, v, mask=None):
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out * 1.5, weights

    assert_has(failure(checks.check_attention, scaled_read), r"values differ", r"the read is weights @ v")


# ----------------------------------------------------------------------------------------------------------
# 3.1: input attention


def test_null_slot_of_ones_instead_of_zeros():
    def null_ones(x, h, key, value, query):
        slots = torch.cat([torch.ones_like(x[:, :1]), x], dim=1)
        k, v = key(slots), value(slots)
        attn = torch.softmax(query(h) @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
        return attn, attn @ v

    message = failure(checks.check_input_attention, null_ones)
    assert_has(
        message,
        r"^input attention attn \(case 1",
        r"values differ",
        r"Hint: the null slot is a vector of zeros",
    )


def test_returned_read_and_attn_swapped():
    def swapped(x, h, key, value, query):
        attn, read = input_attention(x, h, key, value, query)
        return read, attn

    message = failure(checks.check_input_attention, swapped)
    assert_has(
        message,
        r"^input attention \(case 1: B=2, m=1 input slot, n=4 modules\): you returned \(read, attn\)",
        r"read \(2, 4, 7\).*attn \(2, 4, 2\)",
        r"return \(attn, read\)",
    )


# ----------------------------------------------------------------------------------------------------------
# 3.2: top-k mask


def test_slot_index_off_by_one_is_not_reported_as_the_wrong_sign():
    def slot_one_as_null(attn, k):  # 1-based: "the first slot" taken as attn[..., 1]
        winners = attn[..., 1].topk(k, dim=-1, largest=False).indices
        return torch.zeros(attn.shape[:2], dtype=torch.bool).scatter(-1, winners, True)

    message = failure(checks.check_topk_mask, slot_one_as_null)
    # case 1 has one input slot: there, least attention on slot 1 IS most attention on the null slot
    assert_has(
        message,
        r"\(case 1: B=4, n=6 modules, m=1, k=1\)",
        r"Hint: you ranked the modules by attn\[\.\.\., 1\]",
    )
    assert_has(message, r"the null slot is slot 0")
    assert "MOST" not in message  # the old, wrong diagnosis


def test_the_wrong_sign_is_still_named_when_it_is_the_mistake():
    def most_null(attn, k):
        winners = attn[..., 0].topk(k, dim=-1).indices
        return torch.zeros(attn.shape[:2], dtype=torch.bool).scatter(-1, winners, True)

    assert_has(failure(checks.check_topk_mask, most_null), r"attend MOST to the null slot")


def test_topk_diagnosis_survives_a_function_that_fails_on_other_cases():
    def most_null_for_one_slot_only(attn, k):
        if attn.shape[-1] > 2:
            raise RuntimeError("only one input slot supported")
        winners = attn[..., 0].topk(k, dim=-1).indices
        return torch.zeros(attn.shape[:2], dtype=torch.bool).scatter(-1, winners, True)

    # the other cases give no evidence (they raise), so the diagnosis rests on the cases with one input slot,
    # where both rules agree: both are named
    assert_has(
        failure(checks.check_topk_mask, most_null_for_one_slot_only),
        r"case 1",
        r"Hint: your masks fit two mistakes: either you ranked the modules by attn\[\.\.\., 1\]",
        r"; or you picked the modules that attend MOST to the null slot",
    )


# ----------------------------------------------------------------------------------------------------------
# 5.1: the RIM step


def test_communication_before_the_dynamics():
    def comm_first(cell, x, state):
        h, c = state
        comp = cell.input_attention(x, h)
        h_comm, _ = cell.communication(h, comp.mask)
        h_tilde, c_tilde = cell.rnn(comp.read, (h_comm, c))
        active = comp.mask.unsqueeze(-1)
        return RIMState(torch.where(active, h_tilde, h), torch.where(active, c_tilde, c)), comp.mask

    message = failure(checks.check_rim_step, comm_first)
    assert_has(
        message,
        r"^RIM step h \(case 1",
        r"active modules \[\d\] differ",
        r"Hint: you let the modules communicate before the dynamics",
    )


def test_rim_step_float64_state_is_a_dtype_mismatch():
    def double(cell, x, state):
        new, mask = rim_step(cell, x, state)
        return RIMState(new.h.double(), new.c), mask

    assert_has(
        failure(checks.check_rim_step, double),
        r"^RIM step h \(case 1.*\): expected dtype torch\.float32, got torch\.float64",
        r"double precision",
    )


# ----------------------------------------------------------------------------------------------------------
# How a failure shows in IPython: the ✘ line and the hint, no traceback through the checks


def test_failure_renders_as_the_cross_line_and_the_hint():
    def fill_zero(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, 0.0)
        return scores.softmax(-1) @ v, scores.softmax(-1)

    with pytest.raises(ExerciseFailure) as info:
        checks.check_attention(fill_zero)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in info.value._render_traceback_()]
    message, hint = info.value.message_and_hint()
    assert lines == [f"✘ {message}", f"  Hint: {hint}"]
    assert message.startswith("attention weights (case 2") and message.endswith(".")
    assert hint.startswith("you filled the masked scores with 0")
    assert str(info.value) == f"{message} Hint: {hint}"  # outside IPython: the whole message, as before


def test_failure_without_a_hint_renders_one_line():
    err = ExerciseFailure("attention out (case 1): expected shape (2, 3, 6), got (2, 6, 3)")
    assert err.message_and_hint() == (str(err), "")
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in err._render_traceback_()] == [f"✘ {err}"]


def test_learner_error_renders_the_learners_frames_only():
    def crashes(q, k, v, mask=None):
        return q @ v  # (.., Lq, d_k) @ (.., Lk, d_v): the sizes do not line up

    with pytest.raises(ExerciseFailure) as info:
        checks.check_attention(crashes)
    text = "\n".join(info.value._render_traceback_())
    assert "✘ attention: your function raised RuntimeError on case 1" in text
    assert "Where your function raised it:" in text
    assert "return q @ v" in text  # the learner's line
    assert "test_checks_diagnoses.py" in text
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


@pytest.mark.parametrize("check", [checks.check_attention, checks.check_topk_mask, checks.check_rim_step])
def test_calling_a_check_with_a_result_renders_one_cross_line(check):
    with pytest.raises(ValueError) as info:  # still a ValueError for callers that catch one
        check(torch.zeros(3))
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in info.value._render_traceback_()] == [
        f"✘ {info.value}"
    ]
    assert str(info.value).startswith("fn: expected your function (a callable), got Tensor")
