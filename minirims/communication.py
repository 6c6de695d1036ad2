"""Notebook 04 (communication) builds this module.

Communication: active modules read from the other modules.

After the independent dynamics, each module makes a query (its own weights) and every module offers a key
and a value from its freshly updated state h~. Multi-head attention gives each module a read ``a``, which
passes through a gate and is added to its state as a residual::

    h_i <- h~_i + sigmoid(g_i(a_i)) * tanh(f_i(a_i))        (active modules only)

Inactive modules do not take the update; their state is kept by the cell.

Shapes: B batch, n modules, H heads, d_h hidden size per module, d_k key size, d_v value size per head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minirims._validate import check_positive_int, check_probability, check_shape
from minirims.attention import merge_heads, split_heads
from minirims.group import GroupLinear

__all__ = ["CommunicationAttention"]


class CommunicationAttention(nn.Module):
    """Multi-head attention among modules with a gated residual, applied to active modules only.

    Args:
        n_modules: n.
        d_hidden: d_h.
        n_heads: H.
        d_k: key/query size per head.
        d_v: value size per head.
        dropout: dropout on the attention weights (training only).

    All projections are per module (:class:`~minirims.group.GroupLinear`).
    """

    def __init__(
        self,
        n_modules: int,
        d_hidden: int,
        n_heads: int = 4,
        d_k: int = 32,
        d_v: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_modules = check_positive_int("n_modules", n_modules)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.n_heads = check_positive_int("n_heads", n_heads)
        self.d_k = check_positive_int("d_k", d_k)
        self.d_v = check_positive_int("d_v", d_v)
        self.dropout = check_probability("dropout", dropout)
        self.query = GroupLinear(n_modules, d_hidden, n_heads * d_k)
        self.key = GroupLinear(n_modules, d_hidden, n_heads * d_k)
        self.value = GroupLinear(n_modules, d_hidden, n_heads * d_v)
        self.f = GroupLinear(n_modules, n_heads * d_v, d_hidden)  # candidate update
        self.g = GroupLinear(n_modules, n_heads * d_v, d_hidden)  # gate

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Let active modules read from all modules.

        Args:
            h: (B, n, d_h) module states after the independent dynamics (h~).
            mask: (B, n) bool, True for active modules.

        Returns:
            h_out (B, n, d_h): ``h + gated update`` where active, ``h`` bit for bit where inactive;
            attn (B, H, n, n): attention of each module (row) over all modules (column).
        """
        check_shape("h", h, ("B", self.n_modules, self.d_hidden))
        check_shape("mask", mask, (h.shape[0], self.n_modules), floating=False)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected dtype torch.bool, got {mask.dtype}")
        q = split_heads(self.query(h), self.n_heads)  # (B, H, n, d_k)
        k = split_heads(self.key(h), self.n_heads)
        v = split_heads(self.value(h), self.n_heads)  # (B, H, n, d_v)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_k), dim=-1)  # (B, H, n, n)
        dropped = F.dropout(attn, self.dropout, self.training) if self.dropout > 0 else attn
        a = merge_heads(dropped @ v)  # (B, n, H*d_v)
        update = torch.sigmoid(self.g(a)) * torch.tanh(self.f(a))
        return torch.where(mask.unsqueeze(-1), h + update, h), attn
