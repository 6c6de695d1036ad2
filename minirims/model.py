"""Notebook 05 (the RIM cell) builds this module.

Sequence models: ``RIM`` (a layer over :class:`~minirims.cell.RIMCell`) and an LSTM baseline.

Both take a sequence (B, T, d_in) and return ``(outputs, final_state, trace)`` so an experiment can swap one
for the other; the experiment puts its own embedding/encoder in front and its own head after (``.d_out``
gives the output feature size).

Both check their inputs the same way, once per call (never per step): the sequence and any given state must
be on the parameters' device with their dtype (under ``torch.autocast``, autocast's dtype is accepted too),
hold at least one example and one step (B = 0 or T = 0 is refused: there is nothing to run), and be finite
(NaN or inf is refused; values are read on the CPU only, see :func:`minirims._validate.check_finite`). Each
case is a ValueError naming the argument, what was expected and what came.

Precision: the recurrent state both return is kept in the parameters' dtype (float32), also under
``torch.autocast``, where the matmuls run in autocast's dtype (bf16) and the outputs come in it; so a state
fed back (a video rollout, one frame per call) passes the same check, and the LSTM cell state accumulates in
float32. Under autocast the LSTM runs in autocast's dtype, as the RIM's matmuls do (left to itself, autocast
runs cuDNN's LSTM in float16 whatever dtype it was given).

Shapes: B batch, T time, n modules, m input slots, H communication heads, d_h hidden size per module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from minirims._validate import (
    autocast_dtype,
    check_batch,
    check_finite,
    check_finite_float,
    check_like,
    check_mask,
    check_positive_int,
    check_shape,
    check_tensor,
)
from minirims.cell import RIMCell, RIMState
from minirims.fast import run_fast

__all__ = ["Trace", "RIM", "LSTMBaseline"]


class Trace(NamedTuple):
    """Per-step record of a RIM run, for plots.

    masks: (B, T, n) bool active modules. input_attn: (B, T, n, 1+m), slot 0 = null.
    comm_attn: (B, T, H, n, n).
    """

    masks: Tensor
    input_attn: Tensor
    comm_attn: Tensor


class RIM(nn.Module):
    """Recurrent Independent Mechanisms over a sequence.

    Args:
        d_in: input feature size (per slot).
        n_modules, k_active, d_hidden, rnn, and any other keyword argument: passed to :class:`RIMCell`.
        fast: step through the sequence with the fused loop of :mod:`minirims.fast` (default), the same
            function as stepping :class:`RIMCell` (``fast=False``, the plain path the course builds) with
            fewer, larger ops. The attribute can be changed at any time; the parameters are the same.
        compile_step: with ``fast``, run the time loop through ``torch.compile``, in compiled chunks of
            :data:`minirims.fast.COMPILE_UNROLL` steps (one step at a time when tracing) (off by default:
            the first forward compiles for tens of seconds; see ``benchmarks/README.md`` for when it pays).

    ``d_out = n_modules * d_hidden``: the output at each step is all module states concatenated.
    """

    def __init__(
        self,
        d_in: int,
        n_modules: int = 6,
        k_active: int = 4,
        d_hidden: int = 100,
        rnn: str = "lstm",
        fast: bool = True,
        compile_step: bool = False,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        for name, value in (("fast", fast), ("compile_step", compile_step)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected True or False, got {value!r}")
        self.fast, self.compile_step = fast, compile_step
        self.cell = RIMCell(d_in, n_modules, k_active, d_hidden, rnn, **cell_kwargs)
        self.d_in, self.n_modules, self.k_active, self.d_hidden = d_in, n_modules, k_active, d_hidden
        self.d_out = n_modules * d_hidden

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RIMState:
        """Zero state: h, c (B, n, d_h)."""
        return self.cell.initial_state(batch_size, device, dtype)

    def forward(
        self, x: Tensor, state: RIMState | None = None, trace: bool = False, resets: Tensor | None = None
    ) -> tuple[Tensor, RIMState, Trace | None]:
        """Run the cell over a sequence.

        Args:
            x: (B, T, d_in) one input vector per step, or (B, T, m, d_in) m slots per step; B >= 1, T >= 1,
                finite, on the parameters' device with their dtype (or autocast's, under ``torch.autocast``).
            state: initial RIMState (h, c) each (B, n, d_h), finite; None for zeros (the parameters' dtype).
            trace: also return a :class:`Trace` of masks and attention maps (costs memory).
            resets: (B, T) bool, or None: where True, the state is set back to zeros just before that step
                (a new episode starts there, e.g. in reinforcement learning), as if a new sequence began.

        Returns:
            outputs (B, T, n*d_h), the final RIMState (in the parameters' dtype, also under autocast), and a
            Trace (or None).

        Raises:
            ValueError: a wrong shape, an empty batch or sequence, another device or dtype, NaN or inf (once
                per sequence; the time loop is unchecked).
        """
        check_tensor("x", x)
        if x.dim() not in (3, 4) or x.shape[-1] != self.d_in or x.shape[1] < 1:
            raise ValueError(
                f"x: expected shape (B, T, {self.d_in}) or (B, T, m, {self.d_in}) with T >= 1, "
                f"got {tuple(x.shape)}"
            )
        check_batch("x", x)
        weight = self.cell.rnn.weight_hh
        check_like("x", x, weight)
        b = x.shape[0]
        if state is None:
            state = self.initial_state(b, x.device)  # the parameters' dtype, also under autocast
            check_finite(("x", x))
        else:
            state = self.cell.check_state(state, b)
            check_finite(("x", x), ("state.h", state.h), ("state.c", state.c))
        if resets is not None:
            check_mask("resets", resets, (b, x.shape[1]))
            check_shape("resets", resets, (b, x.shape[1]), floating=False)
            if resets.device != x.device:
                raise ValueError(f"resets: expected device {x.device} (that of x), got {resets.device}")
        if x.dim() == 3:
            x = x.unsqueeze(2)
        if self.fast:  # the fused loop of minirims.fast: the same function with fewer, larger ops
            out, state, record = run_fast(
                self.cell, x, state, trace=trace, compile=self.compile_step, resets=resets
            )
        else:
            out, state, record = self._run_plain(x, state, trace, resets)
        if state.h.dtype != weight.dtype:  # under autocast: the state stays in the parameters' dtype
            state = RIMState(*(None if t is None else t.to(weight.dtype) for t in state))
        return out, state, Trace(*record) if record is not None else None

    def _run_plain(
        self, x: Tensor, state: RIMState, trace: bool, resets: Tensor | None = None
    ) -> tuple[Tensor, RIMState, tuple[Tensor, Tensor, Tensor] | None]:
        """The plain path, :meth:`RIMCell.step` at every step: x (B, T, m, d_in) -> as :func:`run_fast`."""
        # Keys and values do not depend on the state: project the whole sequence in one matmul.
        keys, values = self.cell.input_attention.project_inputs(x)  # (B, T, H, 1+m, d)
        # unbind (not keys[:, t]): its backward stacks the T gradients once, where indexing would allocate and
        # zero-fill a full (B, T, ...) gradient at every step.
        outputs, masks, in_attn, comm_attn = [], [], [], []
        for t, (keys_t, values_t) in enumerate(zip(keys.unbind(1), values.unbind(1), strict=True)):
            if resets is not None:  # a new sequence starts at step t where resets[:, t]: zeros, as at t = 0
                keep = (~resets[:, t]).to(state.h.dtype).view(-1, 1, 1)
                state = RIMState(state.h * keep, None if state.c is None else state.c * keep)
            h, state, info = self.cell.step(keys_t, values_t, state)
            outputs.append(h.reshape(x.shape[0], self.d_out))
            if trace:
                masks.append(info.mask)
                in_attn.append(info.input_attn)
                comm_attn.append(info.comm_attn)
        record = tuple(torch.stack(t, 1) for t in (masks, in_attn, comm_attn)) if trace else None
        return torch.stack(outputs, dim=1), state, record


class LSTMBaseline(nn.Module):
    """A plain LSTM with the same interface as :class:`RIM` (``trace`` is accepted and returns None).

    Args:
        d_in: input feature size.
        d_hidden: hidden size (``d_out``).
        forget_bias: added to the forget gate's bias at initialisation, as in the RIM's
            :class:`~minirims.group.GroupLSTMCell` (default 1.0), so that the two start alike.
    """

    def __init__(self, d_in: int, d_hidden: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        forget_bias = check_finite_float("forget_bias", forget_bias)
        self.d_out = d_hidden
        self.lstm = nn.LSTM(d_in, d_hidden, batch_first=True)
        with torch.no_grad():
            self.lstm.bias_ih_l0[d_hidden : 2 * d_hidden] += float(forget_bias)

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero state: h, c (B, d_h)."""
        check_positive_int("batch_size", batch_size)
        p = self.lstm.weight_hh_l0
        h = torch.zeros(
            batch_size,
            self.d_hidden,
            device=p.device if device is None else device,
            dtype=p.dtype if dtype is None else dtype,
        )
        return h, torch.zeros_like(h)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, trace: bool = False
    ) -> tuple[Tensor, tuple[Tensor, Tensor], None]:
        """x (B, T, d_in), state (h, c) each (B, d_h) or None -> (outputs (B, T, d_h), (h, c), None).

        Checked as :meth:`RIM.forward` checks (once per call): B >= 1 and T >= 1, the parameters' device and
        dtype (or autocast's), finite values; anything else is a ValueError naming the argument. The returned
        state is in the parameters' dtype; under ``torch.autocast`` the LSTM and its outputs run in autocast's
        dtype (see the module docstring).
        """
        check_shape("x", x, ("B", "T", self.d_in))
        if x.shape[1] < 1:
            raise ValueError(f"x: expected at least one time step, got shape {tuple(x.shape)}")
        check_batch("x", x)
        weight = self.lstm.weight_hh_l0
        check_like("x", x, weight)
        if state is None:
            check_finite(("x", x))
            h0 = torch.zeros(1, x.shape[0], self.d_hidden, device=weight.device, dtype=weight.dtype)
            hx = (h0, h0)
        else:
            if not isinstance(state, tuple) or len(state) != 2:
                raise ValueError(f"state: expected a tuple (h, c), got {type(state).__name__}")
            check_shape("state h", state[0], (x.shape[0], self.d_hidden))
            check_shape("state c", state[1], (x.shape[0], self.d_hidden))
            check_like("state h", state[0], weight)
            check_like("state c", state[1], weight)
            check_finite(("x", x), ("state h", state[0]), ("state c", state[1]))
            hx = (state[0].unsqueeze(0), state[1].unsqueeze(0))
        amp = autocast_dtype(weight.device.type)
        if amp is None or amp == weight.dtype:
            out, (h, c) = self.lstm(x, hx)
        else:
            out, (h, c) = self._run_in(amp, x, hx)
        return out, (h.squeeze(0).to(weight.dtype), c.squeeze(0).to(weight.dtype)), None

    def _run_in(self, dtype: torch.dtype, x: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, Any]:
        """The LSTM in ``dtype`` with autocast off: inputs, state and weights cast here, inside autograd.

        Autocast would run cuDNN's LSTM in float16 (its rule for cuDNN RNNs ignores autocast's dtype), which
        trains without the loss scaling float16 needs, and the CPU's oneDNN LSTM refuses the mixed dtypes that
        CPU autocast hands it. Cast explicitly, the LSTM runs in autocast's dtype on both, and the gradients
        reach the float32 parameters through the casts.
        """
        with torch.autocast(x.device.type, enabled=False):
            params = {name: p.to(dtype) for name, p in self.lstm.named_parameters()}
            state = (hx[0].to(dtype), hx[1].to(dtype))
            return functional_call(self.lstm, params, (x.to(dtype), state))
