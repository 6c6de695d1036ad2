"""Group layers equal n separate PyTorch layers with copied weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell

N, B, D_IN, D_H = 4, 3, 5, 7


def test_group_linear_equals_per_module_loop():
    torch.manual_seed(0)
    layer = GroupLinear(N, D_IN, D_H).double()
    x = torch.randn(B, N, D_IN, dtype=torch.float64)
    loop = torch.stack([x[:, i] @ layer.weight[i] + layer.bias[i] for i in range(N)], dim=1)
    torch.testing.assert_close(layer(x), loop, atol=1e-12, rtol=0)
    assert GroupLinear(N, D_IN, D_H, bias=False)(x.float()).shape == (B, N, D_H)


def test_group_lstm_equals_n_lstmcells():
    torch.manual_seed(0)
    group = GroupLSTMCell(N, D_IN, D_H).double()
    cells = []
    for i in range(N):
        cell = nn.LSTMCell(D_IN, D_H).double()
        with torch.no_grad():
            cell.weight_ih.copy_(group.weight_ih[i].T)
            cell.weight_hh.copy_(group.weight_hh[i].T)
            cell.bias_ih.copy_(group.bias[i])
            cell.bias_hh.zero_()
        cells.append(cell)
    x, h, c = (torch.randn(B, N, d, dtype=torch.float64) for d in (D_IN, D_H, D_H))
    h_new, c_new = group(x, (h, c))
    for i in range(N):
        h_ref, c_ref = cells[i](x[:, i], (h[:, i], c[:, i]))
        torch.testing.assert_close(h_new[:, i], h_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(c_new[:, i], c_ref, atol=1e-6, rtol=0)


def test_group_gru_equals_n_grucells():
    torch.manual_seed(0)
    group = GroupGRUCell(N, D_IN, D_H).double()
    x, h = torch.randn(B, N, D_IN, dtype=torch.float64), torch.randn(B, N, D_H, dtype=torch.float64)
    h_new = group(x, h)
    for i in range(N):
        cell = nn.GRUCell(D_IN, D_H).double()
        with torch.no_grad():
            cell.weight_ih.copy_(group.weight_ih[i].T)
            cell.weight_hh.copy_(group.weight_hh[i].T)
            cell.bias_ih.copy_(group.bias_ih[i])
            cell.bias_hh.copy_(group.bias_hh[i])
        torch.testing.assert_close(h_new[:, i], cell(x[:, i], h[:, i]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [GroupLinear(6, 50, 80), GroupLSTMCell(6, 50, 80), GroupGRUCell(6, 50, 80)])
def test_initialisation_is_per_module_random_not_constant(layer):
    w = next(p for name, p in layer.named_parameters() if name.startswith("weight"))
    d = layer.d_in if isinstance(layer, GroupLinear) else layer.d_h
    bound = 1 / d**0.5
    assert w.abs().max() <= bound
    assert w.std() > 0.5 * bound / 3**0.5  # uniform(-b, b) has std b/sqrt(3)
    for i in range(1, 6):  # every module has its own draw
        assert not torch.equal(w[0], w[i])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: GroupLinear(0, 3, 3), r"n: expected a positive int, got 0"),
        (
            lambda: GroupLinear(2, 3, 4)(torch.randn(5, 3, 3)),
            r"x: expected shape \(B, 2, 3\), got \(5, 3, 3\)",
        ),
        (lambda: GroupLinear(2, 3, 4)(torch.randn(5, 3)), r"x: expected a 3-d tensor"),
        (
            lambda: GroupLinear(2, 3, 4)(torch.ones(5, 2, 3, dtype=torch.long)),
            r"x: expected a floating-point",
        ),
        (
            lambda: GroupLSTMCell(2, 3, 4)(torch.randn(5, 2, 3), torch.zeros(5, 2, 4)),
            r"state: expected a tuple \(h, c\)",
        ),
        (
            lambda: GroupLSTMCell(2, 3, 4)(
                torch.randn(5, 2, 3), (torch.zeros(5, 2, 4), torch.zeros(5, 2, 5))
            ),
            r"state c: expected shape \(5, 2, 4\), got \(5, 2, 5\)",
        ),
        (
            lambda: GroupGRUCell(2, 3, 4)(torch.randn(5, 2, 3), torch.zeros(4, 2, 4)),
            r"h: expected shape \(5, 2, 4\), got \(4, 2, 4\)",
        ),
    ],
)
def test_group_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lstm_forget_gate_bias_starts_at_one() -> None:
    torch.manual_seed(0)
    cell = GroupLSTMCell(6, 8, 50)
    b = cell.bias.detach().view(6, 4, 50)  # gate order i, f, g, o
    bound = 1 / 50**0.5
    assert (b[:, 1] - 1.0).abs().max() <= bound
    assert b[:, [0, 2, 3]].abs().max() <= bound
    zero = GroupLSTMCell(6, 8, 50, forget_bias=0.0).bias.detach().view(6, 4, 50)
    assert zero.abs().max() <= bound
    with pytest.raises(ValueError, match=r"forget_bias: expected a finite float, got nan"):
        GroupLSTMCell(2, 3, 4, forget_bias=float("nan"))
