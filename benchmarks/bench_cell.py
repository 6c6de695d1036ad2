"""Training-step throughput of the RIM's implementations against ``nn.LSTM``.

One training step = forward over a whole sequence, cross-entropy on the last step's output, backward, and an
Adam step. Every contender sees the same task: sequential MNIST's shape (B sequences of T binary pixels, each
pixel embedded by ``nn.Embedding(2, d_in)``, a linear head to 10 classes on the last output). Contenders
(:data:`IMPLEMENTATIONS`; all RIMs with dropout 0, like the loop version):

- ``lstm``: ``torch.nn.LSTM`` with the same total hidden size (n * d_h), cuDNN / oneDNN fused kernels.
- ``plain``: ``RIM(fast=False)``, stepping :class:`minirims.cell.RIMCell` (the code the course builds).
- ``fast``: ``RIM()``, the default: the fused loop of :mod:`minirims.fast`.
- ``compiled``: ``RIM(compile_step=True)``: the fused loop through ``torch.compile``.
- ``loop``: :class:`minirims.naive.LoopRIMCell` stepped over the sequence: the same RIM computed with a
  Python loop over modules (~n times more small kernels per step). It has no dropout, and it does not
  block the gradient of inactive modules' discarded candidate state (a few more backward ops, same FLOPs).
- ``dense``: the plain RIM with its group LSTM replaced by ONE dense LSTM cell of n*d_h units whose
  off-diagonal blocks are masked to zero (:class:`DenseBlockLSTMCell`): a pitfall of public
  implementations. It computes exactly the same function but does n times the recurrent FLOPs and keeps n
  times the recurrent weights (and Adam state).
- ``graphed`` (CUDA only): the fused RIM's whole training step captured once as a CUDA graph and replayed.

A contender that fails (a compile or a capture that this PyTorch build refuses) is reported as failed, with
its error, and the others are timed as usual.

Timing: ``--warmup`` untimed steps, then ``--iters`` interleaved rounds; the median per contender
(``torch.cuda.synchronize`` around each step on CUDA). Ratios are between contenders timed in one run on one
machine; never compare absolute numbers across machines or loads. Results: ``benchmarks/README.md``.

Run from the repository root::

    python -m benchmarks.bench_cell                       # CPU: B=64, T=196, 1 thread, 5 timed steps each
    python -m benchmarks.bench_cell --device cuda --iters 20 --json results/bench_cell_h100.json

Shapes: B batch, T time, n modules, k active, d_h hidden size per module, d_in embedding size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from minirims.cell import RIMCell, RIMState
from minirims.experiments.common import provenance
from minirims.experiments.train import denormals_flushed
from minirims.group import GroupLSTMCell
from minirims.model import RIM
from minirims.naive import LoopRIMCell

__all__ = [
    "IMPLEMENTATIONS",
    "LABELS",
    "BenchConfig",
    "DenseBlockLSTMCell",
    "LoopRIM",
    "SequenceClassifier",
    "build_model",
    "count_parameters",
    "run_benchmark",
    "format_table",
    "main",
]

IMPLEMENTATIONS = ("lstm", "plain", "fast", "compiled", "loop", "dense", "graphed")
LABELS = {
    "lstm": "nn.LSTM (n*d_h units)",
    "plain": "RIM, plain path (RIMCell.step)",
    "fast": "RIM, fused loop (default)",
    "compiled": "RIM, fused + torch.compile",
    "loop": "RIM, loop over modules",
    "dense": "RIM, dense block-diag LSTM",
    "graphed": "RIM, fused, CUDA graph of the step",
}
#: contenders that run only on CUDA (the default list on a CPU leaves them out)
CUDA_ONLY = ("graphed",)
#: reference contenders: every row gets ``time_vs_<ref>`` for those that ran
REFERENCES = ("lstm", "plain")


#: the sizes the benchmark reports: the paper's MNIST model, and the widths of the MNIST cpu profile
#: (``minirims.experiments.mnist_resolution``); d_in 16 is the experiments' pixel embedding
SIZES: dict[str, dict[str, int]] = {
    "paper": {},
    "cpu": {"d_hidden": 32, "input_d_k": 32, "input_d_v": 64, "comm_d_k": 16, "comm_d_v": 16},
}


@dataclass(frozen=True)
class BenchConfig:
    """Model and data sizes (defaults: the paper's sequential-MNIST settings at 14x14)."""

    batch: int = 64
    steps: int = 196
    n_modules: int = 6
    k_active: int = 4
    d_hidden: int = 100
    d_in: int = 16
    input_heads: int = 1
    input_d_k: int = 64
    input_d_v: int = 400
    comm_heads: int = 4
    comm_d_k: int = 32
    comm_d_v: int = 32
    n_classes: int = 10
    lr: float = 7e-4

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "lr":
                if not (isinstance(value, (int, float)) and value > 0):
                    raise ValueError(f"lr: expected a positive number, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.k_active > self.n_modules:
            raise ValueError(
                f"k_active: expected an int in [1, n_modules={self.n_modules}], got {self.k_active}"
            )

    @classmethod
    def preset(cls, size: str, **overrides: Any) -> BenchConfig:
        """``paper`` (6 x 100 vs LSTM-600) or ``cpu`` (the MNIST cpu profile's widths: 6 x 32 vs LSTM-192)."""
        if size not in SIZES:
            raise ValueError(f"size: expected one of {sorted(SIZES)}, got {size!r}")
        return cls(**{**SIZES[size], **overrides})

    def cell_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`minirims.cell.RIMCell` (dropout 0 for a like-for-like comparison)."""
        return dict(
            n_modules=self.n_modules,
            k_active=self.k_active,
            d_hidden=self.d_hidden,
            input_heads=self.input_heads,
            input_d_k=self.input_d_k,
            input_d_v=self.input_d_v,
            comm_heads=self.comm_heads,
            comm_d_k=self.comm_d_k,
            comm_d_v=self.comm_d_v,
            dropout=0.0,
        )


class DenseBlockLSTMCell(nn.Module):
    """The pitfall, for comparison only: one dense LSTM cell of n*d_h units, off-diagonal blocks masked to 0.

    Drop-in for :class:`minirims.group.GroupLSTMCell` (same call signature and result). The modules' inputs
    are concatenated into one (B, n*d_in) vector and multiplied by a (n*d_in, 4*n*d_h) matrix of which only
    the n diagonal blocks are non-zero, so n-1 of every n multiply-adds (and n-1 of every n weights and Adam
    moments) are wasted. The masks are applied at every step (``weight * mask``), so the off-diagonal
    blocks get zero gradient and stay zero under Adam. Gate layout: [i | f | g | o], each gate's n*d_h
    units in module order.

    Shapes: x (B, n, d_in); h, c (B, n, d_h). weight_ih (4*n*d_h, n*d_in), weight_hh (4*n*d_h, n*d_h),
    bias (4*n*d_h); masks of the same shapes as the weights (buffers).
    """

    def __init__(self, n: int, d_in: int, d_h: int) -> None:
        super().__init__()
        self.n, self.d_in, self.d_h = n, d_in, d_h
        self.weight_ih = nn.Parameter(torch.empty(4 * n * d_h, n * d_in))
        self.weight_hh = nn.Parameter(torch.empty(4 * n * d_h, n * d_h))
        self.bias = nn.Parameter(torch.empty(4 * n * d_h))
        self.register_buffer("mask_ih", self._block_mask(n, d_in, d_h))
        self.register_buffer("mask_hh", self._block_mask(n, d_h, d_h))
        bound = 1.0 / d_h**0.5
        with torch.no_grad():
            for p in (self.weight_ih, self.weight_hh, self.bias):
                p.uniform_(-bound, bound)
            self.weight_ih.mul_(self.mask_ih)
            self.weight_hh.mul_(self.mask_hh)

    @staticmethod
    def _block_mask(n: int, d_in: int, d_h: int) -> Tensor:
        mask = torch.zeros(4, n, d_h, n, d_in)
        for i in range(n):
            mask[:, i, :, i, :] = 1.0
        return mask.reshape(4 * n * d_h, n * d_in)

    @classmethod
    def from_group(cls, group: GroupLSTMCell) -> DenseBlockLSTMCell:
        """A dense cell holding ``group``'s weights on its diagonal blocks (computes the same function)."""
        n, d_in, d_h = group.n, group.d_in, group.d_h
        dense = cls(n, d_in, d_h).to(device=group.weight_ih.device, dtype=group.weight_ih.dtype)
        with torch.no_grad():
            w_ih = dense.weight_ih.view(4, n, d_h, n, d_in)
            w_hh = dense.weight_hh.view(4, n, d_h, n, d_h)
            w_ih.zero_()
            w_hh.zero_()
            for i in range(n):
                # group (d_in, 4*d_h) -> (4, d_h, d_in): gate-major rows, like nn.LSTMCell.weight_ih
                w_ih[:, i, :, i, :] = group.weight_ih[i].view(d_in, 4, d_h).permute(1, 2, 0)
                w_hh[:, i, :, i, :] = group.weight_hh[i].view(d_h, 4, d_h).permute(1, 2, 0)
            dense.bias.copy_(group.bias.view(n, 4, d_h).transpose(0, 1).reshape(-1))
        return dense

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step. x (B, n, d_in), state (h, c) each (B, n, d_h) -> (h', c') each (B, n, d_h)."""
        h, c = state
        b = x.shape[0]
        gates = F.linear(x.reshape(b, -1), self.weight_ih * self.mask_ih, self.bias) + F.linear(
            h.reshape(b, -1), self.weight_hh * self.mask_hh
        )
        i, f, g, o = gates.chunk(4, dim=-1)  # each (B, n*d_h), module-major
        c_new = torch.sigmoid(f) * c.reshape(b, -1) + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new.view(b, self.n, self.d_h), c_new.view(b, self.n, self.d_h)


class LoopRIM(nn.Module):
    """A sequence layer over :class:`minirims.naive.LoopRIMCell`: x (B, T, d_in) -> outputs (B, T, n*d_h)."""

    def __init__(self, cell: LoopRIMCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        b, t_len = x.shape[:2]
        n, d_h = self.cell.n, self.cell.d_h
        h = x.new_zeros(b, n, d_h)
        state = RIMState(h, torch.zeros_like(h))
        outputs = []
        for t in range(t_len):
            h, state, _ = self.cell(x[:, t], state)
            outputs.append(h.reshape(b, n * d_h))
        return torch.stack(outputs, dim=1)


class _FirstOutput(nn.Module):
    """Adapter: a recurrent layer returning a tuple -> its first element, the outputs (B, T, d_out)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)[0]


class SequenceClassifier(nn.Module):
    """Embedding of binary pixels -> recurrent core -> linear head on the last step.

    tokens (B, T) int64 in {0, 1} -> logits (B, n_classes). ``core`` maps (B, T, d_in) -> (B, T, d_out).
    """

    def __init__(self, core: nn.Module, d_in: int, d_out: int, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(2, d_in)
        self.core = core
        self.head = nn.Linear(d_out, n_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.core(self.embed(tokens))[:, -1])


def build_model(impl: str, config: BenchConfig) -> SequenceClassifier:
    """The classifier for one contender (see the module docstring); weights seeded by the caller."""
    d_total = config.n_modules * config.d_hidden
    if impl in ("plain", "fast", "compiled", "graphed"):
        rim = RIM(config.d_in, fast=impl != "plain", compile_step=impl == "compiled", **config.cell_kwargs())
        core: nn.Module = _FirstOutput(rim)
    elif impl == "lstm":
        core = _FirstOutput(nn.LSTM(config.d_in, d_total, batch_first=True))
    elif impl == "loop":
        core = LoopRIM(LoopRIMCell.from_cell(RIMCell(config.d_in, **config.cell_kwargs())))
    elif impl == "dense":
        rim = RIM(config.d_in, fast=False, **config.cell_kwargs())  # the fused loop needs the group cell
        rim.cell.rnn = DenseBlockLSTMCell.from_group(rim.cell.rnn)
        core = _FirstOutput(rim)
    else:
        raise ValueError(f"impl: expected one of {IMPLEMENTATIONS}, got {impl!r}")
    return SequenceClassifier(core, config.d_in, d_total, config.n_classes)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (for ``dense``: including the masked zeros, which Adam keeps state for)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Contender:
    """One contender, ready to step: its model, a training-step closure and the times measured so far."""

    impl: str
    model: SequenceClassifier
    step: Callable[[], Tensor]
    saved_mib: float
    first_step_s: float = 0.0
    times: list[float] = field(default_factory=list)
    peak_mem_mib: float | None = None
    loss: float = float("nan")


def _saved_activation_mib(model: nn.Module, tokens: Tensor) -> float:
    """MiB of tensors autograd saves for the backward in one forward (the activation memory of training).

    Counted with ``saved_tensors_hooks``; parameters (saved by reference, not copied) are not counted, and a
    storage saved twice counts once.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(x: Tensor) -> Tensor:
        storage = x.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model(tokens)
    return sum(seen.values()) / 2**20


def _prepare(impl: str, config: BenchConfig, device: torch.device, seed: int) -> _Contender:
    torch.manual_seed(seed)
    model = build_model(impl, config).to(device).train()
    graphed = impl == "graphed"
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, capturable=graphed)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 2, (config.batch, config.steps), generator=gen).to(device)
    labels = torch.randint(0, config.n_classes, (config.batch,), generator=gen).to(device)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tokens), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    saved = _saved_activation_mib(model, tokens) if impl not in ("compiled", "graphed") else float("nan")
    if not graphed:
        return _Contender(impl, model, step, saved)
    # The whole training step as one CUDA graph: warm up on a side stream, capture once, then replay. The
    # inputs are static tensors (a training loop would copy each batch into them before the replay).
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = F.cross_entropy(model(tokens), labels)
        static_loss.backward()
        optimizer.step()

    def replay() -> Tensor:
        graph.replay()
        return static_loss.detach()

    return _Contender(impl, model, replay, saved)


def _timed(contender: _Contender, device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    contender.loss = float(contender.step())
    _synchronize(device)
    return time.perf_counter() - start


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else "a non-negative int"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def run_benchmark(
    config: BenchConfig,
    impls: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    iters: int = 3,
    warmup: int = 1,
    seed: int = 0,
    show_progress: bool = True,
    flush_denormals: bool = True,
) -> dict[str, Any]:
    """Time every contender in ``impls``, interleaved, and add ratios.

    Every contender is built and warmed up first (``warmup`` steps; the first one, which for ``compiled``
    includes compiling, is reported as ``first_step_s``); then ``iters`` rounds each time one step of every
    contender in turn, so that a change in the machine's load hits all of them alike. The median of each
    contender's timed steps is its ms per step.

    On a CPU the steps run with denormal floats flushed to zero, as training does
    (:func:`minirims.experiments.train.denormals_flushed`), unless ``flush_denormals`` is False.

    Returns a dict: settings (config, device, iters, warmup, seed, threads, flush_denormals: whether flushing
    was on), environment (device name, the CPU's model and flags, torch version, python, load average before
    and after), results (one dict per contender: impl, label, params
    (whole classifier), core_params (recurrent layer), ms_per_step, seq_per_s, times_ms, first_step_s,
    saved_mib (activations autograd keeps for the backward; not measured through torch.compile),
    peak_mem_mib (CUDA only, measured during the warm-up: what one step allocates beyond what the process
    already holds; else None), loss (last step, finite: the step really ran), and
    ``time_vs_<ref>`` for each reference in :data:`REFERENCES` that ran: this contender's ms per step divided
    by the reference's, > 1 means slower), and failed: ``{impl: "ErrorType: message"}`` for each contender
    that raised while it was built, warmed up (a compile, a CUDA-graph capture) or timed.

    A contender that raises is recorded in ``failed`` and left out of ``results``; the others are still
    timed and reported. Arguments are checked before any work (a ValueError).
    """
    device = torch.device(device)
    if impls is None:
        impls = [i for i in IMPLEMENTATIONS if device.type == "cuda" or i not in CUDA_ONLY]
    impls = list(impls)
    unknown = [i for i in impls if i not in IMPLEMENTATIONS]
    if not impls or unknown or len(set(impls)) != len(impls):
        raise ValueError(f"impls: expected distinct names from {IMPLEMENTATIONS}, got {impls!r}")
    for impl in impls:
        if impl in CUDA_ONLY and device.type != "cuda":
            raise ValueError(f"impls: {impl!r} needs a CUDA device, got {device}")
    iters = _check_count("iters", iters, 1)
    warmup = _check_count("warmup", warmup, 0)
    load_before = _load()
    contenders: list[_Contender] = []
    failed: dict[str, str] = {}
    with (
        denormals_flushed(device, flush_denormals) as flushed,
        tqdm(total=len(impls) * (iters + warmup + 1), desc="bench_cell", disable=not show_progress) as bar,
    ):
        for impl in impls:
            bar.set_postfix_str(f"{impl}: build")
            try:
                contenders.append(_build_and_warm_up(impl, config, device, seed, warmup, bar))
            except Exception as err:  # a failed compile or capture must not cost the others
                failed[impl] = _describe(err, "build and warm-up")
            bar.update(1)
        for round_ in range(iters):
            for contender in list(contenders):
                bar.set_postfix_str(contender.impl)
                try:
                    contender.times.append(_timed(contender, device))
                except Exception as err:
                    failed[contender.impl] = _describe(err, f"timed step {round_ + 1}")
                    contenders.remove(contender)
                bar.update(1)
    results = []
    for c in contenders:
        median = statistics.median(c.times)
        results.append(
            {
                "impl": c.impl,
                "label": LABELS[c.impl],
                "params": count_parameters(c.model),
                "core_params": count_parameters(c.model.core),
                "ms_per_step": 1e3 * median,
                "seq_per_s": config.batch / median,
                "times_ms": [1e3 * x for x in c.times],
                "first_step_s": c.first_step_s if warmup else None,
                "saved_mib": None if c.saved_mib != c.saved_mib else c.saved_mib,
                "peak_mem_mib": c.peak_mem_mib,
                "loss": c.loss,
            }
        )
    by_impl = {r["impl"]: r for r in results}
    for r in results:
        for ref in REFERENCES:
            r[f"time_vs_{ref}"] = r["ms_per_step"] / by_impl[ref]["ms_per_step"] if ref in by_impl else None
    code = provenance(device)
    return {
        "settings": {
            **asdict(config),
            "device": str(device),
            "iters": iters,
            "warmup": warmup,
            "seed": seed,
            "threads": torch.get_num_threads(),
            "dropout": 0.0,
            "dtype": "float32",
            "flush_denormals": flushed,
            "timing": "interleaved rounds, median per contender",
        },
        "environment": {
            # the code that was timed: the checkout's commit, and whether it had uncommitted edits
            "git_commit": code["git_commit"],
            "git_dirty": code["git_dirty"],
            "device_name": code["device_name"],
            "cpu_model": code["cpu_model"],
            "cpu_flags": code["cpu_flags"],
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_avg_before": load_before,
            "load_avg_after": _load(),
        },
        "results": results,
        "failed": failed,
    }


def _build_and_warm_up(
    impl: str, config: BenchConfig, device: torch.device, seed: int, warmup: int, bar: tqdm
) -> _Contender:
    """Build one contender and run its warm-up steps (the first timed apart: it compiles or captures)."""
    contender = _prepare(impl, config, device, seed)
    if device.type == "cuda":
        _synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        elapsed = _timed(contender, device)
        if i == 0:
            contender.first_step_s = elapsed
        bar.update(1)
    if device.type == "cuda" and warmup:  # what one training step adds to what is already held
        contender.peak_mem_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return contender


def _describe(err: BaseException, where: str) -> str:
    """``"ErrorType: first line of the message (where)"``, at most 500 characters."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:400]} ({where})"


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of one :func:`run_benchmark` report, with the settings it ran at."""
    s, env = report["settings"], report["environment"]
    on_cuda = any(r["peak_mem_mib"] is not None for r in report["results"])
    lines = [
        f"device: {s['device']} ({env['device_name']}), torch {env['torch']}, threads {s['threads']}, "
        f"load avg (1/5/15 min) before {env['load_avg_before']} after {env['load_avg_after']}",
        f"settings: B={s['batch']} T={s['steps']} n={s['n_modules']} k={s['k_active']} d_h={s['d_hidden']} "
        f"d_in={s['d_in']} (nn.Embedding(2, d_in)), input attn {s['input_heads']} head d_k {s['input_d_k']} "
        f"d_v {s['input_d_v']}, comm {s['comm_heads']} heads d_k {s['comm_d_k']} d_v {s['comm_d_v']}, "
        f"dropout 0, float32",
        f"step: forward + cross-entropy + backward + Adam; median of {s['iters']} interleaved timed steps "
        f"after {s['warmup']} warm-up",
        "time ratios: this row's ms/step divided by the reference's (> 1 = slower)",
    ]
    header = [
        "implementation",
        "params",
        "seq/s",
        "ms/step",
        "vs nn.LSTM",
        "vs plain",
        "saved MiB",
        "1st step s",
    ]
    if on_cuda:
        header.append("peak MiB")
    rows = []
    for r in report["results"]:
        row = [
            r["label"],
            f"{r['params']:,}",
            f"{r['seq_per_s']:.1f}",
            f"{r['ms_per_step']:.1f}",
            "-" if r["time_vs_lstm"] is None else f"{r['time_vs_lstm']:.2f}x",
            "-" if r["time_vs_plain"] is None else f"{r['time_vs_plain']:.2f}x",
            "-" if r["saved_mib"] is None else f"{r['saved_mib']:.0f}",
            "-" if r["first_step_s"] is None else f"{r['first_step_s']:.1f}",
        ]
        if on_cuda:
            row.append(f"{r['peak_mem_mib']:.0f}")
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    lines += ["", fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(row) for row in rows]
    lines += [f"{LABELS[impl]}: failed, {why}" for impl, why in report.get("failed", {}).items()]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training-step throughput of the RIM (plain, fused, compiled, loop, dense) vs nn.LSTM."
    )
    parser.add_argument("--device", default=None, help="cpu or cuda[:i] (default: cuda if available)")
    parser.add_argument(
        "--size", default="both", choices=[*SIZES, "both"], help="model size (default: both, paper first)"
    )
    parser.add_argument("--batch", type=int, default=64, help="B (default 64)")
    parser.add_argument("--steps", type=int, default=196, help="T, sequence length (default 196 = 14x14)")
    parser.add_argument("--iters", type=int, default=None, help="timed steps (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (2 on CPU, 3 on CUDA)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: 1 on CPU, see the README; torch's default on CUDA)",
    )
    parser.add_argument(
        "--impls",
        default=None,
        help=f"comma-separated subset of {IMPLEMENTATIONS} (default: all; {CUDA_ONLY} on CUDA only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="compute on denormal floats instead of flushing them to zero (CPU: to time the difference)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the report as JSON here (with --size both: one file per size, NAME_<size>.json)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints one table per size and returns the reports by size."""
    args = _parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: CUDA is not available, got {args.device!r}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected cpu or cuda[:i], got {args.device!r}")
    on_cuda = device.type == "cuda"
    threads = args.threads if args.threads is not None else (None if on_cuda else 1)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads: expected a positive int, got {threads}")
        torch.set_num_threads(threads)
    iters = args.iters if args.iters is not None else (20 if on_cuda else 5)
    warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 2)
    impls = [s.strip() for s in args.impls.split(",") if s.strip()] if args.impls else None
    sizes = list(SIZES) if args.size == "both" else [args.size]
    reports = {}
    for size in sizes:
        config = BenchConfig.preset(size, batch=args.batch, steps=args.steps)
        report = run_benchmark(
            config, impls, device, iters, warmup, args.seed, flush_denormals=not args.keep_denormals
        )
        report["settings"]["size"] = size
        reports[size] = report
        print(f"\n== size: {size} ==\n{format_table(report)}")
        if args.json is not None:
            path = args.json if len(sizes) == 1 else args.json.with_name(f"{args.json.stem}_{size}.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {path}")
    load = reports[sizes[0]]["environment"]["load_avg_before"]
    n_cpu = os.cpu_count() or 1
    if not on_cuda and load is not None and load[0] + torch.get_num_threads() > n_cpu + 0.5:
        print(
            f"\nnote: load average {load[0]} on {n_cpu} cores before the run: other processes compete "
            "for the cores, so these times are slower and noisier than on an idle machine. With "
            "--threads > 1 every parallel op can stall until a busy core frees up (milliseconds per op); "
            "prefer --threads 1."
        )
    return reports if len(sizes) > 1 else reports[sizes[0]]


if __name__ == "__main__":
    main()
