"""A small causal Transformer with the same interface as :class:`minirims.model.LSTMBaseline`.

Used as a baseline in the sequential-MNIST resolution experiment. Positions are *sinusoidal*, computed for
whatever length arrives, so a model trained on 196 steps (14x14) can be run on 576 steps (24x24)::

    CausalTransformer(d_in, d_model=64, n_layers=2, n_heads=4, d_ff=None, dropout=0.1)
        .d_out == d_model
        .forward(x (B, T, d_in), state=None, trace=False) -> (out (B, T, d_model), None, None)

Each output step t only sees inputs 0..t (causal mask), like a recurrent layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minirims._validate import check_positive_int, check_probability

__all__ = ["CausalTransformer", "sinusoidal_positions"]


def sinusoidal_positions(length: int, d_model: int, device: torch.device | None = None) -> Tensor:
    """The fixed sine/cosine position code of "Attention is all you need": (T, d_model) float32."""
    check_positive_int("length", length)
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 2 or d_model % 2:
        raise ValueError(f"d_model: expected a positive even int, got {d_model!r}")
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class CausalTransformer(nn.Module):
    """Pre-norm causal Transformer encoder over a sequence of feature vectors.

    Args:
        d_in: input feature size (the pixel embedding size).
        d_model: model width (``d_out``); even, divisible by ``n_heads``.
        n_layers: number of Transformer blocks.
        n_heads: attention heads H.
        d_ff: feed-forward width (default 4 * d_model).
        dropout: dropout in attention and feed-forward.
    """

    def __init__(
        self,
        d_in: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, val in (("d_in", d_in), ("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads)):
            check_positive_int(name, val)
        if d_model % 2 or d_model % n_heads:
            raise ValueError(f"d_model: expected an even multiple of n_heads={n_heads}, got {d_model}")
        dropout = check_probability("dropout", dropout)
        self.d_in, self.d_model, self.d_out = d_in, d_model, d_model
        self.proj = nn.Linear(d_in, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=d_ff or 4 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, state: None = None, trace: bool = False) -> tuple[Tensor, None, None]:
        """x (B, T, d_in) -> (out (B, T, d_model), None, None); ``state``/``trace``: interface only."""
        if x.dim() != 3 or x.shape[-1] != self.d_in:
            raise ValueError(f"x: expected shape (B, T, {self.d_in}), got {tuple(x.shape)}")
        if state is not None:
            raise ValueError(
                f"state: expected None (a Transformer keeps no recurrent state), got {type(state)}"
            )
        t = x.shape[1]
        h = self.proj(x) + sinusoidal_positions(t, self.d_model, x.device).to(x.dtype)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=h.dtype)
        out = self.encoder(h, mask=causal, is_causal=True)
        return self.norm(out), None, None
