"""The RIM sequence layer and the LSTM baseline: interface, state, learning.

Every test that takes ``make_rim`` runs once per path of the RIM, plain and fused (``conftest.py``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minirims.cell import RIMState
from minirims.model import RIM, LSTMBaseline

#: a RIM of 4 modules, 2 active, on 3 input features (the messages below name these sizes)
SIZES = dict(
    n_modules=4, k_active=2, d_hidden=8, input_d_k=4, input_d_v=6, comm_heads=2, comm_d_k=3, comm_d_v=4
)


@pytest.fixture
def small_rim(make_rim):
    """``small_rim(seed=0, **kw)``: a float64 RIM of :data:`SIZES` on 3 features, on the test's path."""
    return lambda seed=0, **kw: make_rim(3, seed=seed, **{**SIZES, **kw})


@pytest.mark.parametrize("slots", [None, 2])
def test_rim_shapes_and_trace(small_rim, slots):
    rim = small_rim()
    x = (
        torch.randn(5, 7, 3, dtype=torch.float64)
        if slots is None
        else torch.randn(5, 7, slots, 3, dtype=torch.float64)
    )
    out, state, trace = rim(x, trace=True)
    assert rim.d_out == 32 and out.shape == (5, 7, 32)
    assert state.h.shape == (5, 4, 8) and state.c.shape == (5, 4, 8)
    torch.testing.assert_close(out[:, -1], state.h.reshape(5, 32))
    assert trace.masks.shape == (5, 7, 4) and (trace.masks.sum(-1) == 2).all()
    assert trace.input_attn.shape == (5, 7, 4, 1 + (slots or 1))
    assert trace.comm_attn.shape == (5, 7, 2, 4, 4)
    assert rim(x)[2] is None


def test_rim_equals_stepping_the_cell_and_state_carries_over(small_rim):
    rim = small_rim()
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    out, state, _ = rim(x)
    out1, s1, _ = rim(x[:, :4])
    out2, s2, _ = rim(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([out1, out2], 1), out, atol=1e-12, rtol=0)
    torch.testing.assert_close(s2.c, state.c, atol=1e-12, rtol=0)
    st = rim.initial_state(3)
    for t in range(10):
        h, st, _ = rim.cell(x[:, t], st)
    torch.testing.assert_close(h.reshape(3, -1), out[:, -1], atol=1e-12, rtol=0)


def test_gru_rim_and_same_seed_same_numbers(small_rim):
    a, b = small_rim(rnn="gru", seed=5), small_rim(rnn="gru", seed=5)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out_a, state_a, _ = a(x)
    assert state_a.c is None and torch.equal(out_a, b(x)[0])


def test_lstm_baseline_matches_interface():
    torch.manual_seed(0)
    lstm = LSTMBaseline(3, 16)
    x = torch.randn(4, 9, 3)
    out, (h, c), trace = lstm(x, trace=True)
    assert lstm.d_out == 16 and out.shape == (4, 9, 16) and h.shape == (4, 16) and trace is None
    out1, s1, _ = lstm(x[:, :5])
    out2, _, _ = lstm(x[:, 5:], s1)
    torch.testing.assert_close(torch.cat([out1, out2], 1), out, atol=1e-6, rtol=0)
    torch.testing.assert_close(lstm(x, lstm.initial_state(4))[0], out)


def adding_batch(g, b=64, t=10):
    """The adding problem: sum the two marked values of a sequence of (value, marker) pairs."""
    v = torch.rand(b, t, generator=g)
    idx = torch.stack([torch.randperm(t, generator=g)[:2] for _ in range(b)])
    mark = torch.zeros(b, t).scatter_(1, idx, 1.0)
    return torch.stack([v, mark], -1), (v * mark).sum(1)


def test_small_rim_learns_the_adding_task(path):
    """Predicting the mean gives MSE ~0.17; 150 Adam steps (~5 s on CPU) bring a small RIM under 0.02."""
    torch.manual_seed(0)
    rim = RIM(
        2,
        fast=path == "fused",
        n_modules=4,
        k_active=2,
        d_hidden=16,
        input_d_k=8,
        input_d_v=16,
        comm_heads=2,
        comm_d_k=8,
        comm_d_v=8,
        dropout=0.0,
    )
    head = nn.Linear(rim.d_out, 1)
    opt = torch.optim.Adam([*rim.parameters(), *head.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x_test, y_test = adding_batch(g, b=512)

    def mse(x, y):
        return ((head(rim(x)[0][:, -1]).squeeze(-1) - y) ** 2).mean()

    with torch.no_grad():
        before = mse(x_test, y_test).item()
    for _ in range(150):
        loss = mse(*adding_batch(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = mse(x_test, y_test).item()
    assert before > 0.1
    assert after < 0.02, f"adding task MSE after 150 steps: {after:.4f}"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda rim: rim(torch.randn(2, 5, 4, dtype=torch.float64)),
            r"x: expected shape \(B, T, 3\) or \(B, T, m, 3\) with T >= 1, got \(2, 5, 4\)",
        ),
        (lambda rim: rim(torch.randn(2, 0, 3, dtype=torch.float64)), r"with T >= 1, got \(2, 0, 3\)"),
        (
            lambda rim: rim(
                torch.randn(2, 5, 3, dtype=torch.float64),
                RIMState(torch.zeros(3, 4, 8), torch.zeros(3, 4, 8)),
            ),
            r"state.h: expected shape \(2, 4, 8\), got \(3, 4, 8\)",
        ),
    ],
)
def test_rim_validation(small_rim, call, match):
    with pytest.raises(ValueError, match=match):
        call(small_rim())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: RIM(3, n_modules=6, k_active=7), r"k_active: expected an int in \[1, n_modules=6\], got 7"),
        (lambda: LSTMBaseline(3, 0), r"d_hidden: expected a positive int, got 0"),
        (lambda: LSTMBaseline(3, 4)(torch.randn(2, 5, 2)), r"x: expected shape \(B, T, 3\), got \(2, 5, 2\)"),
        (
            lambda: LSTMBaseline(3, 4)(torch.randn(2, 5, 3), (torch.zeros(2, 5), torch.zeros(2, 4))),
            r"state h: expected shape \(2, 4\), got \(2, 5\)",
        ),
    ],
)
def test_model_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lstm_baseline_forget_gate_bias_matches_the_rim() -> None:
    torch.manual_seed(0)
    base = LSTMBaseline(8, 40)
    bias = (base.lstm.bias_ih_l0 + base.lstm.bias_hh_l0).detach().view(4, 40)  # gate order i, f, g, o
    bound = 2 / 40**0.5  # two U(-1/sqrt(d), 1/sqrt(d)) biases summed
    assert (bias[1] - 1.0).abs().max() <= bound and bias[[0, 2, 3]].abs().max() <= bound
    assert bias[1].mean() > 0.7 and bias[[0, 2, 3]].mean().abs() < 0.2
    with pytest.raises(ValueError, match=r"forget_bias: expected a finite float, got 'one'"):
        LSTMBaseline(8, 40, forget_bias="one")  # type: ignore[arg-type]
