"""Invariants of the RIM cell and agreement with the loop-over-modules version."""

from __future__ import annotations

import pytest
import torch

from minirims.cell import RIMCell, RIMState
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell
from minirims.naive import LoopRIMCell

SMALL = dict(
    n_modules=6, k_active=4, d_hidden=8, input_d_k=4, input_d_v=6, comm_heads=2, comm_d_k=3, comm_d_v=5
)


def make_cell(rnn="lstm", seed=0, dropout=0.0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return RIMCell(5, rnn=rnn, dropout=dropout, **{**SMALL, **kw}).to(dtype).eval()


def _z(*shape):
    """Zeros in the test cells' dtype (float64)."""
    return torch.zeros(*shape, dtype=torch.float64)


def random_state(cell, b, seed=1):
    g = torch.Generator().manual_seed(seed)
    dtype = cell.rnn.weight_hh.dtype
    h = torch.randn(b, cell.n_modules, cell.d_hidden, generator=g, dtype=dtype)
    c = (
        torch.randn(b, cell.n_modules, cell.d_hidden, generator=g, dtype=dtype)
        if cell.rnn_type == "lstm"
        else None
    )
    return RIMState(h, c)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_exactly_k_active_and_inactive_state_kept_bit_for_bit(rnn):
    cell = make_cell(rnn)
    state = random_state(cell, 32)
    h, new, info = cell(torch.randn(32, 3, 5, dtype=torch.float64), state)
    assert h.shape == (32, 6, 8) and torch.equal(h, new.h)
    assert (info.mask.sum(-1) == 4).all()
    assert info.input_attn.shape == (32, 6, 4) and info.comm_attn.shape == (32, 2, 6, 6)
    assert torch.equal(new.h[~info.mask], state.h[~info.mask])
    assert (new.h[info.mask] != state.h[info.mask]).any(-1).all()
    if rnn == "lstm":
        assert torch.equal(new.c[~info.mask], state.c[~info.mask])
    else:
        assert new.c is None


def test_batched_cell_equals_loop_over_modules_float64():
    cell = make_cell()
    loop = LoopRIMCell.from_cell(cell)
    state = random_state(cell, 7)
    for m in (1, 3):
        x = torch.randn(7, m, 5, dtype=torch.float64)
        a, b = cell(x, state), loop(x, state)
        assert torch.equal(a[2].mask, b[2].mask)
        for got, ref in (
            (a[0], b[0]),
            (a[1].c, b[1].c),
            (a[2].input_attn, b[2].input_attn),
            (a[2].comm_attn, b[2].comm_attn),
        ):
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_discarded_update_gets_no_gradient_but_kept_state_does():
    cell = make_cell()
    captured = {}

    def keep(module, inputs, output):  # the candidate (h~, c~) of every module
        for t in output:
            t.retain_grad()
        captured["out"] = output

    cell.rnn.register_forward_hook(keep)
    state = random_state(cell, 16)
    h0 = state.h.clone().requires_grad_(True)
    c0 = state.c.clone().requires_grad_(True)
    x = torch.randn(16, 5, dtype=torch.float64)
    _, new, info = cell(x, RIMState(h0, c0))
    loss = (new.h**2).sum() + (new.c**2).sum()
    loss.backward()
    h_tilde, c_tilde = captured["out"]
    inactive = ~info.mask
    assert (h_tilde.grad[inactive] == 0).all() and (c_tilde.grad[inactive] == 0).all()
    assert (h_tilde.grad[info.mask] != 0).any() and (c_tilde.grad[info.mask] != 0).any()
    # gradient flows through the kept state of an inactive module
    assert (h0.grad[inactive].abs().sum(-1) > 0).all() and (c0.grad[inactive].abs().sum(-1) > 0).all()


def permute_modules(cell, perm):
    with torch.no_grad():
        for mod in cell.modules():
            if isinstance(mod, (GroupLinear, GroupLSTMCell, GroupGRUCell)):
                for p in mod.parameters(recurse=False):
                    p.copy_(p[perm])


def test_permuting_modules_permutes_outputs_and_masks():
    cell = make_cell()
    state = random_state(cell, 8)
    x = torch.randn(8, 2, 5, dtype=torch.float64)
    h, new, info = cell(x, state)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permute_modules(cell, perm)
    h_p, new_p, info_p = cell(x, RIMState(state.h[:, perm], state.c[:, perm]))
    torch.testing.assert_close(h_p, h[:, perm], atol=1e-12, rtol=0)
    torch.testing.assert_close(new_p.c, new.c[:, perm], atol=1e-12, rtol=0)
    assert torch.equal(info_p.mask, info.mask[:, perm])
    torch.testing.assert_close(info_p.comm_attn, info.comm_attn[:, :, perm][..., perm], atol=1e-12, rtol=0)


def test_each_example_is_independent_of_the_batch():
    cell = make_cell()
    state = random_state(cell, 6)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    h, _, info = cell(x, state)
    for i in (0, 4):
        hi, _, info_i = cell(x[i : i + 1], RIMState(state.h[i : i + 1], state.c[i : i + 1]))
        torch.testing.assert_close(hi[0], h[i], atol=1e-12, rtol=0)
        assert torch.equal(info_i.mask[0], info.mask[i])
    (grad,) = torch.autograd.grad(h[2].sum(), x)
    assert (grad[[0, 1, 3, 4, 5]] == 0).all() and (grad[2] != 0).any()


def test_same_seed_same_numbers_including_dropout():
    outs = []
    for _ in range(2):
        cell = make_cell(seed=3, dropout=0.2, dtype=torch.float32).train()
        torch.manual_seed(11)
        outs.append(cell(torch.randn(4, 5))[0])
    assert torch.equal(outs[0], outs[1])
    other = make_cell(seed=4, dtype=torch.float32)
    assert not torch.equal(
        other(torch.ones(4, 5))[0], make_cell(seed=3, dtype=torch.float32)(torch.ones(4, 5))[0]
    )


def test_initial_state_is_zero_and_deterministic():
    cell = make_cell()
    s1, s2 = cell.initial_state(3), cell.initial_state(3)
    assert (s1.h == 0).all() and (s1.c == 0).all() and s1.h.dtype == torch.float64
    assert torch.equal(
        cell(torch.ones(3, 5, dtype=torch.float64))[0], cell(torch.ones(3, 5, dtype=torch.float64), s2)[0]
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: RIMCell(5, n_modules=4, k_active=5),
            r"k_active: expected an int in \[1, n_modules=4\], got 5",
        ),
        (lambda: RIMCell(5, rnn="rnn"), r"rnn: expected 'lstm' or 'gru', got 'rnn'"),
        (lambda: RIMCell(0), r"d_in: expected a positive int, got 0"),
        (
            lambda: make_cell()(torch.randn(2, 6, dtype=torch.float64)),
            r"x: expected shape \(B, 5\) or \(B, m, 5\), got \(2, 6\)",
        ),
        (
            lambda: make_cell()(torch.randn(2, 5, dtype=torch.float64), (_z(2, 6, 8),)),
            r"state: expected a RIMState",
        ),
        (
            lambda: make_cell()(torch.randn(2, 5, dtype=torch.float64), RIMState(_z(2, 6, 9), _z(2, 6, 8))),
            r"state.h: expected shape \(2, 6, 8\), got \(2, 6, 9\)",
        ),
        (
            lambda: make_cell()(torch.randn(2, 5, dtype=torch.float64), RIMState(_z(2, 6, 8), None)),
            r"state.c: expected a tensor .* got None",
        ),
        (
            lambda: make_cell("gru")(
                torch.randn(2, 5, dtype=torch.float64), RIMState(_z(2, 6, 8), _z(2, 6, 8))
            ),
            r"state.c: expected None for rnn='gru'",
        ),
    ],
)
def test_cell_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
