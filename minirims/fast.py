"""Notebook 05 ("Making it fast") explains this module: the RIM's time loop, fused for speed.

:class:`~minirims.model.RIM` runs a sequence one of two ways. ``fast=False`` steps
:meth:`~minirims.cell.RIMCell.step`, written to be read: one call per stage, each stage its own batched
matmuls, each checking its inputs. ``fast=True``, the default, calls :func:`run_fast`, which computes *the
same function* with fewer, larger ops. Both use the same parameters; the tests run every behaviour of the
RIM on both paths and check that they agree (float64, 1e-6) with each other and with the loop oracle
(:mod:`minirims.naive`). Every change is exact (algebra or layout):

1. **Hoist what does not depend on the state.** The input slots' keys (and values) are computed for the
   whole sequence in one matmul before the loop, as cuDNN does with ``W_ih x``.
2. **Fold the value projection into the module cells' input weights.** A module's input gates are
   ``read_i W_ih[i]`` with ``read_i = sum_s attn[i, s] (x_s W_v)``; by associativity that is
   ``sum_s attn[i, s] (x_s (W_v W_ih[i]))``, and ``x_s (W_v W_ih[i])`` is hoisted too, so the per-step
   (B, n, H*d_v) x (n, H*d_v, G) product becomes a weighted sum over the m input slots. :func:`should_fold`
   folds when that is fewer multiply-adds (roughly ``m * d_in <= H * d_v``, e.g. a pixel embedding); else the
   values are hoisted and the read is multiplied per step as in the plain path. The folded input is made
   module-major over time, (H*n, T*m*B, G), by one batched matmul, so each step reads a view of it and
   neither direction permutes it.
3. **One matmul per vector read.** Everything that reads h -- the recurrent weights ``W_hh`` and the input
   attention's query ``W_q`` -- is one batched matmul; the communication's q, k and v are one; its f and g
   are one. The weights are concatenated once per call, inside autograd, so gradients reach the parameters.
4. **Module-major layout.** Inside the loop the state is (n, B, d), so every per-module matmul is one
   ``baddbmm`` (bias included) with no transposes; the output is laid out as (B, T, n * d_h) once, at the end.
5. **Broadcast products for tiny attentions.** The n x n communication scores and reads (and the scores of
   a single input slot) are element-wise products and sums, not batches of B*H tiny matmuls.
6. **Write only what is read, validate once.** Without ``trace`` the step returns no attention maps;
   :class:`~minirims.model.RIM` checks shapes, dtype, device and finiteness once per sequence and the step
   is unchecked.
7. **Optionally compile** (``RIM(compile_step=True)``): ``torch.compile`` of :data:`COMPILE_UNROLL` steps
   at a time, so that the cost of calling compiled code is paid once per chunk. Every shape compiles its own
   version, up to :data:`RECOMPILE_LIMIT` per function; past it, or where torch cannot compile, the call runs
   uncompiled, with a warning (once).

What each of these pays, and what was tried and not kept, is measured in ``benchmarks/README.md``.

Dropout draws different random numbers than the plain path (the same distribution, another layout), so
the two agree exactly in evaluation mode or with dropout 0, and in distribution otherwise.

Shapes: B batch, T time, n modules, k active, m input slots, H heads, d_h hidden size per module,
G gate width (4 d_h for LSTM modules, 3 d_h for GRU).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from minirims.cell import RIMCell, RIMState
from minirims.competition import select_topk
from minirims.group import gru_update, lstm_update

__all__ = ["FastWeights", "fast_weights", "should_fold", "run_fast"]


class FastWeights(NamedTuple):
    """The cell's parameters regrouped for the fused loop (all views or products of the originals).

    w_h (n, d_h, G + H_in*d_k) and b_h (n, 1, G + H_in*d_k): ``W_hh | W_q`` and ``b_hh | 0``.
    w_qkv (n, d_h, H*(2 d_k + d_v)), b_qkv (n, 1, ...): the communication's q, k, v.
    w_fg (n, H*d_v, 2 d_h), b_fg (n, 1, 2 d_h): its f and g.
    b_ih (n, 1, G): the input-side gate bias (LSTM: the cell's single bias lives here and b_h is 0).
    w_ih (n, H_in*d_v, G): the module cells' input weights (used when the value projection is not folded).
    """

    w_h: Tensor
    b_h: Tensor
    w_qkv: Tensor
    b_qkv: Tensor
    w_fg: Tensor
    b_fg: Tensor
    b_ih: Tensor
    w_ih: Tensor


def fast_weights(cell: RIMCell) -> FastWeights:
    """The cell's weights concatenated for :func:`run_fast` (in autograd: gradients reach the parameters)."""
    rnn, comm, inp = cell.rnn, cell.communication, cell.input_attention
    n = cell.n_modules
    q_w = inp.query.weight  # (n, d_h, H*d_k), bias-free
    if cell.rnn_type == "lstm":
        b_ih = rnn.bias
        b_hh = torch.zeros_like(rnn.bias)
    else:
        b_ih, b_hh = rnn.bias_ih, rnn.bias_hh
    w_h = torch.cat([rnn.weight_hh, q_w], dim=-1)
    b_h = torch.cat([b_hh, q_w.new_zeros(n, q_w.shape[-1])], dim=-1)
    if comm is not None:
        w_qkv = torch.cat([comm.query.weight, comm.key.weight, comm.value.weight], dim=-1)
        b_qkv = torch.cat([comm.query.bias, comm.key.bias, comm.value.bias], dim=-1)
        w_fg = torch.cat([comm.f.weight, comm.g.weight], dim=-1)
        b_fg = torch.cat([comm.f.bias, comm.g.bias], dim=-1)
    else:  # a cell without communication (an ablation): nothing to concatenate
        w_qkv = b_qkv = w_fg = b_fg = q_w.new_zeros(n, 0)
    return FastWeights(
        w_h,
        b_h.unsqueeze(1),
        w_qkv,
        b_qkv.unsqueeze(1),
        w_fg,
        b_fg.unsqueeze(1),
        b_ih.unsqueeze(1),
        rnn.weight_ih,
    )


def should_fold(cell: RIMCell, n_slots: int, rows: int | None = None) -> bool:
    """Fold W_v into W_ih when that costs fewer multiply-adds.

    Per input row (one sample at one step) the folded path projects the m slots straight to every module's
    gates (``m * d_in * H * n * G``) where the unfolded one projects them to values (``m * d_in * H * d_v``)
    and each module's read through W_ih (``n * H * d_v * G``); folding itself costs one weight product
    (``H * d_v * d_in * n * G``) per call. ``rows`` = B * T of the call; None compares the per-row costs only
    (a long sequence), which reduces to about ``m * d_in <= H * d_v``. A call of one step at a time (a video
    rollout) rarely pays for the product.
    """
    inp = cell.input_attention
    h, d_v, d_in, n = inp.n_heads, inp.d_v, cell.d_in, cell.n_modules
    g = (4 if cell.rnn_type == "lstm" else 3) * cell.d_hidden
    folded = n_slots * d_in * h * n * g
    unfolded = n_slots * d_in * h * d_v + n * h * d_v * g
    if rows is None:
        return folded <= unfolded
    return rows * folded + h * d_v * d_in * n * g <= rows * unfolded


def _hoist_inputs(cell: RIMCell, x: Tensor, fold: bool) -> tuple[Tensor, Tensor]:
    """Keys (T, m, B, H, d_k), and folded gate inputs (H, n, T, m, B, G) or values (T, m, B, H, d_v).

    The null slot is not materialised: its key and value are exactly zero (bias-free projections), so its
    score is 0 and it adds nothing to the read.
    """
    inp = cell.input_attention
    h_in, d_k, d_v = inp.n_heads, inp.d_k, inp.d_v
    xs = x.permute(1, 2, 0, 3)  # (T, m, B, d_in)
    t_len, m, b, _ = xs.shape
    keys = F.linear(xs, inp.key.weight).view(t_len, m, b, h_in, d_k)
    if not fold:
        return keys, F.linear(xs, inp.value.weight).view(t_len, m, b, h_in, d_v)
    n = cell.n_modules
    w_v = inp.value.weight.view(h_in, d_v, cell.d_in)  # nn.Linear: (out, in)
    w_ih = cell.rnn.weight_ih.view(n, h_in, d_v, -1)  # (n, H, d_v, G): rows of the read, head by head
    w_fold = torch.einsum("hvi,nhvg->hnig", w_v, w_ih).reshape(h_in * n, cell.d_in, -1)  # (H*n, d_in, G)
    # One batched matmul whose output is already module-major, (H*n, T*m*B, G): each step's slice is a view
    # with contiguous (B, G) rows, so neither the forward nor the backward permutes the (large) result.
    rows = xs.reshape(1, t_len * m * b, cell.d_in).expand(h_in * n, -1, -1)
    folded = torch.bmm(rows, w_fold)
    return keys, folded.view(h_in, n, t_len, m, b, -1)  # (H, n, T, m, B, G)


def _select(null: Tensor, k: int) -> Tensor:
    """(n, B) null attention -> (n, B) bool mask of the k least-null modules, picked as topk_mask does.

    Ties go to the lower module index (:func:`~minirims.competition.select_topk`, a stable sort), so the
    fused loop, the plain path and the loop oracle pick the same modules from the tied zero state.
    """
    scores = -null.detach().t().contiguous()  # (B, n): the same values and layout as topk_mask sees
    return select_topk(scores, k).t()


class _StepConfig(NamedTuple):
    """The sizes and switches of one fused step (constants: a compiled step specialises on them)."""

    n: int
    k: int
    b: int
    m: int
    h_in: int
    d_k_in: int
    heads: int
    d_k: int
    d_v: int
    g_width: int
    lstm: bool
    fold: bool
    p_in: float
    p_comm: float
    trace: bool
    communicate: bool
    random: bool


def _step(
    h: Tensor,
    c: Tensor,
    keys_t: Tensor,
    feed_t: Tensor,
    rand_t: Tensor | None,
    keep_t: Tensor | None,
    w: FastWeights,
    cfg: _StepConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """One fused time step in module-major layout.

    h, c (n, B, d_h); keys_t (m, B, H_in, d_k); feed_t (H_in, n, m, B, G) folded or (m, B, H_in, d_v);
    rand_t (B, n) the step's random scores when ``cfg.random`` (the ablation), else None; keep_t (1, B, 1),
    0 where the state is reset to zeros before this step (``resets``), or None.
    Returns h, c (n, B, d_h), mask (n, B) bool, and with ``cfg.trace`` the input attention weights
    (n, B, H_in, 1+m) and communication attention (B, H, n, n) (else None, None).
    """
    n, b, m, h_in, g_width = cfg.n, cfg.b, cfg.m, cfg.h_in, cfg.g_width
    heads, d_k, d_v = cfg.heads, cfg.d_k, cfg.d_v  # the communication's
    if keep_t is not None:  # a new sequence starts here for some examples: their state is zeros, as at t = 0
        h, c = h * keep_t, c * keep_t
    # Everything that reads h, in one batched matmul: recurrent gates and input-attention queries.
    hq = torch.baddbmm(w.b_h, h, w.w_h)  # (n, B, G + H_in*d_k)
    gh, q = hq.split([g_width, h_in * cfg.d_k_in], dim=-1)
    q = q.view(n, b, h_in, cfg.d_k_in)
    # Competition: scores over [null, slots]; the null slot's score is exactly 0.
    if m == 1:  # a broadcast product beats a batch of 1x1 matmuls
        scores = (q * keys_t[0]).sum(-1, keepdim=True)
    else:
        scores = torch.einsum("nbhd,mbhd->nbhm", q, keys_t)
    scores = scores * (1.0 / math.sqrt(cfg.d_k_in))
    null_score = scores.new_zeros(n, b, h_in, 1)
    weights = torch.softmax(torch.cat([null_score, scores], dim=-1), dim=-1)  # (n, B, H_in, 1+m)
    if cfg.random:  # the ablation: k modules at random (the plain path's draw, see run_fast)
        mask = select_topk(rand_t, cfg.k).t()
    else:
        mask = _select(weights[..., 0].mean(-1), cfg.k)  # (n, B) bool
    read_w = (F.dropout(weights, cfg.p_in, True) if cfg.p_in > 0 else weights)[..., 1:]  # (n, B, H_in, m)
    if cfg.fold:  # gates = sum over slots and heads of weight * x (W_v W_ih)
        gi = torch.einsum("nbhm,hnmbg->nbg", read_w, feed_t) + w.b_ih
    else:
        read = torch.einsum("nbhm,mbhd->nbhd", read_w, feed_t).reshape(n, b, -1)  # (n, B, H_in*d_v)
        gi = torch.baddbmm(w.b_ih, read, w.w_ih)
    # Independent dynamics: the group cells' equations on the fused gates.
    if cfg.lstm:
        h_tilde, c_tilde = lstm_update(gi + gh, c)
    else:
        h_tilde, c_tilde = gru_update(gi, gh, h), c
    active = mask.unsqueeze(-1)  # (n, B, 1)
    h_tilde = torch.where(active, h_tilde, h_tilde.detach())  # inactive candidates get no gradient
    c_new = torch.where(active, c_tilde, c) if cfg.lstm else c
    if not cfg.communicate:  # the ablation: active modules take h~ as it is
        h_new = torch.where(active, h_tilde, h)
        if not cfg.trace:
            return h_new, c_new, mask, None, None
        return h_new, c_new, mask, weights, h.new_zeros(b, 1, n, n)
    # Communication: q, k, v in one matmul, f and g in one.
    qkv = torch.baddbmm(w.b_qkv, h_tilde, w.w_qkv)  # (n, B, H*d_k | H*d_k | H*d_v)
    cq, ck, cv = (t.view(n, b, heads, -1) for t in qkv.split([heads * d_k, heads * d_k, heads * d_v], -1))
    # n x n attention per example and head: broadcast products, not a batch of B*H tiny matmuls.
    scores = (cq.unsqueeze(1) * ck.unsqueeze(0)).sum(-1) * (1.0 / math.sqrt(d_k))  # (n, n, B, H)
    attn = torch.softmax(scores, dim=1)  # row: the reading module, over the modules read (dim 1)
    dropped = F.dropout(attn, cfg.p_comm, True) if cfg.p_comm > 0 else attn
    a = (dropped.unsqueeze(-1) * cv.unsqueeze(0)).sum(1).reshape(n, b, heads * d_v)  # (n, B, H*d_v)
    f_a, g_a = torch.baddbmm(w.b_fg, a, w.w_fg).chunk(2, dim=-1)
    # Masked update: active modules take the new state, inactive ones keep theirs bit for bit.
    h_new = torch.where(active, h_tilde + torch.sigmoid(g_a) * torch.tanh(f_a), h)
    if not cfg.trace:  # outputs nobody reads would still be written at every step
        return h_new, c_new, mask, None, None
    return h_new, c_new, mask, weights, attn.permute(2, 3, 0, 1)  # attn (B, H, n, n), as the plain path


#: time steps per compiled call of :func:`_steps` (``run_fast(compile=True)``): the cost of calling a
#: compiled function (guards, the autograd wrapper) is paid once per chunk, and inductor fuses across the
#: steps of a chunk; compile time grows with the chunk (the trade-off is measured in benchmarks/README.md).
COMPILE_UNROLL = 4

#: how many compiled versions of one function ``torch.compile`` keeps before it stops compiling it (the
#: torch default, 8, is fewer than one process meets: every batch size (the last, partial batch too), with and
#: without a starting state that needs its gradient, training and evaluation, for every RIM of an experiment,
#: e.g. the three RIMs of the MNIST ``full`` profile). :func:`run_fast` raises torch's limit to this when it
#: compiles (never lowers it).
RECOMPILE_LIMIT = 64

#: the ``torch.compile`` backend of the compiled step (tests swap in a cheaper one)
COMPILE_BACKEND = "inductor"

_COMPILED: dict[str, object] = {}
_WARNED: set[str] = set()


def _steps(
    h: Tensor,
    c: Tensor,
    keys_chunk: tuple[Tensor, ...],
    feed_chunk: tuple[Tensor, ...],
    rand_chunk: tuple[Tensor | None, ...],
    keep_chunk: tuple[Tensor | None, ...],
    w: FastWeights,
    cfg: _StepConfig,
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """A chunk of untraced steps in one call: h, c after the last one and the h of each step."""
    outs = []
    for keys_t, feed_t, rand_t, keep_t in zip(keys_chunk, feed_chunk, rand_chunk, keep_chunk, strict=True):
        h, c, _, _, _ = _step(h, c, keys_t, feed_t, rand_t, keep_t, w, cfg)
        outs.append(h)
    return h, c, tuple(outs)


def _raise_recompile_limit() -> None:
    """torch's limit on compiled versions per function, at least :data:`RECOMPILE_LIMIT` (``recompile_limit``
    in recent torch, ``cache_size_limit`` before)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, name) < RECOMPILE_LIMIT:
        setattr(config, name, RECOMPILE_LIMIT)


def _compiled(name: str):  # noqa: ANN202 (a compiled callable)
    """:func:`_step` or :func:`_steps` through ``torch.compile``, or the plain function where compiling fails.

    Compiled on first use, one version per shape set (``dynamic=False``), as one whole graph
    (``fullgraph=True``): where torch cannot compile a call as one graph, or has reached its limit of
    compiled versions, the call runs the plain function instead, and a RuntimeWarning says so once (torch
    itself would fall back to slower, partly compiled or plain code without a word).
    """
    if name not in _COMPILED:
        _raise_recompile_limit()
        plain = _step if name == "step" else _steps
        compiled = torch.compile(plain, dynamic=False, fullgraph=True, backend=COMPILE_BACKEND)
        fallback_errors = tuple(
            getattr(torch._dynamo.exc, e)
            for e in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit", "Unsupported")
            if hasattr(torch._dynamo.exc, e)
        )

        def call(*args):  # noqa: ANN002, ANN202
            try:
                return compiled(*args)
            except fallback_errors as err:
                if not _WARNED:  # once per process
                    _WARNED.add(name)
                    warnings.warn(
                        f"minirims.fast: torch.compile could not compile the RIM's {name} for this call "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it runs "
                        f"uncompiled where this happens (the same function, slower). Recompile limit: "
                        f"{RECOMPILE_LIMIT} versions per function (minirims.fast.RECOMPILE_LIMIT).",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                return plain(*args)

        _COMPILED[name] = call
    return _COMPILED[name]


def run_fast(
    cell: RIMCell,
    x: Tensor,
    state: RIMState,
    trace: bool = False,
    fold: bool | None = None,
    compile: bool = False,
    resets: Tensor | None = None,
) -> tuple[Tensor, RIMState, tuple[Tensor, Tensor, Tensor] | None]:
    """The RIM over a whole sequence, fused (see the module docstring). Inputs are not validated here.

    Args:
        cell: the :class:`~minirims.cell.RIMCell` whose parameters to use (``training`` sets dropout).
        x: (B, T, m, d_in) input slots at every step.
        state: initial RIMState, h and c (None for GRU) each (B, n, d_h).
        trace: also return masks (B, T, n), input attention (B, T, n, 1+m), communication attention
            (B, T, H, n, n).
        fold: fold W_v into W_ih (None: when :func:`should_fold` says it pays).
        compile: step with ``torch.compile`` (inductor): one compiled graph per chunk of
            :data:`COMPILE_UNROLL` steps, forward and backward. The first call compiles (tens of seconds on a
            CPU). A traced run, and the last ``T % COMPILE_UNROLL`` steps, go one compiled step at a time.
        resets: (B, T) bool or None: where True, the state is set back to zeros before that step.

    Returns:
        outputs (B, T, n*d_h), the final RIMState, and the trace tensors (or None).
    """
    inp, comm = cell.input_attention, cell.communication
    n, k, d_h = cell.n_modules, cell.k_active, cell.d_hidden
    b, t_len, m, _ = x.shape
    h_in, d_k_in = inp.n_heads, inp.d_k
    heads, d_k, d_v = (comm.n_heads, comm.d_k, comm.d_v) if comm is not None else (0, 0, 0)
    lstm = cell.rnn_type == "lstm"
    g_width = (4 if lstm else 3) * d_h
    fold = should_fold(cell, m, b * t_len) if fold is None else fold
    p_in = inp.dropout if inp.training else 0.0
    p_comm = comm.dropout if comm is not None and comm.training else 0.0
    w = fast_weights(cell)
    keys, feed = _hoist_inputs(cell, x, fold)

    random = cell.selection == "random"
    cfg = _StepConfig(
        n,
        k,
        b,
        m,
        h_in,
        d_k_in,
        heads,
        d_k,
        d_v,
        g_width,
        lstm,
        fold,
        p_in,
        p_comm,
        trace,
        comm is not None,
        random,
    )
    # The ablation's random scores, one (B, n) draw per step in step order: the plain path's draws, exactly.
    rand_ts = tuple(torch.rand(b, n, device=x.device) if random else None for _ in range(t_len))
    keep = None if resets is None else (~resets).to(state.h.dtype)  # (B, T): 0 where a sequence restarts
    keep_ts = tuple(None if keep is None else keep[:, i].view(1, b, 1) for i in range(t_len))
    h = state.h.transpose(0, 1)  # (n, B, d_h)
    c = state.c.transpose(0, 1) if lstm else h  # (GRU: a placeholder the step ignores)
    outs, masks, in_attn, comm_attn = [], [], [], []
    # unbind (not indexing): its backward stacks the T gradients once, straight into the layout of the hoisted
    # tensor (the folded feed is unbound along its time axis, dim 2, so that needs no permuting copy).
    keys_ts, feed_ts = keys.unbind(0), feed.unbind(2 if fold else 0)
    if compile and not trace:
        unroll = COMPILE_UNROLL
        whole = t_len - t_len % unroll
        steps = _compiled("steps")
        for i in range(0, whole, unroll):
            chunk = slice(i, i + unroll)
            h, c, hs = steps(h, c, keys_ts[chunk], feed_ts[chunk], rand_ts[chunk], keep_ts[chunk], w, cfg)
            outs.extend(hs)
        keys_ts, feed_ts, rand_ts, keep_ts = (
            keys_ts[whole:],
            feed_ts[whole:],
            rand_ts[whole:],
            keep_ts[whole:],
        )
    step = _compiled("step") if compile else _step
    for keys_t, feed_t, rand_t, keep_t in zip(keys_ts, feed_ts, rand_ts, keep_ts, strict=True):
        h, c, mask, weights, attn = step(h, c, keys_t, feed_t, rand_t, keep_t, w, cfg)
        outs.append(h)
        if trace:
            masks.append(mask.t())
            in_attn.append(weights.mean(2).transpose(0, 1))
            comm_attn.append(attn)
    out = torch.stack(outs).permute(2, 0, 1, 3).reshape(b, t_len, n * d_h)  # (T, n, B, d) -> (B, T, n*d)
    final = RIMState(h.transpose(0, 1), c.transpose(0, 1) if lstm else None)
    record = (torch.stack(masks, 1), torch.stack(in_attn, 1), torch.stack(comm_attn, 1)) if trace else None
    return out, final, record
