"""Multi-head attention against PyTorch's own implementations as independent oracles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minirims.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads


def test_split_merge_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)
    s = split_heads(x, 4)
    assert s.shape == (2, 4, 3, 3)
    # head h holds features h*d:(h+1)*d
    torch.testing.assert_close(s[:, 1], x[..., 3:6])
    torch.testing.assert_close(merge_heads(s), x)


@pytest.mark.parametrize("with_mask", [False, True])
def test_sdpa_matches_torch(with_mask):
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(2, 3, 5, 8, generator=g),
        torch.randn(2, 3, 7, 8, generator=g),
        torch.randn(2, 3, 7, 6, generator=g),
    )
    mask = torch.rand(2, 3, 5, 7, generator=g) > 0.3 if with_mask else None
    if mask is not None:
        mask[..., 0] = True  # no fully masked rows for the oracle
    out, w = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    if mask is not None:
        assert (w[~mask] == 0).all()


def test_sdpa_fully_masked_row_reads_zeros():
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 5)
    mask = torch.tensor([[[True, False, True], [False, False, False]]])
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert (out[0, 1] == 0).all() and (w[0, 1] == 0).all()


def test_multihead_matches_nn_multiheadattention():
    torch.manual_seed(0)
    e, h = 16, 4
    mine = MultiHeadAttention(e, e, n_heads=h, d_k=e // h, d_v=e // h, d_out=e).eval()
    ref = nn.MultiheadAttention(e, h, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mine.query.weight, mine.key.weight, mine.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([mine.query.bias, mine.key.bias, mine.value.bias]))
        ref.out_proj.weight.copy_(mine.out.weight)
        ref.out_proj.bias.copy_(mine.out.bias)
    query, kv = torch.randn(3, 5, e), torch.randn(3, 7, e)
    out, w = mine(query, kv)
    ref_out, ref_w = ref(query, kv, kv, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    assert out.shape == (3, 5, e) and w.shape == (3, h, 5, 7)


def test_multihead_different_sizes_and_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(5, 9, n_heads=2, d_k=3, d_v=4, dropout=0.5)
    q, kv = torch.randn(2, 3, 5), torch.randn(2, 6, 9)
    assert mha(q, kv)[0].shape == (2, 3, 8)
    mha.eval()
    torch.testing.assert_close(mha(q, kv)[0], mha(q, kv)[0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: split_heads(torch.randn(2, 3, 10), 4),
            r"n_heads: expected a divisor of the feature size 10, got 4",
        ),
        (lambda: split_heads(torch.randn(2, 10), 2), r"x: expected a 3-d tensor .* got shape \(2, 10\)"),
        (lambda: split_heads(torch.randn(2, 3, 8), 0), r"n_heads: expected a positive int, got 0"),
        (lambda: merge_heads(torch.randn(2, 3, 4)), r"x: expected a 4-d tensor"),
        (
            lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 5), torch.randn(3, 2)),
            r"k: expected last dim d_k=4 \(from q\), got 5",
        ),
        (
            lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 4), torch.randn(2, 2)),
            r"v: expected 3 positions \(from k\), got 2",
        ),
        (
            lambda: scaled_dot_product_attention(
                torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2), mask=torch.ones(2, 3)
            ),
            r"mask: expected dtype torch.bool",
        ),
        (
            lambda: scaled_dot_product_attention(
                torch.randn(2, 4),
                torch.randn(3, 4),
                torch.randn(3, 2),
                mask=torch.ones(4, 3, dtype=torch.bool),
            ),
            r"mask: expected a shape broadcastable to \(2, 3\), got \(4, 3\)",
        ),
        (
            lambda: scaled_dot_product_attention(
                torch.ones(2, 4, dtype=torch.long), torch.randn(3, 4), torch.randn(3, 2)
            ),
            r"q: expected a floating-point tensor",
        ),
        (
            lambda: scaled_dot_product_attention(
                torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2), dropout_p=1.5
            ),
            r"dropout_p: expected a float in \[0, 1\)",
        ),
        (
            lambda: MultiHeadAttention(4, 4, 2, 2, 2)(torch.randn(2, 3, 5), torch.randn(2, 3, 4)),
            r"query: expected shape \(B, Lq, 4\), got \(2, 3, 5\)",
        ),
        (
            lambda: MultiHeadAttention(4, 4, 2, 2, 2)(torch.randn(2, 3, 4), torch.randn(3, 3, 4)),
            r"key_value: expected shape \(2, Lk, 4\), got \(3, 3, 4\)",
        ),
        (lambda: MultiHeadAttention(4, 4, 0, 2, 2), r"n_heads: expected a positive int, got 0"),
    ],
)
def test_attention_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
