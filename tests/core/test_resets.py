"""RIM(x, resets=...): the state goes back to zeros where a new sequence starts (an episode, in RL)."""

from __future__ import annotations

import pytest
import torch

from minirims.model import RIM

SMALL = dict(n_modules=5, k_active=3, d_hidden=7, input_d_k=6, comm_heads=2, comm_d_k=3, comm_d_v=4)


def rim(rnn: str = "lstm", **kw) -> RIM:
    torch.manual_seed(0)
    return RIM(5, rnn=rnn, dropout=0.0, **{**SMALL, **kw}).double()


def resets_at(b: int, t_len: int, where: dict[int, int]) -> torch.Tensor:
    r = torch.zeros(b, t_len, dtype=torch.bool)
    for example, step in where.items():
        r[example, step] = True
    return r


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False])
def test_a_reset_continues_exactly_as_a_fresh_sequence(rnn, fast, random_state):
    model = rim(rnn)
    model.fast = fast
    x = torch.randn(3, 9, 5, dtype=torch.float64)
    state = random_state(model, 3)
    out, final, _ = model(x, state, resets=resets_at(3, 9, {0: 4, 2: 0}))
    fresh, fresh_final, _ = model(x[0:1, 4:])  # example 0 restarts at step 4
    torch.testing.assert_close(out[0:1, 4:], fresh, atol=1e-12, rtol=0)
    torch.testing.assert_close(final.h[0:1], fresh_final.h, atol=1e-12, rtol=0)
    torch.testing.assert_close(out[2:3], model(x[2:3])[0], atol=1e-12, rtol=0)  # restarts at step 0
    torch.testing.assert_close(
        out[1:2], model(x[1:2], type(state)(*(s[1:2] if s is not None else None for s in state)))[0]
    )
    no_reset = model(x, state, resets=torch.zeros(3, 9, dtype=torch.bool))[0]
    torch.testing.assert_close(no_reset, model(x, state)[0], atol=0, rtol=0)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_fast_and_plain_agree_with_resets_outputs_and_gradients(rnn, random_state):
    model = rim(rnn)
    x = torch.randn(4, 7, 5, dtype=torch.float64)
    state = random_state(model, 4)
    resets = resets_at(4, 7, {0: 2, 1: 6, 3: 3})
    results = []
    for fast in (False, True):
        model.fast = fast
        model.zero_grad(set_to_none=True)
        out, final, trace = model(x, state, trace=True, resets=resets)
        (out.square().sum() + final.h.sum()).backward()
        results.append((out.detach(), trace.masks, {n: p.grad for n, p in model.named_parameters()}))
    (o1, m1, g1), (o2, m2, g2) = results
    assert torch.equal(m1, m2)
    torch.testing.assert_close(o2, o1, atol=1e-9, rtol=0)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-9, rtol=0, msg=f"grad of {name}")


def test_resets_and_ablations_through_the_compiled_steps(one_thread, monkeypatch):
    """One compile (inductor's is the slow part, so aot_eager) covers the resets and both ablations."""
    from minirims import fast

    pairs = (("step", fast._step), ("steps", fast._steps))
    monkeypatch.setattr(
        fast, "_COMPILED", {n: torch.compile(f, backend="aot_eager", dynamic=False) for n, f in pairs}
    )
    torch.manual_seed(0)
    kw = dict(n_modules=4, k_active=2, d_hidden=6, input_d_k=4, dropout=0.0)
    model = RIM(4, **kw, communicate=False, selection="random")
    x = torch.randn(2, 5, 4)  # one chunk of COMPILE_UNROLL = 4 steps, then one step
    resets = resets_at(2, 5, {0: 2, 1: 4})
    torch.manual_seed(3)  # the random selection's draws
    eager = model(x, resets=resets)[0]
    model.compile_step = True
    torch.manual_seed(3)
    torch.testing.assert_close(model(x, resets=resets)[0], eager, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("resets", "match"),
    [
        (torch.zeros(2, 4), r"^resets: expected dtype torch.bool, got torch.float32$"),
        (
            torch.zeros(2, 3, dtype=torch.bool),
            r"^resets: expected a shape broadcastable to \(2, 4\), got \(2, 3\)$",
        ),
        (torch.zeros(1, 4, dtype=torch.bool), r"^resets: expected shape \(2, 4\), got \(1, 4\)$"),
        ([[True] * 4] * 2, r"^resets: expected a bool torch.Tensor, got list$"),
    ],
)
def test_bad_resets_are_named(resets, match):
    with pytest.raises(ValueError, match=match):
        rim().float()(torch.randn(2, 4, 5), resets=resets)
