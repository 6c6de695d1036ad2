"""The checks of notebook 03 (input attention over [null, inputs], the top-k mask) name each mistake."""

from __future__ import annotations

import math

import torch
from helpers import load_fixture

from minirims.competition import topk_mask
from minirims.course import checks

answers = load_fixture("check_answers")
fails, input_attention, select_active = answers.fails, answers.input_attention, answers.select_active


def attend(x, h, key, value, query, slots, scale=True, dim=-1):
    """Input attention over the given ``slots`` (a learner's variants differ in the slots and the softmax)."""
    k = key(slots)
    scores = query(h) @ k.transpose(1, 2)
    attn = torch.softmax(scores / math.sqrt(k.shape[-1]) if scale else scores, dim=dim)
    return attn, attn @ value(slots)


def mask_from(scores, k):
    winners = scores.topk(k, dim=-1).indices
    return torch.zeros(scores.shape[:2], dtype=torch.bool).scatter(-1, winners, True)


# ----------------------------------------------------------------------------------------------------------
# input attention


def test_input_attention_without_null_slot():
    fails(
        checks.check_input_attention,
        lambda x, h, key, value, query: attend(x, h, key, value, query, x),
        r"attn \(case 1: B=2, m=1 input slot, n=4 modules\): expected shape \(2, 4, 2\), got \(2, 4, 1\)",
        r"prepend the null slot",
    )


def test_input_attention_null_slot_last():
    def null_last(x, h, key, value, query):
        return attend(x, h, key, value, query, torch.cat([x, torch.zeros_like(x[:, :1])], dim=1))

    fails(checks.check_input_attention, null_last, r"values differ", r"the null slot must be slot 0")


def test_null_slot_of_ones_instead_of_zeros():
    def null_ones(x, h, key, value, query):
        return attend(x, h, key, value, query, torch.cat([torch.ones_like(x[:, :1]), x], dim=1))

    fails(
        checks.check_input_attention,
        null_ones,
        r"^input attention attn \(case 1",
        r"values differ",
        r"Hint: the null slot is a vector of zeros",
    )


def test_input_attention_unscaled_and_wrong_softmax_dim():
    def unscaled(x, h, key, value, query):
        return attend(x, h, key, value, query, torch.cat([torch.zeros_like(x[:, :1]), x], dim=1), scale=False)

    def over_modules(x, h, key, value, query):
        return attend(x, h, key, value, query, torch.cat([torch.zeros_like(x[:, :1]), x], dim=1), dim=1)

    fails(checks.check_input_attention, unscaled, r"sqrt\(d_k\)")
    fails(checks.check_input_attention, over_modules, r"softmax over the slots")


def test_input_attention_wrong_read():
    def bad_read(x, h, key, value, query):
        attn, read = input_attention(x, h, key, value, query)
        return attn, read * 2

    fails(
        checks.check_input_attention, bad_read, r"^input attention read \(case 1", r"attention-weighted sum"
    )


def test_returned_read_and_attn_swapped():
    def swapped(x, h, key, value, query):
        attn, read = input_attention(x, h, key, value, query)
        return read, attn

    fails(
        checks.check_input_attention,
        swapped,
        r"^input attention \(case 1: B=2, m=1 input slot, n=4 modules\): you returned \(read, attn\)",
        r"read \(2, 4, 7\).*attn \(2, 4, 2\)",
        r"return \(attn, read\)",
    )


# ----------------------------------------------------------------------------------------------------------
# top-k mask


def test_topk_most_null_instead_of_least_null_names_the_modules():
    message = fails(
        checks.check_topk_mask,
        lambda attn, k: topk_mask(attn[..., 0], k),
        r"\(case 1: B=4, n=6 modules, m=1, k=1\): example 0: your mask selects modules \[\d\], "
        r"expected \[\d\]",
        r"attend MOST to the null slot",
    )
    assert "rows differ" in message
    fails(checks.check_topk_mask, lambda attn, k: mask_from(attn[..., 0], k), r"attend MOST to the null slot")


def test_topk_ranked_by_input_slot_score():
    # with one input slot the two rules agree (case 1), with three slots they do not (case 2)
    fails(
        checks.check_topk_mask,
        lambda attn, k: topk_mask(attn[..., 1:].max(-1).values, k),
        r"case 2: B=5, n=6 modules, m=3, k=3",
        r"largest attention on one",
    )


def test_slot_index_off_by_one_is_not_reported_as_the_wrong_sign():
    # 1-based: "the first slot" taken as attn[..., 1]; case 1 has one input slot, where least attention on
    # slot 1 IS most attention on the null slot
    message = fails(
        checks.check_topk_mask,
        lambda attn, k: mask_from(-attn[..., 1], k),
        r"\(case 1: B=4, n=6 modules, m=1, k=1\)",
        r"Hint: you ranked the modules by attn\[\.\.\., 1\]",
        r"the null slot is slot 0",
    )
    assert "MOST" not in message


def test_topk_diagnosis_survives_a_function_that_fails_on_other_cases():
    def most_null_for_one_slot_only(attn, k):
        if attn.shape[-1] > 2:
            raise RuntimeError("only one input slot supported")
        return mask_from(attn[..., 0], k)

    # the other cases give no evidence (they raise), so the diagnosis rests on the cases with one input slot,
    # where both rules agree: both are named
    fails(
        checks.check_topk_mask,
        most_null_for_one_slot_only,
        r"case 1",
        r"Hint: your masks fit two mistakes: either you ranked the modules by attn\[\.\.\., 1\]",
        r"; or you picked the modules that attend MOST to the null slot",
    )


def test_topk_wrong_dtype_and_shape_and_count():
    fails(checks.check_topk_mask, lambda attn, k: select_active(attn, k).float(), r"expected a bool mask")
    fails(
        checks.check_topk_mask,
        lambda attn, k: select_active(attn, k)[:, None],
        r"expected shape \(4, 6\), got \(4, 1, 6\)",
    )
    fails(
        checks.check_topk_mask,
        lambda attn, k: select_active(attn, min(k + 1, attn.shape[1])),
        r"expected exactly k=1",
    )


def scaled_by(size):
    """Input attention whose scores are divided by ``size(x, h, k, v)`` instead of sqrt(d_k)."""

    def scaled(x, h, key, value, query):
        slots = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
        k, v = key(slots), value(slots)
        attn = torch.softmax(query(h) @ k.transpose(1, 2) / size(x, h, k, v), dim=-1)
        return attn, attn @ v

    return scaled


def test_input_attention_scaled_by_the_wrong_size_names_the_size():
    start = (
        "input attention attn (case 1: B=2, m=1 input slot, n=4 modules): values differ in 16 of 16 entries; "
        "first differing index (0, 0, 0): expected 0.678835, got "
    )
    right = "divide by sqrt(d_k) = sqrt(8), the size of the keys and queries: math.sqrt(k.shape[-1])"
    cases = [
        (
            lambda x, h, k, v: math.sqrt(x.shape[-1]),
            "0.720449; max abs difference 0.0523 at index (1, 0, 0) (atol=1e-05, rtol=0.0001). Hint: you "
            "divided the scores by sqrt(d_in) = sqrt(5), the size of the inputs x",
        ),
        (
            lambda x, h, k, v: math.sqrt(h.shape[-1]),
            "0.703538; max abs difference 0.0322 at index (1, 0, 0) (atol=1e-05, rtol=0.0001). Hint: you "
            "divided the scores by sqrt(d_h) = sqrt(6), the size of the states h",
        ),
        (
            lambda x, h, k, v: math.sqrt(v.shape[-1]),
            "0.689995; max abs difference 0.0149 at index (1, 0, 0) (atol=1e-05, rtol=0.0001). Hint: you "
            "divided the scores by sqrt(d_v) = sqrt(7), the size of the values",
        ),
        (
            lambda x, h, k, v: k.shape[-1],
            "0.565769; max abs difference 0.205 at index (1, 1, 1) (atol=1e-05, rtol=0.0001). Hint: you "
            "divided the scores by d_k = 8 itself, not its square root",
        ),
    ]
    for size, rest in cases:
        assert fails(checks.check_input_attention, scaled_by(size)) == f"{start}{rest}; {right}"
    # any other number is named too, by fitting the softmax's temperature
    fails(
        checks.check_input_attention,
        scaled_by(lambda x, h, k, v: 3.0),
        r"Hint: your scores are divided by 3; divide by sqrt\(d_k\) = sqrt\(8\) = 2\.828, the size of the ",
    )
