"""Notebook 02 (independent dynamics) builds this module.

Group layers: one weight block per module, all modules in one batched op.

A RIM has ``n`` modules, each with its *own* parameters. Running ``n`` separate ``nn.LSTMCell`` s in a Python
loop is correct but slow (n small kernels per step); packing them into one big LSTM with the off-diagonal
blocks zeroed is fast-looking but wastes ``n``-times the FLOPs and optimizer state. Instead we stack the ``n``
weight matrices into one tensor of shape (n, d_in, d_out) and multiply every module's input by its own matrix
in a single batched matmul (``einsum("bni,nio->bno")``).

Shapes: B batch, n modules, d_in / d_out / d_h feature sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minirims._validate import check_finite_float, check_like, check_positive_int, check_shape

__all__ = ["GroupLinear", "GroupLSTMCell", "GroupGRUCell", "lstm_update", "gru_update"]


def _uniform_(t: Tensor, bound: float) -> None:
    with torch.no_grad():
        t.uniform_(-bound, bound)


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM update: pre-activation gates (..., 4*d_h), order i, f, g, o, and c -> (h', c') (..., d_h)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def gru_update(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The GRU update: input, hidden pre-activations (..., 3*d_h), order r, z, n, and h -> h' (..., d_h)."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class GroupLinear(nn.Module):
    """``n`` independent linear layers applied to ``n`` module inputs at once.

    ``y[:, i] = x[:, i] @ weight[i] + bias[i]``.

    Args:
        n: number of modules.
        d_in: input size per module.
        d_out: output size per module.
        bias: whether each module has a bias.

    Shapes: x (B, n, d_in) -> (B, n, d_out); weight (n, d_in, d_out); bias (n, d_out).
    Initialised like ``nn.Linear``, independently per module: U(-1/sqrt(d_in), 1/sqrt(d_in)).

    ``x`` must be on the weight's device and have its dtype (or, under ``torch.autocast``, autocast's);
    anything else is a ValueError naming both. Like ``nn.Linear``, a layer maps an empty batch (B = 0) to an
    empty batch; the models (:class:`~minirims.model.RIM`, :class:`~minirims.cell.RIMCell`) refuse B = 0.
    """

    def __init__(self, n: int, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.n = check_positive_int("n", n)
        self.d_in = check_positive_int("d_in", d_in)
        self.d_out = check_positive_int("d_out", d_out)
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n, d_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.d_in)
        _uniform_(self.weight, bound)
        if self.bias is not None:
            _uniform_(self.bias, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, n, d_in) -> (B, n, d_out)."""
        check_shape("x", x, ("B", self.n, self.d_in))
        check_like("x", x, self.weight, "the layer's weight")
        y = torch.einsum("bni,nio->bno", x, self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"n={self.n}, d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


class GroupLSTMCell(nn.Module):
    """``n`` independent LSTM cells, one per module, stepped together.

    For module i (gate order i, f, g, o as in ``nn.LSTMCell``)::

        gates = x_i @ weight_ih[i] + h_i @ weight_hh[i] + bias[i]      # (B, 4*d_h)
        c_i'  = sigmoid(f) * c_i + sigmoid(i) * tanh(g)
        h_i'  = sigmoid(o) * tanh(c_i')

    Args:
        n: number of modules.
        d_in: input size per module.
        d_h: hidden size per module.
        forget_bias: added to the forget gate's bias at initialisation (default 1.0).

    Shapes: x (B, n, d_in); h, c (B, n, d_h). Parameters: weight_ih (n, d_in, 4*d_h),
    weight_hh (n, d_h, 4*d_h), bias (n, 4*d_h) (``nn.LSTMCell``'s two biases summed).
    Initialised like ``nn.LSTMCell``, independently per module: U(-1/sqrt(d_h), 1/sqrt(d_h)), plus
    ``forget_bias`` on the forget gate (Gers et al. 2000; Jozefowicz et al. 2015). With 0 the cell forgets
    half its memory at every step at initialisation and, on 196-step pixel sequences, training sits on the
    chance plateau for hundreds of steps (measured: ``results/README.md``).
    """

    def __init__(self, n: int, d_in: int, d_h: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.n = check_positive_int("n", n)
        self.d_in = check_positive_int("d_in", d_in)
        self.d_h = check_positive_int("d_h", d_h)
        forget_bias = check_finite_float("forget_bias", forget_bias)
        self.forget_bias = float(forget_bias)
        self.weight_ih = nn.Parameter(torch.empty(n, d_in, 4 * d_h))
        self.weight_hh = nn.Parameter(torch.empty(n, d_h, 4 * d_h))
        self.bias = nn.Parameter(torch.empty(n, 4 * d_h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.d_h)
        for p in (self.weight_ih, self.weight_hh, self.bias):
            _uniform_(p, bound)
        with torch.no_grad():
            self.bias[:, self.d_h : 2 * self.d_h] += self.forget_bias

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step. x (B, n, d_in), state (h, c) each (B, n, d_h) -> (h', c') each (B, n, d_h)."""
        check_shape("x", x, ("B", self.n, self.d_in))
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"state: expected a tuple (h, c), got {type(state).__name__}")
        h, c = state
        check_shape("state h", h, (x.shape[0], self.n, self.d_h))
        check_shape("state c", c, (x.shape[0], self.n, self.d_h))
        for name, t in (("x", x), ("state h", h), ("state c", c)):
            check_like(name, t, self.weight_hh, "the cell's weights")
        gates = (
            torch.einsum("bni,nio->bno", x, self.weight_ih)
            + torch.einsum("bnh,nho->bno", h, self.weight_hh)
            + self.bias
        )
        return lstm_update(gates, c)

    def extra_repr(self) -> str:
        return f"n={self.n}, d_in={self.d_in}, d_h={self.d_h}, forget_bias={self.forget_bias}"


class GroupGRUCell(nn.Module):
    """``n`` independent GRU cells, one per module, stepped together (gate order r, z, n as ``nn.GRUCell``)::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
        z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h

    Args:
        n: number of modules.
        d_in: input size per module.
        d_h: hidden size per module.

    Shapes: x (B, n, d_in); h (B, n, d_h). Parameters: weight_ih (n, d_in, 3*d_h), weight_hh (n, d_h, 3*d_h),
    bias_ih and bias_hh (n, 3*d_h). Initialised like ``nn.GRUCell``, independently per module.
    """

    def __init__(self, n: int, d_in: int, d_h: int) -> None:
        super().__init__()
        self.n = check_positive_int("n", n)
        self.d_in = check_positive_int("d_in", d_in)
        self.d_h = check_positive_int("d_h", d_h)
        self.weight_ih = nn.Parameter(torch.empty(n, d_in, 3 * d_h))
        self.weight_hh = nn.Parameter(torch.empty(n, d_h, 3 * d_h))
        self.bias_ih = nn.Parameter(torch.empty(n, 3 * d_h))
        self.bias_hh = nn.Parameter(torch.empty(n, 3 * d_h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.d_h)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            _uniform_(p, bound)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """One step. x (B, n, d_in), h (B, n, d_h) -> h' (B, n, d_h)."""
        check_shape("x", x, ("B", self.n, self.d_in))
        check_shape("h", h, (x.shape[0], self.n, self.d_h))
        check_like("x", x, self.weight_hh, "the cell's weights")
        check_like("h", h, self.weight_hh, "the cell's weights")
        gi = torch.einsum("bni,nio->bno", x, self.weight_ih) + self.bias_ih
        gh = torch.einsum("bnh,nho->bno", h, self.weight_hh) + self.bias_hh
        return gru_update(gi, gh, h)

    def extra_repr(self) -> str:
        return f"n={self.n}, d_in={self.d_in}, d_h={self.d_h}"
