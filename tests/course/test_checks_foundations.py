"""The exercise checks of notebooks 01 (attention) and 02 (independent dynamics).

Each check must pass the package's reference with exactly one ``✔`` line, fail with a precise message for a
wrong-shape answer and for a subtly wrong one, let the blanked exercise's NotImplementedError through, and
reject a non-callable argument with a ValueError.
"""

from __future__ import annotations

import math

import pytest
import torch

from minirims.attention import merge_heads, scaled_dot_product_attention, split_heads
from minirims.course import checks
from minirims.course.checks._core import ExerciseFailure

# ----------------------------------------------------------------------------------------------------------
# Reference answers, written as a learner would


def attention_ok(q, k, v, mask=None):
    return scaled_dot_product_attention(q, k, v, mask)


def mha_ok(mha, query, key_value, mask=None):
    q = split_heads(mha.query(query), mha.n_heads)
    k = split_heads(mha.key(key_value), mha.n_heads)
    v = split_heads(mha.value(key_value), mha.n_heads)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    return mha.out(merge_heads(out)), weights


def group_linear_ok(x, weight, bias=None):
    y = torch.einsum("bni,nio->bno", x, weight)
    return y if bias is None else y + bias


def lstm_gates(x, h, wi, wh, b):
    return torch.einsum("bni,nio->bno", x, wi) + torch.einsum("bnh,nho->bno", h, wh) + b


def lstm_ok(x, h, c, wi, wh, b):
    i, f, g, o = lstm_gates(x, h, wi, wh, b).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


# ----------------------------------------------------------------------------------------------------------
# Wrong answers


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


def group_linear_no_bias(x, weight, bias=None):
    return torch.einsum("bni,nio->bno", x, weight)


def group_linear_shared(x, weight, bias=None):
    return torch.einsum("bni,io->bno", x, weight[0]) + (0 if bias is None else bias[0])


def group_linear_summed(x, weight, bias=None):
    return torch.einsum("bni,nio->bo", x, weight)


def group_linear_one_module_off(x, weight, bias=None):
    y = group_linear_ok(x, weight, bias).clone()
    y[:, -1] += 0.5
    return y


def lstm_gate_order_ifog(x, h, c, wi, wh, b):
    i, f, o, g = lstm_gates(x, h, wi, wh, b).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def lstm_old_cell_in_h(x, h, c, wi, wh, b):
    i, f, g, o = lstm_gates(x, h, wi, wh, b).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c_new


def lstm_returns_h_only(x, h, c, wi, wh, b):
    return lstm_ok(x, h, c, wi, wh, b)[0]


def lstm_wrong_shape(x, h, c, wi, wh, b):
    h_new, c_new = lstm_ok(x, h, c, wi, wh, b)
    return h_new.flatten(1), c_new


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise 1.1: compute the attention")


ALL_CHECKS = [
    checks.check_attention,
    checks.check_split_heads,
    checks.check_merge_heads,
    checks.check_multi_head_attention,
    checks.check_group_linear,
    checks.check_group_lstm_step,
    checks.check_group_gru_step,
]


# ----------------------------------------------------------------------------------------------------------
# Tests


def test_re_exported_from_checks():
    from minirims.course.checks import attention, dynamics

    names = [*attention.__all__, *dynamics.__all__]
    for name in names:
        assert getattr(checks, name) is getattr(attention if hasattr(attention, name) else dynamics, name)
    assert {check.__name__ for check in ALL_CHECKS} == set(names)
    assert checks.BY_NOTEBOOK["01"] == tuple(attention.__all__)
    assert checks.BY_NOTEBOOK["02"] == tuple(dynamics.__all__)


@pytest.mark.parametrize(
    ("check", "answer", "name"),
    [
        (checks.check_attention, attention_ok, "attention"),
        (checks.check_split_heads, split_heads, "split_heads"),
        (checks.check_merge_heads, merge_heads, "merge_heads"),
        (checks.check_multi_head_attention, mha_ok, "multi_head_attention"),
        (checks.check_group_linear, group_linear_ok, "group_linear"),
        (checks.check_group_lstm_step, lstm_ok, "group_lstm_step"),
    ],
)
def test_reference_passes_with_one_line(check, answer, name, capsys):
    check(answer)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"✔ {name} passed: 4 cases")


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
            checks.check_group_linear,
            group_linear_summed,
            r"group_linear output .*expected shape \(2, 3, 5\), got \(2, 5\)",
        ),
        (checks.check_group_lstm_step, lstm_returns_h_only, r"expected a pair \(h_new, c_new\), got Tensor"),
        (
            checks.check_group_lstm_step,
            lstm_wrong_shape,
            r"h_new .*expected shape \(2, 3, 4\), got \(2, 12\)",
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
        (checks.check_group_linear, group_linear_no_bias, r"values differ.*without the bias"),
        (
            checks.check_group_linear,
            group_linear_shared,
            r"differs for modules 1, 2 of 3.*module 0's weights",
        ),
        (checks.check_group_linear, group_linear_one_module_off, r"case 1.*differs for module 2 of 3"),
        (checks.check_group_lstm_step, lstm_gate_order_ifog, r"c_new .*values differ.*order \(i, f, o, g\)"),
        (checks.check_group_lstm_step, lstm_old_cell_in_h, r"h_new .*values differ.*c_new is right"),
    ],
)
def test_wrong_answers_fail_precisely(check, answer, message, capsys):
    with pytest.raises(ExerciseFailure, match=message):
        check(answer)
    assert "passed" not in capsys.readouterr().out


def test_other_errors_become_failures_naming_the_case():
    def crashes(x, weight, bias=None):
        return x @ weight  # (B, n, d_in) @ (n, d_in, d_out): batch dims do not line up

    with pytest.raises(
        ExerciseFailure, match=r"group_linear: your function raised RuntimeError on case 1"
    ) as info:
        checks.check_group_linear(crashes)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_not_implemented_propagates_unchanged(check, capsys):
    with pytest.raises(NotImplementedError, match=r"^Exercise 1\.1: compute the attention$") as info:
        check(not_implemented)
    assert type(info.value) is NotImplementedError
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_non_callable_is_a_value_error(check):
    with pytest.raises(ValueError, match=r"^fn: expected your function \(a callable\), got Tensor"):
        check(torch.zeros(3))


def test_checks_do_not_disturb_the_global_rng_and_do_not_modify_inputs():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    seen = []

    def spy(q, k, v, mask=None):
        seen.append(q.clone())
        q.mul_(0)  # a learner modifying its input in place must not change the reference comparison
        return scaled_dot_product_attention(q, k, v, mask)

    with pytest.raises(ExerciseFailure):
        checks.check_attention(spy)
    for check, answer in [
        (checks.check_multi_head_attention, mha_ok),
        (checks.check_attention, attention_ok),
    ]:
        check(answer)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert seen and seen[0].abs().sum() > 0
