"""The fused loop (minirims.fast) computes the same function as the plain path and the loop oracle."""

from __future__ import annotations

import pytest
import torch

from minirims.cell import RIMState
from minirims.fast import should_fold
from minirims.model import RIM
from minirims.naive import LoopRIMCell

SMALL = dict(n_modules=5, k_active=3, d_hidden=7, input_d_k=6, comm_heads=2, comm_d_k=3, comm_d_v=4)


def make_rim(rnn="lstm", d_in=5, seed=0, dropout=0.0, **kw) -> RIM:
    torch.manual_seed(seed)
    return RIM(d_in, rnn=rnn, dropout=dropout, **{**SMALL, **kw}).double()


def random_state(rim: RIM, b: int, seed: int = 1) -> RIMState:
    g = torch.Generator().manual_seed(seed)
    shape = (b, rim.n_modules, rim.d_hidden)
    h = torch.randn(*shape, generator=g, dtype=torch.float64)
    c = torch.randn(*shape, generator=g, dtype=torch.float64) if rim.cell.rnn_type == "lstm" else None
    return RIMState(h, c)


def run(rim: RIM, x, state, fast: bool):
    """Outputs, final state, trace and parameter gradients of one forward + backward."""
    rim.fast = fast
    rim.zero_grad(set_to_none=True)
    out, final, trace = rim(x, state, trace=True)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).square().sum() + final.h.sum()
    if final.c is not None:
        loss = loss + final.c.square().sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in rim.named_parameters()}
    return out.detach(), final, trace, grads


CASES = [
    # (rnn, input slots m, extra RIM kwargs): covers folded / unfolded reads, 1 and 2 input heads
    ("lstm", 1, {}),
    ("lstm", 2, {"input_heads": 2, "input_d_v": 8}),
    ("lstm", 2, {"input_d_v": 4}),  # m * d_in = 10 > d_v = 4: values hoisted, read multiplied per step
    ("gru", 1, {}),
    ("gru", 2, {"input_d_v": 4}),
]


@pytest.mark.parametrize(("rnn", "m", "kw"), CASES)
def test_fast_equals_plain_float64_outputs_state_trace_and_grads(rnn, m, kw):
    rim = make_rim(rnn, **kw)
    x = torch.randn(3, 9, m, 5, dtype=torch.float64)
    state = random_state(rim, 3)
    out_p, fin_p, tr_p, g_p = run(rim, x, state, fast=False)
    out_f, fin_f, tr_f, g_f = run(rim, x, state, fast=True)
    assert torch.equal(tr_p.masks, tr_f.masks)
    assert tr_f.masks.shape == (3, 9, 5) and (tr_f.masks.sum(-1) == 3).all()
    for got, ref in (
        (out_f, out_p),
        (fin_f.h, fin_p.h),
        (tr_f.input_attn, tr_p.input_attn),
        (tr_f.comm_attn, tr_p.comm_attn),
    ):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    if rnn == "lstm":
        torch.testing.assert_close(fin_f.c, fin_p.c, atol=1e-6, rtol=0)
    else:
        assert fin_f.c is None and fin_p.c is None
    assert g_f.keys() == g_p.keys()
    for name in g_p:
        torch.testing.assert_close(g_f[name], g_p[name], atol=1e-6, rtol=0, msg=f"grad of {name}")


def test_fold_rule_and_both_reads_exercised():
    assert should_fold(make_rim().cell, 1)  # 5 <= 400
    assert not should_fold(make_rim(input_d_v=4).cell, 2)  # 10 > 4
    # the weight product is paid once per call: a one-step call at a wide input does not fold, a long one does
    wide = make_rim(d_in=256).cell
    assert should_fold(wide, 1) and should_fold(wide, 1, rows=10_000)
    assert not should_fold(wide, 1, rows=16)


def test_fast_equals_the_loop_oracle_from_a_zero_state():
    rim = make_rim()
    loop = LoopRIMCell.from_cell(rim.cell)
    x = torch.randn(4, 6, 1, 5, dtype=torch.float64)
    rim.fast = True
    out, final, trace = rim(x, trace=True)
    state = rim.initial_state(4)
    for t in range(6):
        h, state, info = loop(x[:, t], state)
        assert torch.equal(info.mask, trace.masks[:, t])
        torch.testing.assert_close(out[:, t], h.reshape(4, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(final.c, state.c, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("rnn", "m"), [("lstm", 1), ("lstm", 2), ("gru", 1)])
def test_zero_state_ties_go_to_the_first_k_modules_in_every_path(rnn, m):
    # From the zero state every query is zero, so at t=0 every module's null attention is exactly 1/(1+m)
    # (0.5 for one slot): all n tie and modules 0..k-1 win.
    rim = make_rim(rnn)
    x = torch.randn(4, 5, m, 5, dtype=torch.float64)
    traces = {}
    for fast in (False, True):
        rim.fast = fast
        _, _, traces[fast] = rim(x, trace=True)
        assert (traces[fast].input_attn[:, 0, :, 0] == 1 / (1 + m)).all()  # uniform over [null, slots]
        assert traces[fast].masks[:, 0].tolist() == [[True, True, True, False, False]] * 4
    assert torch.equal(traces[False].masks, traces[True].masks)
    if rnn == "lstm":
        loop, state = LoopRIMCell.from_cell(rim.cell), rim.initial_state(4)
        for t in range(5):
            _, state, info = loop(x[:, t], state)
            assert torch.equal(info.mask, traces[True].masks[:, t])


def test_a_partial_tie_is_broken_the_same_way_by_fast_plain_and_the_oracle():
    # Modules 1 and 3 get the same query weights and the same state: their null attention ties exactly.
    rim = make_rim()
    q = rim.cell.input_attention.query.weight
    with torch.no_grad():
        q[3] = q[1]
    state = random_state(rim, 6)
    state.h[:, 3] = state.h[:, 1]
    x = torch.randn(6, 1, 1, 5, dtype=torch.float64)
    traces = {}
    for fast in (False, True):
        rim.fast = fast
        _, _, traces[fast] = rim(x, state, trace=True)
    null = traces[True].input_attn[:, 0, :, 0]  # (B, n)
    assert torch.equal(null[:, 1], null[:, 3])
    masks = traces[True].masks[:, 0]
    assert torch.equal(traces[False].masks[:, 0], masks)
    _, _, info = LoopRIMCell.from_cell(rim.cell)(x[:, 0], state)
    assert torch.equal(info.mask, masks)
    for row, mask in zip(null.tolist(), masks.tolist(), strict=True):
        winners = sorted(range(5), key=lambda i: (row[i], i))[:3]  # least null first, then lower index
        assert mask == [i in winners for i in range(5)]
    # the tie decided something in some example: exactly one of the tied pair won there
    assert (masks[:, 1] != masks[:, 3]).any()
    assert not (masks[:, 3] & ~masks[:, 1]).any()  # and it was never the higher index alone


def test_inactive_modules_keep_their_state_bit_for_bit_in_the_fast_path():
    rim = make_rim()
    x = torch.randn(4, 7, 1, 5, dtype=torch.float64)
    out, _, trace = rim(x, random_state(rim, 4), trace=True)
    h = out.view(4, 7, 5, 7)
    kept = ~trace.masks[:, 1:]  # (B, T-1, n): inactive at step t, so h_t == h_{t-1}
    assert kept.any()
    assert torch.equal(h[:, 1:][kept], h[:, :-1][kept])
    assert (h[:, 1:][~kept] != h[:, :-1][~kept]).any(-1).all()


def test_eval_mode_ignores_dropout_in_both_paths_and_training_mode_uses_it():
    rim = make_rim(dropout=0.5).eval()
    x = torch.randn(2, 5, 1, 5, dtype=torch.float64)
    with torch.no_grad():
        rim.fast = False
        plain = rim(x)[0]
        rim.fast = True
        fast = rim(x)[0]
        torch.testing.assert_close(fast, plain, atol=1e-6, rtol=0)
        rim.train()
        torch.manual_seed(3)
        a = rim(x)[0]
        torch.manual_seed(3)
        b = rim(x)[0]
    assert torch.equal(a, b), "same seed, same dropout"
    assert not torch.allclose(a, fast), "training mode must apply dropout"


def test_fast_path_float32_matches_plain_and_is_default():
    torch.manual_seed(0)
    rim = RIM(5, **SMALL, dropout=0.0)
    assert rim.fast and not rim.compile_step
    x = torch.randn(3, 8, 5)
    fast = rim(x)[0]
    rim.fast = False
    torch.testing.assert_close(fast, rim(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [1, None, "yes"])
def test_switches_must_be_bools(bad):
    with pytest.raises(ValueError, match=r"fast: expected True or False"):
        RIM(5, **SMALL, fast=bad)
    with pytest.raises(ValueError, match=r"compile_step: expected True or False"):
        RIM(5, **SMALL, compile_step=bad)
    if bad is not None:
        with pytest.raises(ValueError, match=r"fold: expected True, False or None"):
            RIM(5, **SMALL, fold=bad)


def test_forcing_the_fold_on_or_off_changes_nothing_but_speed():
    rim = make_rim()
    x = torch.randn(2, 6, 1, 5, dtype=torch.float64)
    outs = []
    for fold in (True, False):
        rim.fold = fold
        outs.append(rim(x)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-10, rtol=0)


def test_compiled_step_equals_eager(one_thread):
    """torch.compile (inductor, CPU) of the fused loop: same outputs and gradients as eager (float32).

    Traced, it steps one compiled step at a time; untraced, in compiled chunks of COMPILE_UNROLL steps with
    the rest (T = 5: one chunk of 4, one step) through the single compiled step.
    """
    from minirims.fast import COMPILE_UNROLL

    assert COMPILE_UNROLL == 4
    torch.manual_seed(0)
    rim = RIM(
        4, n_modules=4, k_active=2, d_hidden=6, input_d_k=4, comm_heads=2, comm_d_k=3, comm_d_v=3, dropout=0.0
    )
    x = torch.randn(2, 5, 4)
    for trace in (True, False):
        results = []
        for compiled in (False, True):
            rim.compile_step = compiled
            rim.zero_grad(set_to_none=True)
            out, state, tr = rim(x, trace=trace)
            (out.square().sum() + state.c.sum()).backward()
            masks = tr.masks if trace else None
            results.append((out.detach(), masks, [p.grad.clone() for p in rim.parameters()]))
        (o1, m1, g1), (o2, m2, g2) = results
        if trace:
            assert torch.equal(m1, m2)
        torch.testing.assert_close(o2, o1, atol=1e-5, rtol=1e-4)
        for a, b in zip(g2, g1, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
