"""Notebook 03 (top-down competition) builds this module.

Top-down competition: which modules get to read the input at this step.

Every module makes a *query* from its own state; the input slots, plus one extra **null slot** of zeros,
make *keys* and *values* with shared weights and **no bias**. Because the null slot is zero and there is no
bias, its key is exactly zero, so its score ``q . k_null`` is exactly 0 for every module. After a softmax over
slots, a module that finds nothing relevant in the input puts its attention on the null slot.

The ``k`` modules that attend **least** to the null slot win: they are *active* this step and read the
attention-weighted values; the others stay inactive (the cell keeps their state). The selection is a hard,
non-differentiable top-k.

**Ties are broken by module index: of equal scores, the lower index wins**, on every device. Ties are not
rare: from the zero initial state every query is zero, so at t=0 every module's null attention is exactly
0.5 and *all* n modules tie. ``torch.topk`` leaves the order of equal values unspecified (on a CPU it picked
modules 0, 3, 4, 5 of six; a GPU may pick others), so the selection is a stable descending sort instead:
``torch.sort(scores, descending=True, stable=True)`` keeps equal values in index order and the first k win
(modules 0..k-1 at t=0). The fused loop (:mod:`minirims.fast`) and the loop oracle (:mod:`minirims.naive`)
select with the same rule.

**Ablation: random selection.** ``InputAttention(selection="random")`` keeps the attention (what an active
module reads is unchanged) but picks the k active modules uniformly at random at every step, one
``torch.rand(B, n)`` draw per step (the global generator; float32), whatever the modules attend to. What a
module's state keeps then no longer depends on the input: this takes the *choice* out of the competition.

Shapes: B batch, n modules, k active, m input slots (the null slot is slot 0, so attention has 1+m slots),
H heads, d_in input size, d_h module hidden size, d_k key size, d_v value size per head.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minirims._validate import (
    check_input_slots,
    check_k_active,
    check_positive_int,
    check_probability,
    check_shape,
    check_tensor,
)
from minirims.attention import merge_heads
from minirims.group import GroupLinear

__all__ = ["CompetitionOutput", "InputAttention", "SELECTIONS", "null_attention", "select_topk", "topk_mask"]

#: how the k active modules are chosen: "attention" (the k least-null modules, the RIM) or "random" (ablation)
SELECTIONS = ("attention", "random")


class CompetitionOutput(NamedTuple):
    """What the competition returns for one step.

    read: (B, n, H*d_v) what each module read from the input (meaningful for active modules).
    mask: (B, n) bool, True for the k active modules.
    attn: (B, n, 1+m) attention over [null, slot 1..m], averaged over heads (rows sum to 1).
    """

    read: Tensor
    mask: Tensor
    attn: Tensor


def null_attention(attn: Tensor) -> Tensor:
    """The attention each module pays to the null slot (slot 0).

    Args:
        attn: (B, n, 1+m) attention weights over [null, inputs].

    Returns:
        (B, n).
    """
    check_shape("attn", attn, ("B", "n", "1+m"))
    if attn.shape[-1] < 2:
        raise ValueError(
            f"attn: expected at least 2 slots (null + 1 input) in the last dim, got {attn.shape[-1]}"
        )
    return attn[..., 0]


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest scores in each row.

    Args:
        scores: (B, n).
        k: number of winners per row, 1 <= k <= n.

    Returns:
        (B, n) bool with exactly ``k`` True per row. Not differentiable (a hard selection). Of equal scores
        the lower index wins (see the module docstring), whatever the device.
    """
    check_shape("scores", scores, ("B", "n"))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k: expected an int in [1, {scores.shape[-1]}] (the number of modules), got {k!r}")
    return select_topk(scores, k)


def select_topk(scores: Tensor, k: int) -> Tensor:
    """:func:`topk_mask` without the checks (the fused loop calls it at every step): ties by lower index.

    Args:
        scores: (..., n).
        k: 1 <= k <= n (not checked).

    Returns:
        (..., n) bool, True at the k largest scores; of equal scores the lower index wins, on every device.
    """
    winners = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, winners, True)


class InputAttention(nn.Module):
    """Input attention with a null slot and top-k selection of active modules.

    Args:
        d_in: feature size of each input slot.
        n_modules: n.
        d_hidden: d_h, the hidden size of each module (queries are made from it).
        k_active: k, the number of modules activated per step (1 <= k <= n).
        d_k: key/query size per head.
        d_v: value size per head; each module reads H*d_v features.
        n_heads: H. The null-attention used for selection is averaged over heads.
        dropout: dropout on the attention weights used for the read (training only).
        selection: "attention" (the k modules least attending to the null slot win) or "random" (k modules
            drawn uniformly at random at every step: an ablation, see the module docstring).
    """

    def __init__(
        self,
        d_in: int,
        n_modules: int,
        d_hidden: int,
        k_active: int,
        d_k: int = 64,
        d_v: int = 400,
        n_heads: int = 1,
        dropout: float = 0.1,
        selection: str = "attention",
    ) -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ValueError(
                f"selection: expected one of {', '.join(map(repr, SELECTIONS))}, got {selection!r}"
            )
        self.selection = selection
        self.d_in = check_positive_int("d_in", d_in)
        self.n_modules = check_positive_int("n_modules", n_modules)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.d_k = check_positive_int("d_k", d_k)
        self.d_v = check_positive_int("d_v", d_v)
        self.n_heads = check_positive_int("n_heads", n_heads)
        self.k_active = check_k_active(k_active, n_modules)
        self.dropout = check_probability("dropout", dropout)
        self.d_read = n_heads * d_v
        # Shared, bias-free key and value projections: the null slot's key and value are exactly zero.
        self.key = nn.Linear(d_in, n_heads * d_k, bias=False)
        self.value = nn.Linear(d_in, n_heads * d_v, bias=False)
        # One query projection per module, from that module's own state.
        self.query = GroupLinear(n_modules, d_hidden, n_heads * d_k, bias=False)

    def project_inputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the input slots, with the null slot prepended.

        Keys and values do not depend on the modules' state, so :class:`minirims.model.RIM` projects a whole
        sequence at once with this method and then calls :meth:`attend` at each step.

        Args:
            x: (..., m, d_in) input slots (any leading dims, e.g. (B, m, d_in) or (B, T, m, d_in)).

        Returns:
            keys (..., H, 1+m, d_k) and values (..., H, 1+m, d_v); slot 0 is the null slot (exact zeros).
        """
        check_tensor("x", x)
        if x.dim() < 2 or x.shape[-1] != self.d_in:
            raise ValueError(f"x: expected shape (..., m, {self.d_in}), got {tuple(x.shape)}")
        null = x.new_zeros(*x.shape[:-2], 1, self.d_in)
        slots = torch.cat([null, x], dim=-2)  # (..., 1+m, d_in)
        keys = self.key(slots).unflatten(-1, (self.n_heads, self.d_k)).transpose(-3, -2)
        values = self.value(slots).unflatten(-1, (self.n_heads, self.d_v)).transpose(-3, -2)
        return keys, values

    def attend(self, keys: Tensor, values: Tensor, h: Tensor) -> CompetitionOutput:
        """Queries from the module states attend over projected slots; the k least-null modules win
        (``selection="random"``: k modules at random).

        Args:
            keys: (B, H, 1+m, d_k) from :meth:`project_inputs`.
            values: (B, H, 1+m, d_v) from :meth:`project_inputs`.
            h: (B, n, d_h) module hidden states.

        Returns:
            :class:`CompetitionOutput` (read (B, n, H*d_v), mask (B, n), attn (B, n, 1+m)).
        """
        check_shape("h", h, ("B", self.n_modules, self.d_hidden))
        check_shape("keys", keys, (h.shape[0], self.n_heads, "1+m", self.d_k))
        check_shape("values", values, (h.shape[0], self.n_heads, keys.shape[2], self.d_v))
        q = self.query(h).unflatten(-1, (self.n_heads, self.d_k)).transpose(1, 2)  # (B, H, n, d_k)
        scores = q @ keys.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, H, n, 1+m); null column is exactly 0
        weights = torch.softmax(scores, dim=-1)
        attn = weights.mean(dim=1)  # (B, n, 1+m)
        if self.selection == "random":  # the ablation: k modules at random, whatever they attend to
            mask = select_topk(torch.rand(h.shape[0], self.n_modules, device=h.device), self.k_active)
        else:
            mask = topk_mask(-null_attention(attn).detach(), self.k_active)
        dropped = F.dropout(weights, self.dropout, self.training) if self.dropout > 0 else weights
        read = merge_heads(dropped @ values)  # (B, n, H*d_v)
        return CompetitionOutput(read, mask, attn)

    def forward(self, x: Tensor, h: Tensor) -> CompetitionOutput:
        """One step of top-down competition.

        Args:
            x: (B, d_in) a single input vector, or (B, m, d_in) a set of m input slots.
            h: (B, n, d_h) module hidden states.

        Returns:
            :class:`CompetitionOutput` (read (B, n, H*d_v), mask (B, n) bool, attn (B, n, 1+m)).
        """
        x = check_input_slots("x", x, self.d_in)
        check_shape("h", h, (x.shape[0], self.n_modules, self.d_hidden))
        keys, values = self.project_inputs(x)
        return self.attend(keys, values, h)
