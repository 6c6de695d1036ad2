"""Top-down competition: null slot, top-k selection, communication only for active modules."""

from __future__ import annotations

import math

import pytest
import torch

from minirims.communication import CommunicationAttention
from minirims.competition import InputAttention, null_attention, select_topk, topk_mask


def make(m_heads=1, n=6, k=4, d_in=5, d_h=8, seed=0):
    torch.manual_seed(seed)
    return InputAttention(d_in, n, d_h, k, d_k=4, d_v=3, n_heads=m_heads, dropout=0.0)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("m", [None, 1, 3])
def test_exactly_k_active_and_they_attend_least_to_null(heads, m):
    att = make(heads)
    x = torch.randn(16, 5) if m is None else torch.randn(16, m, 5)
    out = att(x, torch.randn(16, 6, 8))
    assert out.read.shape == (16, 6, heads * 3)
    assert out.attn.shape == (16, 6, 1 + (m or 1))
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(16, 6))
    assert (out.mask.sum(-1) == 4).all()
    null = out.attn[..., 0]
    # every active module attends less to the null slot than every inactive one
    worst_active = null.masked_fill(~out.mask, -math.inf).max(-1).values
    best_inactive = null.masked_fill(out.mask, math.inf).min(-1).values
    assert (worst_active < best_inactive).all()


def test_null_score_is_exactly_zero_and_null_key_value_are_zero():
    att = make()
    x = torch.randn(4, 2, 5)
    keys, values = att.project_inputs(x)
    assert (keys[:, :, 0] == 0).all() and (values[:, :, 0] == 0).all()
    q = att.query(torch.randn(4, 6, 8))
    scores = q.unsqueeze(2) @ keys[:, 0].transpose(-2, -1).unsqueeze(1)  # (B, n, 1, 1+m)
    assert (scores[..., 0] == 0).all()


def test_single_slot_single_head_equals_topk_of_raw_input_score():
    att = make(1)
    x, h = torch.randn(32, 5), torch.randn(32, 6, 8)
    out = att(x, h)
    keys, _ = att.project_inputs(x.unsqueeze(1))
    input_score = (att.query(h) * keys[:, 0, 1].unsqueeze(1)).sum(-1)  # (B, n), the null score is 0
    assert torch.equal(out.mask, topk_mask(input_score, 4))


def test_selection_is_not_differentiated_but_read_is():
    att = make()
    x, h = torch.randn(3, 5, requires_grad=True), torch.randn(3, 6, 8, requires_grad=True)
    out = att(x, h)
    assert not out.mask.requires_grad
    out.read.sum().backward()
    assert x.grad.abs().sum() > 0 and h.grad.abs().sum() > 0


def test_topk_mask_and_null_attention():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    assert topk_mask(scores, 2).tolist() == [[False, True, True, False], [True, True, False, False]]
    assert topk_mask(scores, 4).all()
    attn = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]])
    assert torch.equal(null_attention(attn), torch.tensor([[0.2, 0.6]]))


def _by_index_rule(row: list[float], k: int) -> list[bool]:
    """The documented rule, written out: rank by score (descending), then by module index (ascending)."""
    winners = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
    return [i in winners for i in range(len(row))]


def test_exact_ties_go_to_the_lower_module_index():
    # all six tie (the zero initial state's null attention is exactly 0.5 everywhere): modules 0..k-1 win
    for k in range(1, 7):
        assert topk_mask(torch.full((3, 6), -0.5), k).tolist() == [[i < k for i in range(6)]] * 3
    # partial ties: among the tied values, the lower indices win; a larger score still beats them all
    scores = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0, 0.0], [1.0, 0.5, 1.0, 0.5, 1.0, 0.5]])
    assert topk_mask(scores, 3).tolist() == [
        [True, True, False, True, False, False],
        [True, False, True, False, True, False],
    ]
    assert topk_mask(scores, 4).tolist() == [
        [True, True, True, True, False, False],
        [True, True, True, False, True, False],
    ]


def test_ties_follow_the_rule_on_many_random_tied_rows():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (200, 40), generator=gen).double() / 2  # values in {0, 0.5, 1}: many ties
    for k in (1, 7, 20, 39, 40):
        mask = topk_mask(scores, k)
        assert mask.tolist() == [_by_index_rule(row, k) for row in scores.tolist()]
        # the unchecked variant the fused loop uses picks the same, for any leading dims
        assert torch.equal(select_topk(scores.view(10, 20, 40), k), mask.view(10, 20, 40))


def test_zero_state_selects_the_first_k_modules():
    inp = make(n=6, k=4)
    x = torch.randn(5, 3, 5)
    out = inp(x, torch.zeros(5, 6, 8))
    assert (out.attn[..., 0] == out.attn[0, 0, 0]).all()  # an exact tie: every query is zero
    assert out.mask.tolist() == [[True, True, True, True, False, False]] * 5


def test_communication_changes_active_only_bit_for_bit():
    torch.manual_seed(0)
    comm = CommunicationAttention(6, 8, n_heads=2, d_k=4, d_v=4, dropout=0.0)
    h = torch.randn(5, 6, 8)
    mask = topk_mask(torch.randn(5, 6), 3)
    out, attn = comm(h, mask)
    assert attn.shape == (5, 2, 6, 6)
    torch.testing.assert_close(attn.sum(-1), torch.ones(5, 2, 6))
    assert torch.equal(out[~mask], h[~mask])
    assert (out[mask] != h[mask]).any(-1).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: topk_mask(torch.randn(2, 4), 5),
            r"k: expected an int in \[1, 4\] \(the number of modules\), got 5",
        ),
        (lambda: topk_mask(torch.randn(2, 4), 0), r"k: expected an int in \[1, 4\]"),
        (lambda: topk_mask(torch.randn(4), 1), r"scores: expected a 2-d tensor"),
        (lambda: null_attention(torch.randn(2, 3, 1)), r"attn: expected at least 2 slots"),
        (lambda: InputAttention(5, 6, 8, 7), r"k_active: expected an int in \[1, n_modules=6\], got 7"),
        (lambda: InputAttention(5, 6, 8, 0), r"k_active: expected an int in \[1, n_modules=6\], got 0"),
        (
            lambda: make()(torch.randn(2, 4), torch.randn(2, 6, 8)),
            r"x: expected shape \(B, 5\) or \(B, m, 5\), got \(2, 4\)",
        ),
        (
            lambda: make()(torch.randn(2, 5), torch.randn(2, 5, 8)),
            r"h: expected shape \(2, 6, 8\), got \(2, 5, 8\)",
        ),
        (
            lambda: make()(torch.randn(3, 5), torch.randn(2, 6, 8)),
            r"h: expected shape \(3, 6, 8\), got \(2, 6, 8\)",
        ),
        (lambda: InputAttention(5, 6, 8, 2, dropout=1.0), r"dropout: expected a float in \[0, 1\), got 1.0"),
        (
            lambda: CommunicationAttention(6, 8)(torch.randn(2, 6, 8), torch.ones(2, 6)),
            r"mask: expected dtype torch.bool",
        ),
        (
            lambda: CommunicationAttention(6, 8)(torch.randn(2, 6, 8), torch.ones(2, 5, dtype=torch.bool)),
            r"mask: expected shape \(2, 6\), got \(2, 5\)",
        ),
    ],
)
def test_competition_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
