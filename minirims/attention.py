"""Notebook 01 (attention) builds this module.

Multi-head key-value attention, written out.

A query asks "what do I need?", keys say "what do I hold?", and values are what gets read. With queries
``Q (Lq, d_k)``, keys ``K (Lk, d_k)`` and values ``V (Lk, d_v)``::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Multi-head attention projects the inputs into ``H`` smaller query/key/value spaces, attends in each one
independently ("heads"), concatenates the ``H`` reads and projects them back. Both RIM attentions -- the
input attention in :mod:`minirims.competition` and the communication in :mod:`minirims.communication` --
are built from the pieces here.

Shapes: B batch, H heads, Lq query positions, Lk key positions, d_k key size, d_v value size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minirims._validate import check_mask, check_positive_int, check_probability, check_shape, check_tensor

__all__ = ["split_heads", "merge_heads", "scaled_dot_product_attention", "MultiHeadAttention"]


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """Split the feature dimension into heads.

    Args:
        x: (B, L, H*d) features.
        n_heads: H, which must divide the last dimension.

    Returns:
        (B, H, L, d): head ``h`` holds features ``h*d : (h+1)*d``.
    """
    check_positive_int("n_heads", n_heads)
    check_shape("x", x, ("B", "L", "H*d"))
    if x.shape[-1] % n_heads:
        raise ValueError(f"n_heads: expected a divisor of the feature size {x.shape[-1]}, got {n_heads}")
    b, length, features = x.shape
    return x.reshape(b, length, n_heads, features // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """Inverse of :func:`split_heads`: (B, H, L, d) -> (B, L, H*d)."""
    check_shape("x", x, ("B", "H", "L", "d"))
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, returning the read and the attention weights.

    Args:
        q: (..., Lq, d_k) queries.
        k: (..., Lk, d_k) keys.
        v: (..., Lk, d_v) values.
        mask: optional bool tensor broadcastable to (..., Lq, Lk); True where a query may attend. A query row
            with nothing to attend to reads zeros (its weights are all 0) instead of NaN.
        dropout_p: dropout on the attention weights (only when ``training``).
        training: whether dropout is active.

    Returns:
        out (..., Lq, d_v) and weights (..., Lq, Lk) (before dropout; rows sum to 1).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name}: expected at least 2 dims (..., L, d), got shape {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"k: expected last dim d_k={q.shape[-1]} (from q), got {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"v: expected {k.shape[-2]} positions (from k), got {v.shape[-2]}")
    dropout_p = check_probability("dropout_p", dropout_p)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        check_mask("mask", mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # fully masked rows
    else:
        weights = torch.softmax(scores, dim=-1)
    dropped = F.dropout(weights, p=dropout_p, training=training) if dropout_p > 0 else weights
    return dropped @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head key-value attention with separate query and key/value inputs.

    Args:
        d_query: feature size of the query input.
        d_key_value: feature size of the key/value input.
        n_heads: H.
        d_k: key (and query) size per head.
        d_v: value size per head.
        d_out: output size (default ``n_heads * d_v``); the H reads are concatenated and projected to it.
        bias: whether the projections have a bias.
        dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        d_query: int,
        d_key_value: int,
        n_heads: int,
        d_k: int,
        d_v: int,
        d_out: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, val in (("d_query", d_query), ("d_key_value", d_key_value), ("n_heads", n_heads)):
            check_positive_int(name, val)
        check_positive_int("d_k", d_k)
        check_positive_int("d_v", d_v)
        d_out = n_heads * d_v if d_out is None else check_positive_int("d_out", d_out)
        self.n_heads, self.d_k, self.d_v, self.d_out = n_heads, d_k, d_v, d_out
        self.d_query, self.d_key_value = d_query, d_key_value
        self.dropout = check_probability("dropout", dropout)
        self.query = nn.Linear(d_query, n_heads * d_k, bias=bias)
        self.key = nn.Linear(d_key_value, n_heads * d_k, bias=bias)
        self.value = nn.Linear(d_key_value, n_heads * d_v, bias=bias)
        self.out = nn.Linear(n_heads * d_v, d_out, bias=bias)

    def forward(self, query: Tensor, key_value: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attend from ``query`` to ``key_value``.

        Args:
            query: (B, Lq, d_query).
            key_value: (B, Lk, d_key_value).
            mask: optional bool, broadcastable to (B, H, Lq, Lk); True where attention is allowed.

        Returns:
            out (B, Lq, d_out) and weights (B, H, Lq, Lk).
        """
        check_shape("query", query, ("B", "Lq", self.d_query))
        check_shape("key_value", key_value, (query.shape[0], "Lk", self.d_key_value))
        q = split_heads(self.query(query), self.n_heads)
        k = split_heads(self.key(key_value), self.n_heads)
        v = split_heads(self.value(key_value), self.n_heads)
        read, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout, self.training)
        return self.out(merge_heads(read)), weights
