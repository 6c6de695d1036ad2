"""The checks of notebook 01 (attention, split and merge heads, multi-head attention) name each mistake."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import load_fixture

from minirims.attention import merge_heads, scaled_dot_product_attention, split_heads
from minirims.course import checks

answers = load_fixture("check_answers")
fails = answers.fails


def attention_unscaled(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


def attention_no_mask(q, k, v, mask=None):
    return scaled_dot_product_attention(q, k, v)


def attention_inverted_mask(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


def attention_fill_zero(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    weights = scores.softmax(-1)
    return weights @ v, weights


def attention_out_transposed(q, k, v, mask=None):
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    return out.transpose(-2, -1), weights


def attention_swapped(q, k, v, mask=None):
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    return weights, out


def split_no_transpose(x, n_heads):
    b, length, features = x.shape
    return x.reshape(b, n_heads, length, features // n_heads)


def split_interleaved(x, n_heads):
    b, length, features = x.shape
    return x.reshape(b, length, features // n_heads, n_heads).permute(0, 3, 1, 2)


def split_wrong_shape(x, n_heads):
    b, length, features = x.shape
    return x.reshape(b, length, n_heads, features // n_heads)


def merge_no_transpose(x):
    b, h, length, d = x.shape
    return x.reshape(b, length, h * d)


def merge_interleaved(x):
    b, h, length, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, length, h * d)


def mha_no_output_projection(mha, query, key_value, mask=None):
    q = split_heads(mha.query(query), mha.n_heads)
    k = split_heads(mha.key(key_value), mha.n_heads)
    v = split_heads(mha.value(key_value), mha.n_heads)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    return merge_heads(out), weights


def mha_interleaved_heads(mha, query, key_value, mask=None):
    def split(x):
        b, length, features = x.shape
        return x.reshape(b, length, features // mha.n_heads, mha.n_heads).permute(0, 3, 1, 2)

    out, weights = scaled_dot_product_attention(
        split(mha.query(query)), split(mha.key(key_value)), split(mha.value(key_value)), mask
    )
    return mha.out(merge_heads(out)), weights


def mha_averaged_weights(mha, query, key_value, mask=None):
    out, weights = mha(query, key_value, mask)
    return out, weights.mean(dim=1)


@pytest.mark.parametrize(
    ("check", "answer", "message"),
    [
        # wrong shapes / containers
        (
            checks.check_attention,
            attention_out_transposed,
            r"attention out \(case 1.*expected shape \(2, 3, 6\), got \(2, 6, 3\)",
        ),
        (
            checks.check_attention,
            attention_swapped,
            r"you returned \(weights, out\); return \(out, weights\)",
        ),
        (
            checks.check_split_heads,
            split_wrong_shape,
            r"split_heads output .*expected shape \(2, 3, 5, 4\), got \(2, 5, 3, 4\)",
        ),
        (
            checks.check_merge_heads,
            lambda x: x.transpose(1, 2),
            r"merge_heads output .*expected shape \(2, 5, 12\), got \(2, 5, 3, 4\)",
        ),
        (
            checks.check_multi_head_attention,
            mha_averaged_weights,
            r"weights \(B, H, Lq, Lk\) .*expected shape \(2, 2, 3, 5\), got \(2, 3, 5\)",
        ),
        # subtly wrong values
        (
            checks.check_attention,
            attention_unscaled,
            r"attention weights \(case 1.*values differ.*without the 1/sqrt\(d_k\) scaling",
        ),
        (
            checks.check_attention,
            attention_no_mask,
            r"attention weights \(case 2.*mask.*values differ.*without the mask",
        ),
        (checks.check_attention, attention_inverted_mask, r"case 2.*the mask is inverted"),
        (
            checks.check_split_heads,
            split_no_transpose,
            r"values differ.*differs for every head \(3\).*reshape to \(B, L, H, d\) first",
        ),
        (checks.check_split_heads, split_interleaved, r"values differ.*heads are interleaved"),
        (checks.check_merge_heads, merge_no_transpose, r"values differ.*swap dims 1 and 2 first"),
        (
            checks.check_merge_heads,
            merge_interleaved,
            r"values differ.*differs for every head \(3\).*interleaved",
        ),
        (
            checks.check_multi_head_attention,
            mha_no_output_projection,
            r"out \(B, Lq, d_out\) \(case 1.*values differ.*mha\.out",
        ),
        (
            checks.check_multi_head_attention,
            mha_interleaved_heads,
            r"weights .*values differ.*heads are interleaved",
        ),
    ],
)
def test_wrong_answers_fail_precisely(check, answer, message, capsys):
    fails(check, answer, message)
    assert "passed" not in capsys.readouterr().out


def test_masked_scores_filled_with_zero_instead_of_minus_inf():
    fails(
        checks.check_attention,
        attention_fill_zero,
        r"^attention weights \(case 2",
        r"Hint: you filled the masked scores with 0",
        r"-inf",
    )


def test_masked_weights_that_are_not_zero_are_named_when_no_known_mistake_matches():
    def renormalised_late(q, k, v, mask=None):  # softmax first, then change the masked weights
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
        if mask is not None:
            weights = weights * mask + 0.05 * ~mask
        return weights @ v, weights

    fails(
        checks.check_attention,
        renormalised_late,
        r"case 2",
        r"where mask is False the weight must be exactly 0, but yours reach 0\.05",
    )


def test_float64_output_is_named_a_dtype_mismatch_not_a_wrong_read():
    def double_read(q, k, v, mask=None):
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out.double(), weights

    message = fails(
        checks.check_attention,
        double_read,
        r"^attention out \(case 1.*\): expected dtype torch\.float32, got torch\.float64",
        r"Hint: the values may be right, but something in your computation is double precision",
    )
    assert "weights @ v" not in message  # the read hint would misdiagnose it


def test_a_wrong_read_gets_the_read_hint():
    def scaled_read(q, k, v, mask=None):
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out * 1.5, weights

    fails(checks.check_attention, scaled_read, r"values differ", r"the read is weights @ v")


def test_checks_do_not_disturb_the_global_rng_and_do_not_modify_inputs():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    seen = []

    def spy(q, k, v, mask=None):
        seen.append(q.clone())
        q.mul_(0)  # a learner modifying its input in place must not change the reference comparison
        return scaled_dot_product_attention(q, k, v, mask)

    fails(checks.check_attention, spy)
    for check, answer in [
        (checks.check_multi_head_attention, answers.multi_head_attention),
        (checks.check_attention, answers.attention),
    ]:
        check(answer)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert seen and seen[0].abs().sum() > 0
