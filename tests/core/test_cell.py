"""Invariants of the RIM cell, on both paths of the RIM, and agreement with the loop-over-modules oracle.

Every test that takes ``make_rim`` runs once per path (``conftest.py``): the plain path steps
:class:`~minirims.cell.RIMCell`, the fused path runs :mod:`minirims.fast`. The last tests check the cell's
own single-step interface.
"""

from __future__ import annotations

import pytest
import torch

from minirims.cell import RIMCell, RIMState
from minirims.fast import should_fold
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell
from minirims.naive import LoopRIMCell

F64 = torch.float64
#: five modules, three active, d_v = 400: the sizes the tie tests were written for (their seeds give ties)
TIES = dict(
    n_modules=5, k_active=3, d_hidden=7, input_d_k=6, input_d_v=400, comm_heads=2, comm_d_k=3, comm_d_v=4
)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_exactly_k_active_and_inactive_modules_keep_their_state_bit_for_bit(make_rim, rnn, random_state):
    rim = make_rim(rnn=rnn)
    b, t_len = 16, 5
    state = random_state(rim, b)
    x = torch.randn(b, t_len, 3, 5, dtype=F64)
    out, final, trace = rim(x, state, trace=True)
    assert (trace.masks.sum(-1) == 4).all()
    assert trace.input_attn.shape == (b, t_len, 6, 4) and trace.comm_attn.shape == (b, t_len, 2, 6, 6)
    h = torch.cat([state.h.unsqueeze(1), out.view(b, t_len, 6, 8)], 1)  # h_0 .. h_T
    kept = ~trace.masks  # (B, T, n): inactive at step t, so h_t == h_{t-1}
    assert torch.equal(h[:, 1:][kept], h[:, :-1][kept])
    assert (h[:, 1:][~kept] != h[:, :-1][~kept]).any(-1).all()
    assert torch.equal(final.h, h[:, -1])
    _, one, one_trace = rim(x[:, :1], state, trace=True)  # one step: the final c is the updated c
    mask = one_trace.masks[:, 0]
    if rnn == "lstm":
        assert torch.equal(one.c[~mask], state.c[~mask])
        assert (one.c[mask] != state.c[mask]).any(-1).all()
    else:
        assert one.c is None and final.c is None


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("start", ["zero", "random"])
def test_rim_equals_the_loop_over_modules_float64(make_rim, path, m, start, random_state):
    rim = make_rim()
    # B * T = 30 rows: the fused path folds W_v into W_ih for one slot, and reads unfolded for three
    assert should_fold(rim.cell, m, 30) == (m == 1)
    loop = LoopRIMCell.from_cell(rim.cell)
    x = torch.randn(5, 6, m, 5, dtype=F64)
    given = random_state(rim, 5) if start == "random" else None
    out, final, trace = rim(x, given, trace=True)
    state = given if given is not None else rim.initial_state(5)
    for t in range(6):
        h, state, info = loop(x[:, t], state)
        assert torch.equal(info.mask, trace.masks[:, t]), f"step {t}"
        for got, ref in (
            (out[:, t], h.reshape(5, -1)),
            (trace.input_attn[:, t], info.input_attn),
            (trace.comm_attn[:, t], info.comm_attn),
        ):
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(final.c, state.c, atol=1e-6, rtol=0)


def test_discarded_update_gets_no_gradient_but_kept_state_does(make_rim, path, random_state):
    rim = make_rim()
    rnn = rim.cell.rnn
    for seed in range(3):  # one example at a time: a module inactive in it gets no gradient through h~
        state = random_state(rim, 1, seed=seed)
        h0 = state.h.clone().requires_grad_(True)
        c0 = state.c.clone().requires_grad_(True)
        rim.zero_grad(set_to_none=True)
        _, new, trace = rim(torch.randn(1, 1, 5, dtype=F64), RIMState(h0, c0), trace=True)
        ((new.h**2).sum() + (new.c**2).sum()).backward()
        active = trace.masks[0, 0]  # (n,)
        for p in (rnn.weight_ih, rnn.weight_hh, rnn.bias):  # one block per module
            assert (p.grad[~active] == 0).all() and (p.grad[active] != 0).any(-1).all()
        # gradient flows through the kept state of an inactive module
        assert (h0.grad[0, ~active].abs().sum(-1) > 0).all() and (c0.grad[0, ~active].abs().sum(-1) > 0).all()
    if path == "fused":
        return
    # the plain path computes the candidate (h~, c~) in one place: look at its gradient directly
    captured = {}

    def keep(module, inputs, output):
        for t in output:
            t.retain_grad()
        captured["out"] = output

    rnn.register_forward_hook(keep)
    state = random_state(rim, 16)
    _, new, trace = rim(torch.randn(16, 1, 5, dtype=F64), state, trace=True)
    ((new.h**2).sum() + (new.c**2).sum()).backward()
    h_tilde, c_tilde = captured["out"]
    active = trace.masks[:, 0]
    assert (h_tilde.grad[~active] == 0).all() and (c_tilde.grad[~active] == 0).all()
    assert (h_tilde.grad[active] != 0).any() and (c_tilde.grad[active] != 0).any()


def permute_modules(cell, perm):
    with torch.no_grad():
        for mod in cell.modules():
            if isinstance(mod, (GroupLinear, GroupLSTMCell, GroupGRUCell)):
                for p in mod.parameters(recurse=False):
                    p.copy_(p[perm])


def test_permuting_modules_permutes_outputs_and_masks(make_rim, random_state):
    rim = make_rim()
    state = random_state(rim, 8)
    x = torch.randn(8, 3, 2, 5, dtype=F64)
    out, final, trace = rim(x, state, trace=True)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permute_modules(rim.cell, perm)
    out_p, final_p, trace_p = rim(x, RIMState(state.h[:, perm], state.c[:, perm]), trace=True)
    torch.testing.assert_close(out_p.view(8, 3, 6, 8), out.view(8, 3, 6, 8)[:, :, perm], atol=1e-12, rtol=0)
    torch.testing.assert_close(final_p.c, final.c[:, perm], atol=1e-12, rtol=0)
    assert torch.equal(trace_p.masks, trace.masks[..., perm])
    expected = trace.comm_attn[..., perm, :][..., perm]  # (B, T, H, n, n): rows and columns
    torch.testing.assert_close(trace_p.comm_attn, expected, atol=1e-12, rtol=0)


def test_each_example_is_independent_of_the_batch(make_rim, random_state):
    rim = make_rim()
    state = random_state(rim, 6)
    x = torch.randn(6, 3, 5, dtype=F64, requires_grad=True)
    out, _, trace = rim(x, state, trace=True)
    for i in (0, 4):
        out_i, _, trace_i = rim(x[i : i + 1], RIMState(state.h[i : i + 1], state.c[i : i + 1]), trace=True)
        torch.testing.assert_close(out_i[0], out[i], atol=1e-12, rtol=0)
        assert torch.equal(trace_i.masks[0], trace.masks[i])
    (grad,) = torch.autograd.grad(out[2].sum(), x)
    assert (grad[[0, 1, 3, 4, 5]] == 0).all() and (grad[2] != 0).any()


def test_same_seed_same_numbers_including_dropout(make_rim):
    x = torch.randn(4, 3, 5)
    outs = []
    for _ in range(2):
        rim = make_rim(seed=3, dropout=0.2, dtype=torch.float32).train()
        torch.manual_seed(11)
        outs.append(rim(x)[0])
    assert torch.equal(outs[0], outs[1])
    ones = torch.ones(4, 3, 5)
    assert not torch.equal(
        make_rim(seed=4, dtype=torch.float32)(ones)[0], make_rim(seed=3, dtype=torch.float32)(ones)[0]
    )


def test_evaluation_mode_ignores_dropout_and_training_mode_uses_it(make_rim):
    x = torch.randn(2, 5, 1, 5, dtype=F64)
    with torch.no_grad():
        without = make_rim(dropout=0.0)(x)[0]
        rim = make_rim(dropout=0.5)  # the same weights (same seed), evaluation mode
        evaluated = rim(x)[0]
        torch.testing.assert_close(evaluated, without, atol=1e-12, rtol=0)
        rim.train()
        torch.manual_seed(3)
        a = rim(x)[0]
        torch.manual_seed(3)
        b = rim(x)[0]
    assert torch.equal(a, b), "same seed, same dropout"
    assert not torch.allclose(a, evaluated), "training mode must apply dropout"


def test_initial_state_is_zero_and_deterministic(make_rim):
    rim = make_rim()
    s1, s2 = rim.initial_state(3), rim.initial_state(3)
    assert (s1.h == 0).all() and (s1.c == 0).all() and s1.h.dtype == F64
    x = torch.ones(3, 2, 5, dtype=F64)
    assert torch.equal(rim(x)[0], rim(x, s2)[0])


@pytest.mark.parametrize(("rnn", "m"), [("lstm", 1), ("lstm", 2), ("gru", 1)])
def test_zero_state_ties_go_to_the_first_k_modules(make_rim, rnn, m):
    # From the zero state every query is zero, so at t=0 every module's null attention is exactly 1/(1+m)
    # (0.5 for one slot): all n tie and modules 0..k-1 win.
    rim = make_rim(rnn=rnn, **TIES)
    x = torch.randn(4, 5, m, 5, dtype=F64)
    _, _, trace = rim(x, trace=True)
    assert (trace.input_attn[:, 0, :, 0] == 1 / (1 + m)).all()  # uniform over [null, slots]
    assert trace.masks[:, 0].tolist() == [[True, True, True, False, False]] * 4
    if rnn == "lstm":
        loop, state = LoopRIMCell.from_cell(rim.cell), rim.initial_state(4)
        for t in range(5):
            _, state, info = loop(x[:, t], state)
            assert torch.equal(info.mask, trace.masks[:, t])


def test_a_partial_tie_is_broken_by_the_lower_index_as_the_oracle_does(make_rim, random_state):
    # Modules 1 and 3 get the same query weights and the same state: their null attention ties exactly.
    rim = make_rim(**TIES)
    q = rim.cell.input_attention.query.weight
    with torch.no_grad():
        q[3] = q[1]
    state = random_state(rim, 6)
    state.h[:, 3] = state.h[:, 1]
    x = torch.randn(6, 1, 1, 5, dtype=F64)
    _, _, trace = rim(x, state, trace=True)
    null = trace.input_attn[:, 0, :, 0]  # (B, n)
    assert torch.equal(null[:, 1], null[:, 3])
    masks = trace.masks[:, 0]
    _, _, info = LoopRIMCell.from_cell(rim.cell)(x[:, 0], state)
    assert torch.equal(info.mask, masks)
    for row, mask in zip(null.tolist(), masks.tolist(), strict=True):
        winners = sorted(range(5), key=lambda i: (row[i], i))[:3]  # least null first, then lower index
        assert mask == [i in winners for i in range(5)]
    # the tie decided something in some example: exactly one of the tied pair won there
    assert (masks[:, 1] != masks[:, 3]).any()
    assert not (masks[:, 3] & ~masks[:, 1]).any()  # and it was never the higher index alone


# The cell's own interface: one step, StepInfo, validation.


def _z(*shape):
    """Zeros in the test cells' dtype (float64)."""
    return torch.zeros(*shape, dtype=F64)


@pytest.mark.parametrize("m", [1, 3])
def test_the_cell_steps_once_like_the_oracle_and_reports_step_info(make_cell, m, random_state):
    cell = make_cell()
    state = random_state(cell, 7)
    x = torch.randn(7, m, 5, dtype=F64)
    (h, new, info), (h_loop, new_loop, info_loop) = cell(x, state), LoopRIMCell.from_cell(cell)(x, state)
    assert h.shape == (7, 6, 8) and torch.equal(h, new.h)
    assert info.mask.shape == (7, 6) and (info.mask.sum(-1) == 4).all()
    assert info.input_attn.shape == (7, 6, 1 + m) and info.comm_attn.shape == (7, 2, 6, 6)
    assert torch.equal(info.mask, info_loop.mask)
    for got, ref in (
        (h, h_loop),
        (new.c, new_loop.c),
        (info.input_attn, info_loop.input_attn),
        (info.comm_attn, info_loop.comm_attn),
    ):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda _: RIMCell(5, n_modules=4, k_active=5),
            r"k_active: expected an int in \[1, n_modules=4\], got 5",
        ),
        (lambda _: RIMCell(5, rnn="rnn"), r"rnn: expected 'lstm' or 'gru', got 'rnn'"),
        (lambda _: RIMCell(0), r"d_in: expected a positive int, got 0"),
        (
            lambda make_cell: make_cell()(torch.randn(2, 6, dtype=F64)),
            r"x: expected shape \(B, 5\) or \(B, m, 5\), got \(2, 6\)",
        ),
        (
            lambda make_cell: make_cell()(torch.randn(2, 5, dtype=F64), (_z(2, 6, 8),)),
            r"state: expected a RIMState",
        ),
        (
            lambda make_cell: make_cell()(torch.randn(2, 5, dtype=F64), RIMState(_z(2, 6, 9), _z(2, 6, 8))),
            r"state.h: expected shape \(2, 6, 8\), got \(2, 6, 9\)",
        ),
        (
            lambda make_cell: make_cell()(torch.randn(2, 5, dtype=F64), RIMState(_z(2, 6, 8), None)),
            r"state.c: expected a tensor .* got None",
        ),
        (
            lambda make_cell: make_cell("gru")(
                torch.randn(2, 5, dtype=F64), RIMState(_z(2, 6, 8), _z(2, 6, 8))
            ),
            r"state.c: expected None for rnn='gru'",
        ),
    ],
)
def test_cell_validation(make_cell, call, match):
    with pytest.raises(ValueError, match=match):
        call(make_cell)
