"""The ablation switches of the RIM cell: ``communicate=False`` and ``selection="random"``.

Each removes one mechanism and nothing else; both paths (plain and fused, eager and compiled) compute the
same ablated function, and the switches are validated like every other argument.
"""

from __future__ import annotations

import pytest
import torch

from minirims import RIMCell
from minirims.model import RIM
from minirims.naive import LoopRIMCell

SMALL = dict(n_modules=5, k_active=3, d_hidden=7, input_d_k=6, comm_heads=2, comm_d_k=3, comm_d_v=4)
ABLATIONS = [
    {"communicate": False},
    {"selection": "random"},
    {"communicate": False, "selection": "random"},
]


def ablated(rnn: str = "lstm", d_in: int = 5, **kw) -> RIM:
    torch.manual_seed(0)
    return RIM(d_in, rnn=rnn, dropout=0.0, **{**SMALL, **kw}).double()


def forward_backward(rim: RIM, x: torch.Tensor, state, fast: bool, seed: int = 7):
    """Outputs, final h, trace and gradients; the global generator seeded first (the random selection)."""
    rim.fast = fast
    rim.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out, final, trace = rim(x, state, trace=True)
    (out.square().sum() + final.h.sum()).backward()
    grads = {name: p.grad for name, p in rim.named_parameters() if p.grad is not None}
    return out.detach(), final.h.detach(), trace, grads


@pytest.mark.parametrize("kw", ABLATIONS, ids=["nocomm", "random", "both"])
@pytest.mark.parametrize(
    ("rnn", "m", "extra"), [("lstm", 1, {}), ("lstm", 2, {"input_d_v": 4}), ("gru", 2, {})]
)
def test_fast_equals_plain_for_every_ablation(kw, rnn, m, extra, random_state):
    rim = ablated(rnn, **kw, **extra)
    x = torch.randn(3, 8, m, 5, dtype=torch.float64)
    state = random_state(rim, 3)
    out_p, h_p, tr_p, g_p = forward_backward(rim, x, state, fast=False)
    out_f, h_f, tr_f, g_f = forward_backward(rim, x, state, fast=True)
    assert torch.equal(tr_p.masks, tr_f.masks)
    assert (tr_f.masks.sum(-1) == 3).all()
    for got, ref in (
        (out_f, out_p),
        (h_f, h_p),
        (tr_f.input_attn, tr_p.input_attn),
        (tr_f.comm_attn, tr_p.comm_attn),
    ):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    assert g_f.keys() == g_p.keys() and g_p
    for name in g_p:
        torch.testing.assert_close(g_f[name], g_p[name], atol=1e-6, rtol=0, msg=f"grad of {name}")


def test_without_communication_active_modules_take_their_candidate_and_no_comm_parameters(random_state):
    full, cut = RIMCell(5, **SMALL).double().eval(), RIMCell(5, communicate=False, **SMALL).double().eval()
    assert cut.communication is None
    assert not any(name.startswith("communication.") for name, _ in cut.named_parameters())
    n_comm = sum(p.numel() for p in full.communication.parameters())
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in cut.parameters()) == n_comm
    cut.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("communication.")})
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    state = random_state(cut, 4)
    h, new, info = cut(x, state)
    comp = cut.input_attention(x, state.h)  # the same competition as the full cell's
    h_tilde, c_tilde = cut.rnn(comp.read, (state.h, state.c))
    active = comp.mask.unsqueeze(-1)
    torch.testing.assert_close(h, torch.where(active, h_tilde, state.h), atol=0, rtol=0)
    torch.testing.assert_close(new.c, torch.where(active, c_tilde, state.c), atol=0, rtol=0)
    assert torch.equal(info.mask, full(x, state)[2].mask)  # communication does not change this step's choice
    assert info.comm_attn.shape == (4, 1, 5, 5) and not info.comm_attn.any()
    assert not torch.allclose(h, full(x, state)[0])  # communication did change the state


def test_random_selection_ignores_the_input_and_follows_the_seed():
    rim = ablated(selection="random").eval()
    a, b = torch.randn(2, 2, 30, 5, dtype=torch.float64)
    masks = []
    for x, seed in ((a, 1), (b, 1), (a, 2)):
        torch.manual_seed(seed)
        masks.append(rim(x, trace=True)[2].masks)
    assert (masks[0].sum(-1) == 3).all()
    assert torch.equal(masks[0], masks[1])  # other inputs, the same draws: the same modules
    assert not torch.equal(masks[0], masks[2])  # another seed: other modules
    # every module is chosen, at a rate near k / n = 0.6
    assert masks[0].double().mean((0, 1)).sub(0.6).abs().max() < 0.2
    attention = ablated().eval()
    torch.manual_seed(1)
    assert not torch.equal(
        attention(a, trace=True)[2].masks, attention(b, trace=True)[2].masks
    )  # the RIM: it does


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"communicate": "no"}, "communicate: expected True or False, got 'no'"),
        ({"communicate": 0}, "communicate: expected True or False, got 0"),
        ({"selection": "topk"}, "selection: expected one of 'attention', 'random', got 'topk'"),
        ({"selection": None}, "selection: expected one of 'attention', 'random', got None"),
    ],
)
def test_switches_are_validated(kw, message):
    with pytest.raises(ValueError, match=message):
        RIMCell(5, **kw)
    with pytest.raises(ValueError, match=message):
        RIM(5, **kw)


@pytest.mark.parametrize("kw", ABLATIONS, ids=["nocomm", "random", "both"])
def test_the_loop_oracle_refuses_an_ablation(kw):
    with pytest.raises(ValueError, match="cell: expected the RIM itself"):
        LoopRIMCell(RIMCell(5, **kw))
