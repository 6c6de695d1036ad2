"""Notebook 05 (the RIM cell) writes this loop first, then checks the batched cell against it.

The RIM cell written the slow, obvious way: a Python loop over modules.

This is the version the course builds first (notebook 05). Every module owns plain ``nn.Linear`` /
``nn.LSTMCell`` layers and the step loops over them. It computes exactly what :class:`minirims.cell.RIMCell`
computes (the tests check both paths of :class:`~minirims.model.RIM` against it in float64), but launches ~n
times more small kernels per step. It is the oracle of the tests and the ``loop`` contender of
``benchmarks/bench_cell.py``; do not train with it.

Shapes: B batch, n modules, m input slots, H heads, d_h hidden size per module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minirims.cell import RIMCell, RIMState, StepInfo
from minirims.competition import topk_mask

__all__ = ["LoopRIMCell"]


def _linear_from_group(weight: Tensor, bias: Tensor | None, i: int) -> nn.Linear:
    """nn.Linear holding module i's block of a GroupLinear (weight (n, d_in, d_out))."""
    d_in, d_out = weight.shape[1:]
    lin = nn.Linear(d_in, d_out, bias=bias is not None, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        lin.weight.copy_(weight[i].T)
        if bias is not None:
            lin.bias.copy_(bias[i])
    return lin


class LoopRIMCell(nn.Module):
    """A RIM cell (LSTM modules, eval-mode semantics: no dropout) that loops over modules.

    Build it from a batched cell with :meth:`from_cell` so both hold the same weights.
    """

    def __init__(self, cell: RIMCell) -> None:
        super().__init__()
        if not isinstance(cell, RIMCell) or cell.rnn_type != "lstm":
            raise ValueError(f"cell: expected a RIMCell with rnn='lstm', got {type(cell).__name__}")
        if not cell.communicate or cell.selection != "attention":
            raise ValueError(
                "cell: expected the RIM itself (communicate=True, selection='attention'), got an ablation "
                f"(communicate={cell.communicate}, selection={cell.selection!r})"
            )
        n = cell.n_modules
        inp, comm = cell.input_attention, cell.communication
        self.n, self.k, self.d_h = n, cell.k_active, cell.d_hidden
        self.in_heads, self.in_dk, self.in_dv = inp.n_heads, inp.d_k, inp.d_v
        self.c_heads, self.c_dk, self.c_dv = comm.n_heads, comm.d_k, comm.d_v
        self.key = nn.Linear(inp.d_in, inp.n_heads * inp.d_k, bias=False)
        self.value = nn.Linear(inp.d_in, inp.n_heads * inp.d_v, bias=False)
        self.key.load_state_dict(inp.key.state_dict())
        self.value.load_state_dict(inp.value.state_dict())
        self.to(inp.key.weight.dtype)
        self.query = nn.ModuleList(_linear_from_group(inp.query.weight, None, i) for i in range(n))
        self.lstm = nn.ModuleList()
        for i in range(n):
            lstm = nn.LSTMCell(inp.d_read, cell.d_hidden, dtype=inp.key.weight.dtype)
            with torch.no_grad():
                lstm.weight_ih.copy_(cell.rnn.weight_ih[i].T)
                lstm.weight_hh.copy_(cell.rnn.weight_hh[i].T)
                lstm.bias_ih.copy_(cell.rnn.bias[i])
                lstm.bias_hh.zero_()
            self.lstm.append(lstm)
        self.c_query = nn.ModuleList(
            _linear_from_group(comm.query.weight, comm.query.bias, i) for i in range(n)
        )
        self.c_key = nn.ModuleList(_linear_from_group(comm.key.weight, comm.key.bias, i) for i in range(n))
        self.c_value = nn.ModuleList(
            _linear_from_group(comm.value.weight, comm.value.bias, i) for i in range(n)
        )
        self.c_f = nn.ModuleList(_linear_from_group(comm.f.weight, comm.f.bias, i) for i in range(n))
        self.c_g = nn.ModuleList(_linear_from_group(comm.g.weight, comm.g.bias, i) for i in range(n))

    @classmethod
    def from_cell(cls, cell: RIMCell) -> LoopRIMCell:
        """A loop cell with a copy of ``cell``'s weights."""
        return cls(cell)

    def forward(self, x: Tensor, state: RIMState) -> tuple[Tensor, RIMState, StepInfo]:
        """x (B, d_in) or (B, m, d_in); state (h, c) each (B, n, d_h). Same outputs as ``RIMCell.forward``."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        b = x.shape[0]
        h, c = state
        slots = torch.cat([x.new_zeros(b, 1, x.shape[-1]), x], dim=1)  # (B, 1+m, d_in)
        keys = self.key(slots).view(b, -1, self.in_heads, self.in_dk)  # (B, 1+m, H, d_k)
        values = self.value(slots).view(b, -1, self.in_heads, self.in_dv)
        # 1. competition, one module at a time
        reads, attns = [], []
        for i in range(self.n):
            q = self.query[i](h[:, i]).view(b, self.in_heads, self.in_dk)  # (B, H, d_k)
            scores = torch.einsum("bhd,bshd->bhs", q, keys) / math.sqrt(self.in_dk)
            w = torch.softmax(scores, dim=-1)  # (B, H, 1+m)
            reads.append(torch.einsum("bhs,bshd->bhd", w, values).reshape(b, -1))
            attns.append(w.mean(dim=1))
        attn = torch.stack(attns, dim=1)  # (B, n, 1+m)
        mask = topk_mask(-attn[..., 0], self.k)
        # 2. independent dynamics
        h_t, c_t = [], []
        for i in range(self.n):
            hi, ci = self.lstm[i](reads[i], (h[:, i], c[:, i]))
            h_t.append(hi)
            c_t.append(ci)
        # 3. communication
        qs = [self.c_query[i](h_t[i]).view(b, self.c_heads, self.c_dk) for i in range(self.n)]
        ks = torch.stack([self.c_key[i](h_t[i]).view(b, self.c_heads, self.c_dk) for i in range(self.n)], 1)
        vs = torch.stack([self.c_value[i](h_t[i]).view(b, self.c_heads, self.c_dv) for i in range(self.n)], 1)
        new_h, new_c, comm_rows = [], [], []
        for i in range(self.n):
            w = torch.softmax(torch.einsum("bhd,bjhd->bhj", qs[i], ks) / math.sqrt(self.c_dk), dim=-1)
            a = torch.einsum("bhj,bjhd->bhd", w, vs).reshape(b, -1)
            hi = h_t[i] + torch.sigmoid(self.c_g[i](a)) * torch.tanh(self.c_f[i](a))
            # 4. masked update
            active = mask[:, i : i + 1]
            new_h.append(torch.where(active, hi, h[:, i]))
            new_c.append(torch.where(active, c_t[i], c[:, i]))
            comm_rows.append(w)
        h_new, c_new = torch.stack(new_h, 1), torch.stack(new_c, 1)
        return h_new, RIMState(h_new, c_new), StepInfo(mask, attn, torch.stack(comm_rows, dim=2))
