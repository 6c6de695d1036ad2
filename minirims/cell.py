"""Notebook 05 (the RIM cell) builds this module.

The RIM cell: one time step of Recurrent Independent Mechanisms.

One step has four stages (Goyal et al., 2021):

1. **Competition** (:class:`~minirims.competition.InputAttention`): modules query the input plus a null slot;
   the ``k`` modules that attend least to the null slot become active and read the input.
2. **Independent dynamics** (:class:`~minirims.group.GroupLSTMCell` / ``GroupGRUCell``): every module
   updates its own recurrent cell with its own weights on its read, giving a candidate state h~.
3. **Communication** (:class:`~minirims.communication.CommunicationAttention`): active modules read from all
   modules' h~ and add a gated residual.
4. **Masked update**: active modules take the new state; inactive modules keep h (and c) bit for bit.

Two switches remove a mechanism, for ablations (the course's notebook 09): ``communicate=False`` drops
stage 3 (active modules take h~; the cell has no communication parameters) and ``selection="random"`` picks
the k active modules at random at every step instead of by the competition (see
:mod:`minirims.competition`).

Gradient flows through the kept state of an inactive module, but its computed-and-discarded candidate h~
receives no gradient at all -- not even through being a key/value in the communication step. This mirrors
the reference implementation's gradient blocking, and makes "inactive" mean inactive for learning as well.

Shapes: B batch, n modules, k active, m input slots, H communication heads, d_in input size per slot,
d_h hidden size per module.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from minirims._validate import (
    check_batch,
    check_finite,
    check_input_slots,
    check_k_active,
    check_like,
    check_positive_int,
    check_shape,
    check_tensor,
)
from minirims.communication import CommunicationAttention
from minirims.competition import InputAttention
from minirims.group import GroupGRUCell, GroupLSTMCell

__all__ = ["RIMState", "StepInfo", "RIMCell", "block_inactive_grad"]


class RIMState(NamedTuple):
    """Recurrent state of a RIM: h (B, n, d_h) and, for LSTM modules, c (B, n, d_h) (None for GRU)."""

    h: Tensor
    c: Tensor | None


class StepInfo(NamedTuple):
    """What happened in one step, for inspection and plots.

    mask: (B, n) bool, active modules. input_attn: (B, n, 1+m), slot 0 = null.
    comm_attn: (B, H, n, n) communication attention (rows: reading module).
    """

    mask: Tensor
    input_attn: Tensor
    comm_attn: Tensor


def block_inactive_grad(x: Tensor, mask: Tensor) -> Tensor:
    """Identity in the forward pass; in the backward pass, zero gradient for inactive modules.

    Args:
        x: (B, n, d) per-module values.
        mask: (B, n) bool, True where gradient may flow.

    Returns:
        (B, n, d), equal to ``x``.
    """
    return torch.where(mask.unsqueeze(-1), x, x.detach())


def _unpack_state(state: object) -> tuple[Tensor, Tensor | None]:
    """(h, c) of a state, or a ValueError if it is not a pair (RIMState or tuple)."""
    if not isinstance(state, tuple) or len(state) != 2:
        raise ValueError(f"state: expected a RIMState(h, c) tuple, got {type(state).__name__}")
    return state[0], state[1]


class RIMCell(nn.Module):
    """One step of a RIM: competition -> independent dynamics -> communication -> masked update.

    Args:
        d_in: feature size of an input slot.
        n_modules: n, number of modules.
        k_active: k, modules activated per step (1 <= k <= n).
        d_hidden: d_h, hidden size of each module.
        rnn: "lstm" or "gru", the recurrent cell of every module.
        input_heads, input_d_k, input_d_v: input attention heads, key size, value size per head.
        comm_heads, comm_d_k, comm_d_v: communication heads, key size, value size per head.
        dropout: dropout on both attentions' weights (training only).
        communicate: False removes the communication (an ablation): active modules take h~ as it is.
        selection: "attention" (the RIM) or "random" (an ablation: k modules at random at every step).

    Defaults follow the paper's sequential-MNIST settings: 6 modules, 4 active, 100 units each,
    input attention with 1 head, d_k 64, d_v 400; communication with 4 heads, d_k = d_v = 32.

    At the public entry points (:meth:`forward`, :meth:`step`, :meth:`check_state`) inputs and states must be
    on the parameters' device with their dtype (under ``torch.autocast``, autocast's dtype is accepted too),
    and hold a batch of at least one example (B = 0 is refused, as in every model of the package); anything
    else is a ValueError naming the argument, what was expected and what was received. :meth:`forward` also
    refuses NaN or infinite values (one check per call, of CPU tensors: see
    :func:`minirims._validate.check_finite`).
    """

    def __init__(
        self,
        d_in: int,
        n_modules: int = 6,
        k_active: int = 4,
        d_hidden: int = 100,
        rnn: str = "lstm",
        input_heads: int = 1,
        input_d_k: int = 64,
        input_d_v: int = 400,
        comm_heads: int = 4,
        comm_d_k: int = 32,
        comm_d_v: int = 32,
        dropout: float = 0.1,
        communicate: bool = True,
        selection: str = "attention",
    ) -> None:
        super().__init__()
        if rnn not in ("lstm", "gru"):
            raise ValueError(f"rnn: expected 'lstm' or 'gru', got {rnn!r}")
        if not isinstance(communicate, bool):
            raise ValueError(f"communicate: expected True or False, got {communicate!r}")
        self.communicate = communicate
        self.d_in = check_positive_int("d_in", d_in)
        self.n_modules = check_positive_int("n_modules", n_modules)
        self.d_hidden = check_positive_int("d_hidden", d_hidden)
        self.k_active = check_k_active(k_active, n_modules)
        self.rnn_type = rnn
        self.input_attention = InputAttention(
            d_in,
            n_modules,
            d_hidden,
            k_active,
            d_k=input_d_k,
            d_v=input_d_v,
            n_heads=input_heads,
            dropout=dropout,
            selection=selection,
        )
        self.selection = selection
        d_read = self.input_attention.d_read
        self.rnn = (GroupLSTMCell if rnn == "lstm" else GroupGRUCell)(n_modules, d_read, d_hidden)
        self.communication = (
            CommunicationAttention(
                n_modules, d_hidden, n_heads=comm_heads, d_k=comm_d_k, d_v=comm_d_v, dropout=dropout
            )
            if communicate
            else None
        )

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RIMState:
        """Zeros (deterministic: the same at training and evaluation). h, c: (B, n, d_h)."""
        check_positive_int("batch_size", batch_size)
        p = self.rnn.weight_hh
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        h = torch.zeros(batch_size, self.n_modules, self.d_hidden, device=device, dtype=dtype)
        return RIMState(h, torch.zeros_like(h) if self.rnn_type == "lstm" else None)

    def check_state(self, state: object, batch_size: int) -> RIMState:
        """Validate a state for a batch of ``batch_size``: shape (B, n, d_h), the parameters' device, dtype.

        Raises ValueError naming what is wrong. Values are not inspected (see :meth:`forward`).
        """
        h, c = _unpack_state(state)
        shape = (batch_size, self.n_modules, self.d_hidden)
        check_shape("state.h", h, shape)
        check_like("state.h", h, self.rnn.weight_hh)
        if self.rnn_type == "lstm":
            if c is None:
                raise ValueError("state.c: expected a tensor of shape (B, n, d_h) for rnn='lstm', got None")
            check_shape("state.c", c, shape)
            check_like("state.c", c, self.rnn.weight_hh)
        elif c is not None:
            raise ValueError(f"state.c: expected None for rnn='gru', got {type(c).__name__}")
        return RIMState(h, c)

    def step(self, keys: Tensor, values: Tensor, state: RIMState) -> tuple[Tensor, RIMState, StepInfo]:
        """One step from already projected input slots (see ``InputAttention.project_inputs``).

        Args:
            keys: (B, H_in, 1+m, d_k); values: (B, H_in, 1+m, d_v); state: RIMState with h, c (B, n, d_h).
                B >= 1; all on the parameters' device, with their dtype (or autocast's).

        Returns:
            h (B, n, d_h), the new RIMState, and :class:`StepInfo`.

        :class:`~minirims.model.RIM` calls this at every step of its plain loop, so it checks metadata only
        (shapes, device, dtype: no host sync); values are checked once per sequence by ``RIM.forward``.
        """
        for name, t in (("keys", keys), ("values", values)):
            check_tensor(name, t)
            check_like(name, t, self.rnn.weight_hh)
        check_batch("keys", keys)
        h, c = _unpack_state(state)
        check_tensor("state.h", h)
        check_like("state.h", h, self.rnn.weight_hh)
        if c is not None:
            check_tensor("state.c", c)
            check_like("state.c", c, self.rnn.weight_hh)
        comp = self.input_attention.attend(keys, values, h)
        if self.rnn_type == "lstm":
            h_tilde, c_tilde = self.rnn(comp.read, (h, c))
        else:
            h_tilde, c_tilde = self.rnn(comp.read, h), None
        h_tilde = block_inactive_grad(h_tilde, comp.mask)
        if self.communication is not None:
            h_comm, comm_attn = self.communication(h_tilde, comp.mask)
        else:  # the ablation: nothing is read from other modules (an all-zero attention map, one head)
            h_comm, comm_attn = h_tilde, h_tilde.new_zeros(h.shape[0], 1, self.n_modules, self.n_modules)
        active = comp.mask.unsqueeze(-1)
        h_new = torch.where(active, h_comm, h)
        c_new = torch.where(active, c_tilde, c) if c_tilde is not None else None
        return h_new, RIMState(h_new, c_new), StepInfo(comp.mask, comp.attn, comm_attn)

    def forward(self, x: Tensor, state: RIMState | None = None) -> tuple[Tensor, RIMState, StepInfo]:
        """One time step.

        Args:
            x: (B, d_in) one input vector, or (B, m, d_in) a set of m input slots; B >= 1, finite, on the
                parameters' device with their dtype (or autocast's).
            state: RIMState (h, c) each (B, n, d_h), finite; None starts from :meth:`initial_state` (zeros in
                the parameters' dtype, also under ``torch.autocast``: the state does not accumulate in bf16).

        Returns:
            h (B, n, d_h) new module states, the new RIMState, and :class:`StepInfo`
            (mask (B, n), input_attn (B, n, 1+m), comm_attn (B, H, n, n); zeros of (B, 1, n, n) without
            communication).

        Raises:
            ValueError: a wrong shape, an empty batch, another device or dtype, NaN or infinite values.
        """
        given = x
        x = check_input_slots("x", x, self.d_in)
        check_batch("x", x)
        check_like("x", x, self.rnn.weight_hh)
        if state is None:
            state = self.initial_state(x.shape[0], x.device)  # the parameters' dtype, also under autocast
            check_finite(("x", given))
        else:
            state = self.check_state(state, x.shape[0])
            check_finite(("x", given), ("state.h", state.h), ("state.c", state.c))
        keys, values = self.input_attention.project_inputs(x)
        return self.step(keys, values, state)
