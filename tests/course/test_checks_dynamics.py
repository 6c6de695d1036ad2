"""The checks of notebook 02 (group linear, GroupLSTMCell and GroupGRUCell steps) name each mistake."""

from __future__ import annotations

import pytest
import torch
from helpers import load_fixture

from minirims.course import checks

answers = load_fixture("check_answers")
fails = answers.fails
lstm_gates, lstm_ok, gru = answers.lstm_gates, answers.group_lstm_step, answers.group_gru_step


def group_linear_no_bias(x, weight, bias=None):
    return torch.einsum("bni,nio->bno", x, weight)


def group_linear_shared(x, weight, bias=None):
    return torch.einsum("bni,io->bno", x, weight[0]) + (0 if bias is None else bias[0])


def group_linear_summed(x, weight, bias=None):
    return torch.einsum("bni,nio->bo", x, weight)


def group_linear_one_module_off(x, weight, bias=None):
    y = answers.group_linear(x, weight, bias).clone()
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


def lstm_wrong_shape(x, h, c, wi, wh, b):
    h_new, c_new = lstm_ok(x, h, c, wi, wh, b)
    return h_new.flatten(1), c_new


@pytest.mark.parametrize(
    ("check", "answer", "message"),
    [
        # wrong shapes / containers
        (
            checks.check_group_linear,
            group_linear_summed,
            r"group_linear output .*expected shape \(2, 3, 5\), got \(2, 5\)",
        ),
        (
            checks.check_group_lstm_step,
            lambda *args: lstm_ok(*args)[0],
            r"expected a pair \(h_new, c_new\), got Tensor",
        ),
        (
            checks.check_group_lstm_step,
            lstm_wrong_shape,
            r"h_new .*expected shape \(2, 3, 4\), got \(2, 12\)",
        ),
        # subtly wrong values
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
    fails(check, answer, message)
    assert "passed" not in capsys.readouterr().out


def test_an_error_in_the_learners_function_names_the_case():
    def crashes(x, weight, bias=None):
        return x @ weight  # (B, n, d_in) @ (n, d_in, d_out): batch dims do not line up

    with pytest.raises(
        checks.ExerciseFailure, match=r"group_linear: your function raised RuntimeError on case 1"
    ) as info:
        checks.check_group_linear(crashes)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("mistake", "fragment"),
    [
        ({"swap_z": True}, r"z \* n \+ \(1 - z\) \* h"),
        ({"reset_before_matmul": True}, "2014 paper's GRU"),
        ({"reset_after_bias": False}, "but not its bias b_hn"),
        ({"order": (1, 0, 2)}, r"\(z, r, n\)"),
    ],
)
def test_gru_check_names_the_mistake(mistake, fragment):
    fails(checks.check_group_gru_step, lambda *a: gru(*a, **mistake), "h_new", fragment)


def test_gru_check_rejects_a_wrong_shape():
    fails(checks.check_group_gru_step, lambda x, h, *rest: h[:, :1], "expected shape")
