"""The fused loop (minirims.fast) against the plain path: the same function, outputs, trace and gradients.

The behaviours of the RIM are tested on both paths by the other test files (``conftest.py``'s ``make_rim``);
this file compares the two paths with each other and tests what only the fused loop has: the fold rule,
``torch.compile`` of its steps, the switches.
"""

from __future__ import annotations

import pytest
import torch

from minirims.fast import run_fast, should_fold
from minirims.model import RIM

SMALL = dict(n_modules=5, k_active=3, d_hidden=7, input_d_k=6, comm_heads=2, comm_d_k=3, comm_d_v=4)


def rim_with(rnn="lstm", d_in=5, seed=0, dropout=0.0, **kw) -> RIM:
    """A float64 RIM in training mode (dropout 0), switched between the paths by ``rim.fast``."""
    torch.manual_seed(seed)
    return RIM(d_in, rnn=rnn, dropout=dropout, **{**SMALL, **kw}).double()


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
@pytest.mark.parametrize("start", ["random", "zero"])  # from the zero state every module ties at t=0
def test_fast_equals_plain_float64_outputs_state_trace_and_grads(rnn, m, kw, start, random_state):
    rim = rim_with(rnn, **kw)
    x = torch.randn(3, 9, m, 5, dtype=torch.float64)
    state = random_state(rim, 3) if start == "random" else rim.initial_state(3)
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
    assert should_fold(rim_with().cell, 1)  # 5 <= 400
    assert not should_fold(rim_with(input_d_v=4).cell, 2)  # 10 > 4
    # the weight product is paid once per call: a one-step call at a wide input does not fold, a long one does
    wide = rim_with(d_in=256).cell
    assert should_fold(wide, 1) and should_fold(wide, 1, rows=10_000)
    assert not should_fold(wide, 1, rows=16)


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


def test_the_path_fixture_builds_each_path(make_rim, path):
    assert make_rim().fast == (path == "fused")


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_forcing_the_fold_on_or_off_changes_nothing_but_speed(rnn, random_state):
    rim = rim_with(rnn)
    x = torch.randn(2, 6, 1, 5, dtype=torch.float64)
    state = random_state(rim, 2)
    runs = [run_fast(rim.cell, x, state, trace=True, fold=fold) for fold in (True, False)]
    (out_a, final_a, trace_a), (out_b, final_b, trace_b) = runs
    torch.testing.assert_close(out_a, out_b, atol=1e-10, rtol=0)
    torch.testing.assert_close(final_a.h, final_b.h, atol=1e-10, rtol=0)
    assert torch.equal(trace_a[0], trace_b[0])


def _eager_and_compiled(rim: RIM, x: torch.Tensor, trace: bool) -> list:
    """Outputs, masks and gradients of ``rim`` on ``x``, eager then compiled."""
    results = []
    for compiled in (False, True):
        rim.compile_step = compiled
        rim.zero_grad(set_to_none=True)
        out, state, tr = rim(x, trace=trace)
        (out.square().sum() + state.c.sum()).backward()
        results.append(
            (out.detach(), tr.masks if trace else None, [p.grad.clone() for p in rim.parameters()])
        )
    return results


def _assert_same(results: list) -> None:
    (o1, m1, g1), (o2, m2, g2) = results
    if m1 is not None:
        assert torch.equal(m1, m2)
    torch.testing.assert_close(o2, o1, atol=1e-5, rtol=1e-4)
    for a, b in zip(g2, g1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _small_rim() -> RIM:
    torch.manual_seed(0)
    return RIM(
        4, n_modules=4, k_active=2, d_hidden=6, input_d_k=4, comm_heads=2, comm_d_k=3, comm_d_v=3, dropout=0.0
    )


def test_compiled_step_equals_eager(one_thread):
    """torch.compile with inductor (CPU) of one untraced step (T = 1: no chunk, one compiled step): the same
    outputs and gradients as eager (float32). One small graph, since inductor's cold compile is the slow part;
    every path (the chunk of COMPILE_UNROLL steps, the traced step) is checked through aot_eager below."""
    _assert_same(_eager_and_compiled(_small_rim(), torch.randn(2, 1, 4), trace=False))


def test_every_compiled_path_equals_eager(one_thread, monkeypatch):
    """Traced, the loop steps one compiled step at a time; untraced, in chunks of COMPILE_UNROLL steps with
    the rest (T = 5: one chunk of 4, then one step) through the single step. Each path is captured by
    torch.compile (dynamo and AOT autograd: the ``aot_eager`` backend, without inductor's code generation)
    and computes what eager does."""
    from minirims import fast

    assert fast.COMPILE_UNROLL == 4  # T = 5 below: one chunk, then one step
    pairs = (("step", fast._step), ("steps", fast._steps))
    compiled = {name: torch.compile(fn, backend="aot_eager", dynamic=False) for name, fn in pairs}
    monkeypatch.setattr(fast, "_COMPILED", compiled)
    rim, x = _small_rim(), torch.randn(2, 5, 4)
    for trace in (True, False):
        _assert_same(_eager_and_compiled(rim, x, trace))
