"""The shared training loop: seeding, device choice, profiles, checkpoints that resume exactly.

Every experiment in the course trains the same way, so the loop lives here once::

    seed_everything(seed: int) -> None
    pick_device(device: str | torch.device | None = None) -> torch.device
    resolve_profile(profile: str | None = None) -> str            # "smoke" | "cpu" | "full"
    epoch_generator(seed: int, epoch: int) -> torch.Generator     # data order of one epoch
    batch_indices(n, batch_size, seed, epoch, shuffle=True, drop_last=False) -> list[Tensor]

    TrainConfig(epochs, lr=7e-4, grad_clip=1.0, amp=True, seed=0, log_every=25, weight_decay=0.0,
                progress=True, restore_best=True, lr_schedule="constant", warmup_steps=0)
    learning_rate(config, step, total_steps) -> float  # linear warm-up, then constant or cosine

    fit(model, train_batches, loss_fn, evaluate, config, checkpoint=None, select="val_acc", mode="max",
        desc="", settings=None, fresh=False, flush_denormals=True)
        -> FitResult(history, best_epoch, best_metrics, best_state, wall_time, resumed_from, config)

    denormals_flushed(device, enabled=True)  # context: a CPU treats denormal floats as zero inside it
    cpu_info() -> {"model": ..., "flags": [...]}  # the CPU's model name and its vector-unit flags

``fit`` contract:

* ``train_batches(epoch: int) -> Iterable[batch]``: the batches of one epoch (epochs count from 0). The data
  order must be a function of the epoch number only -- use :func:`epoch_generator` / :func:`batch_indices`,
  which derive a fresh ``torch.Generator`` from ``(seed, epoch)``. That is what makes the data order
  resumable without storing a generator: epoch 7 after a resume sees exactly the batches it would have seen.
* ``loss_fn(model, batch) -> (loss, metrics)``: a scalar loss tensor and a dict of *detached scalar tensors*
  (e.g. ``{"acc": ...}``). They are accumulated on the device; the host reads them once every ``log_every``
  steps (for the progress bar) and once per epoch -- never ``.item()`` per step.
* ``evaluate(model) -> dict[str, float]``: called after every epoch with ``model.eval()`` and
  ``torch.no_grad()``; must contain the ``select`` key unless ``select`` is None (then the last epoch wins).
* ``checkpoint``: a file path. After every epoch the model, optimizer, the python / numpy / torch (and CUDA)
  RNG states, the history, the best epoch and its weights are written atomically (a temporary file, fsynced,
  then ``os.replace``), so an interrupted run loses at most the epoch in progress; the temporary file of a
  save that was killed is removed by the next run. Calling ``fit`` again with the
  same arguments resumes after the last completed epoch and ends with the same result, bit for bit on CPU,
  as a run that was never interrupted. A finished checkpoint returns at once.
* Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain values only: a crafted file
  cannot run code), and they store the run's settings (``config`` and ``settings``). A checkpoint resumes
  only when those equal the current ones; otherwise, or when the file is corrupt, not a fit checkpoint, or
  holds impossible progress (an epoch outside ``0..epochs``, a history of another length, a best epoch
  outside it), ``fit`` raises a ValueError that names the file, what is wrong, and how to start over
  (delete the file, or ``fresh=True`` / ``--fresh``).
* The optimizer is Adam(lr, weight_decay) with gradient-norm clipping at ``grad_clip`` (None: no clipping).
  The learning rate of each step is :func:`learning_rate` of the global step number, so a resumed run
  follows the same schedule (a warm-up or ``"cosine"`` needs a ``len(train_batches(epoch))``, equal in all).
* On CUDA with ``config.amp`` the forward passes run under bf16 autocast (no loss scaling is needed for bf16);
  on CPU ``amp`` is ignored: CPU bf16 is slower than fp32 for these small recurrent models.
* On a CPU, training and evaluation run inside :func:`denormals_flushed` (``flush_denormals=False`` keeps
  them): denormal floats (magnitudes below 1.2e-38 in float32, which a recurrent net's small gradients and
  decaying states produce) are treated as zero. Some CPUs compute on denormals tens of times slower than on
  normal floats, so without this an ``nn.LSTM`` step can take 10x longer on one CPU than on another. The
  numbers change only in values far below float32's resolution of a typical weight (a test bounds it).
* At the end, with ``restore_best`` the model holds the weights of the best epoch (by ``select``/``mode``).
* Divergence stops the run where it happens: a NaN or infinite training loss (seen when the host reads the
  running sums, or when a step fails) or parameter (checked after every epoch, before the evaluation and the
  checkpoint) raises :class:`TrainingDiverged`, naming the loss or the parameters, the epoch and the step,
  and what to try (a lower learning rate). A diverged epoch is never checkpointed.

History rows look like ``{"epoch": 0, "train_loss": 0.9, "train_acc": 0.7, "val_acc": 0.8, "seconds": 3.1}``.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from minirims._validate import check_positive_int

__all__ = [
    "PROFILES",
    "FitResult",
    "TrainingDiverged",
    "LR_SCHEDULES",
    "TrainConfig",
    "atomic_torch_save",
    "batch_indices",
    "checkpoint_epoch",
    "cpu_info",
    "denormals_flushed",
    "epoch_generator",
    "fit",
    "learning_rate",
    "pick_device",
    "remove_stale_temp_files",
    "resolve_profile",
    "seed_everything",
]

#: experiment sizes: ``smoke`` (CI), ``cpu`` (a learner's laptop), ``full`` (one GPU), ``long`` (a reference
#: trained on a CPU for hours; never a default)
PROFILES = ("smoke", "cpu", "full", "long")
CHECKPOINT_FORMAT = "minirims.fit"
CHECKPOINT_VERSION = 2
#: the learning-rate schedules :class:`TrainConfig` knows
LR_SCHEDULES = ("constant", "cosine")


def _check_count(name: str, value: object, expected: str = "an int >= 0") -> int:
    """Raise unless ``value`` is an int >= 0 (bools rejected); ``expected`` words the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    _check_count("seed", seed, "a non-negative int")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


class TrainingDiverged(FloatingPointError, ValueError):
    """Training diverged: the loss or a parameter became NaN or infinite (the message says which, where, and
    what to try). A FloatingPointError, and a ValueError because a setting (most often the learning rate) is
    to blame: the command line reports it as a user error, in one line."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else ``cuda`` when available, else ``cpu``.

    Only ``cpu``, ``cuda`` and ``cuda:N`` are valid (the course runs on CPUs and CUDA GPUs), and a CUDA device
    must exist here: anything else is a ValueError naming the device.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    want = "'cpu', 'cuda' or 'cuda:N'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device: expected {want}, got {device!r}") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        raise ValueError(f"device: expected {want} (the course runs on CPUs and CUDA GPUs), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: expected an available device, got {device!r} but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(
            f"device: expected an available device, got {device!r} but there are {count} CUDA device(s) "
            f"(cuda:0 to cuda:{count - 1})"
        )
    return dev


def resolve_profile(profile: str | None = None) -> str:
    """The experiment size: ``profile``, else env ``MINIRIMS_PROFILE``, else ``full`` on CUDA, else ``cpu``.

    Raises:
        ValueError: for anything other than ``smoke``, ``cpu``, ``full`` or ``long``.
    """
    source = "profile"
    if profile is None:
        env = os.environ.get("MINIRIMS_PROFILE", "").strip()
        if env:
            profile, source = env, "MINIRIMS_PROFILE"
        else:
            profile = "full" if torch.cuda.is_available() else "cpu"
    if not isinstance(profile, str) or profile.strip().lower() not in PROFILES:
        raise ValueError(f"{source}: expected one of {', '.join(PROFILES)}, got {profile!r}")
    return profile.strip().lower()


_flush_depth = 0  # how many denormals_flushed blocks are open (torch has no getter for the flag)


@contextlib.contextmanager
def denormals_flushed(device: str | torch.device = "cpu", enabled: bool = True) -> Iterator[bool]:
    """Inside the block, a CPU treats denormal floats as zero (``torch.set_flush_denormal``).

    Denormals are the floats below 1.2e-38 (float32) in magnitude; many x86 CPUs compute on them 10-100x
    slower than on normal floats, and a recurrent net makes them (decaying states, tiny gradients). Yields
    whether flushing is on in the block: False on a CUDA ``device`` (GPUs flush in their fast kernels
    anyway), when ``enabled`` is False, or on a CPU without the instruction for it. The flag is global to
    the process: it is switched off again when the outermost block ends (torch cannot read it back, so a
    flag set outside these blocks is not restored).
    """
    global _flush_depth
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: expected True or False, got {enabled!r}")
    if torch.device(device).type != "cpu" or not enabled:
        yield False
        return
    on = torch.set_flush_denormal(True)
    _flush_depth += 1
    try:
        yield on
    finally:
        _flush_depth -= 1
        if _flush_depth == 0:
            torch.set_flush_denormal(False)


#: the CPU flags that decide how fast these models run (vector width, fused multiply-add, bf16/AMX units)
_SPEED_FLAGS = (
    "sse3",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "amx_bf16",
    "amx_tile",
    "asimd",
    "sve",
)


def cpu_info() -> dict[str, Any]:
    """``{"model": name, "flags": [...]}``: this CPU's model name (from ``/proc/cpuinfo``, else
    ``platform.processor()``) and which of the vector-unit flags that matter for speed it has (Linux only;
    ``[]`` elsewhere)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    if "pni" in flags:  # Linux names SSE3 (which flushing denormals needs on x86) "pni"
        flags.add("sse3")
    return {"model": model, "flags": [f for f in _SPEED_FLAGS if f in flags]}


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU ``torch.Generator`` that depends only on ``(seed, epoch)``: the data order of one epoch."""
    _check_count("epoch", epoch, "a non-negative int")
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + epoch * 7_919 + 12_345) % 2**63)
    return g


def batch_indices(
    n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False
) -> list[Tensor]:
    """Split ``range(n)`` into int64 index batches of at most ``batch_size``, shuffled per (seed, epoch)."""
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


@dataclass
class TrainConfig:
    """Optimisation settings of one :func:`fit` call.

    Attributes:
        epochs: number of passes over ``train_batches``.
        lr: Adam learning rate (the RIM paper: 7e-4).
        grad_clip: max global gradient norm, or None for no clipping.
        amp: bf16 autocast on CUDA (ignored on CPU).
        seed: seeds python/numpy/torch at the start of a fresh run (a resume restores the saved RNG states).
        log_every: steps between host reads of the running metrics (progress-bar refresh).
        weight_decay: Adam weight decay.
        progress: show tqdm progress bars.
        restore_best: load the best epoch's weights into the model at the end.
        lr_schedule: "constant" or "cosine" (decay to 0 over the run, after the warm-up).
        warmup_steps: optimizer steps of linear learning-rate warm-up (0: none).
    """

    epochs: int
    lr: float = 7e-4
    grad_clip: float | None = 1.0
    amp: bool = True
    seed: int = 0
    log_every: int = 25
    weight_decay: float = 0.0
    progress: bool = True
    restore_best: bool = True
    lr_schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        _check_count("warmup_steps", self.warmup_steps)
        for key in ("epochs", "log_every"):
            check_positive_int(key, getattr(self, key))
        if not _finite_number(self.lr) or not self.lr > 0:
            raise ValueError(f"lr: expected a finite positive float, got {self.lr!r}")
        if self.grad_clip is not None and (not _finite_number(self.grad_clip) or not self.grad_clip > 0):
            raise ValueError(f"grad_clip: expected a finite positive float or None, got {self.grad_clip!r}")
        _check_count("seed", self.seed, "a non-negative int")
        if not _finite_number(self.weight_decay) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay: expected a finite float >= 0, got {self.weight_decay!r}")
        for key in ("amp", "progress", "restore_best"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key}: expected True or False, got {getattr(self, key)!r}")


def learning_rate(config: TrainConfig, step: int, total_steps: int | None) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    Linear warm-up over ``config.warmup_steps`` steps (step 0 gets ``lr / warmup_steps``), then ``config.lr``
    (constant) or ``lr * (1 + cos(pi * f)) / 2`` with f the fraction of the steps after the warm-up done
    (cosine; ``total_steps`` is required, and the last step's rate is just above 0).
    """
    _check_count("step", step)
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(
            f"total_steps: expected a positive int for lr_schedule='cosine', got {total_steps!r}"
        )
    decay = max(1, total_steps - config.warmup_steps)
    done = min(step - config.warmup_steps, decay)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * done / decay))


def _finite_number(value: object) -> bool:
    """An int or float (never a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per completed epoch (train metrics, evaluate()'s metrics, seconds).
        best_epoch: index of the selected epoch.
        best_metrics: the history row of the best epoch.
        best_state: the model's ``state_dict`` at the best epoch (CPU tensors).
        wall_time: seconds spent in training and evaluation, summed over resumed runs.
        resumed_from: number of epochs found in the checkpoint when this call started (0: fresh run).
        config: the :class:`TrainConfig` as a dict.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    best_state: dict[str, Tensor]
    wall_time: float = 0.0
    resumed_from: int = 0
    config: dict[str, Any] = field(default_factory=dict)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may belong to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # someone else's process, or not a pid at all
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike[str], max_age_s: float = 3600.0) -> list[Path]:
    """Remove the temporary files ``.<name>.tmp-<pid>`` that a killed :func:`atomic_torch_save` (or record
    save) of ``path`` left beside it; returns those removed.

    A temporary file is stale when the process that wrote it is gone, or when it is older than ``max_age_s``
    (a pid can be reused); a save in progress in another live process is left alone.
    """
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}.tmp-"
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid_text = tmp.name[len(prefix) :]
        try:
            pid = int(pid_text)
            old = time.time() - tmp.stat().st_mtime > max_age_s
        except (ValueError, OSError):
            continue
        if pid == os.getpid() or old or not _pid_alive(pid):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:  # vanished meanwhile, or not ours to remove: leave it
                pass
    return removed


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush ``path`` (a file, or with ``directory`` a folder's entries) to the disk; a folder that cannot be
    opened for it (some file systems, Windows) is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync it, then ``os.replace`` it into place.

    A temporary file left by an earlier save of ``path`` that was killed is removed first
    (:func:`remove_stale_temp_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        _fsync(tmp)  # the data is on the disk before the name points at it
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def _rng_state() -> dict[str, Any]:
    """Every RNG state in a form ``torch.load(weights_only=True)`` accepts: ints, lists and tensors only."""
    py_version, py_state, py_gauss = random.getstate()
    key, np_state, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "state": [int(v) for v in py_state], "gauss": py_gauss},
        "numpy": {
            "key": str(key),
            "state": torch.from_numpy(np.asarray(np_state, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = npy["state"].numpy().astype(np.uint32)
    np.random.set_state((npy["key"], np_state, *(npy[k] for k in ("pos", "has_gauss", "cached_gaussian"))))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


#: TrainConfig fields that change what a run computes (progress and log_every only change what it shows;
#: restore_best only what the model holds at the end): a checkpoint resumes only when these are equal.
#: The last two are saved only off their defaults: a checkpoint without them means the default.
_RESUME_KEYS = ("epochs", "lr", "grad_clip", "amp", "seed", "weight_decay", "lr_schedule", "warmup_steps")
_START_OVER = "delete it, or start over with fresh=True (--fresh on the command line)"


def _resume_config(config: TrainConfig) -> dict[str, Any]:
    """The ``_RESUME_KEYS`` of ``config`` that a checkpoint saves (``TrainConfig.<field>`` is the default)."""
    values = {k: getattr(config, k) for k in _RESUME_KEYS}
    return {k: v for k, v in values.items() if k in _RESUME_KEYS[:-2] or v != getattr(TrainConfig, k)}


def _plain_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` as plain JSON values (tuples become lists), so saved and current ones compare equal."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
        raise ValueError(f"settings: expected a dict of str -> plain values, got {type(settings).__name__}")
    try:
        return json.loads(json.dumps(dict(settings), sort_keys=True, allow_nan=True))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"settings: expected plain values (numbers, strings, lists, dicts), got {err}"
        ) from None


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"key (saved A, now B)"`` for every key whose value differs (or is present on one side only)."""

    def shown(d: Mapping[str, Any], key: str) -> str:  # the value's repr, cut at 40 characters
        text = repr(d[key]) if key in d else "absent"
        return text if len(text) <= 40 or key not in d else text[:37] + "..."

    return [
        f"{key} (saved {shown(saved, key)}, now {shown(now, key)})"
        for key in sorted(set(saved) | set(now))
        if key not in saved or key not in now or saved[key] != now[key]
    ]


def checkpoint_epoch(path: str | os.PathLike[str]) -> int:
    """The epochs finished in the :func:`fit` checkpoint at ``path``: 0 when there is none yet or it cannot
    be read (another process may be writing it: saves are atomic, so a later read sees the whole file)."""
    try:
        return int(_load_checkpoint(Path(path))["epoch"])
    except (OSError, ValueError):
        return 0


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a fit checkpoint safely (``weights_only=True``); a ValueError naming the file and what to do."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, not a torch file, or holding objects we refuse to unpickle
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"checkpoint: cannot read {path} safely as a minirims fit checkpoint (damaged, written by an "
            f"older minirims, or not a checkpoint: {type(err).__name__}: {first[:100]}); {_START_OVER}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint: expected a minirims fit checkpoint (format v{CHECKPOINT_VERSION}) in {path}, "
            f"got a {type(ckpt).__name__} without the minirims format mark; {_START_OVER}"
        )
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint: expected format v{CHECKPOINT_VERSION} in {path}, got v{ckpt.get('version')!r}; "
            f"{_START_OVER}"
        )
    missing = sorted(set(_CHECKPOINT_KEYS) - set(ckpt))
    if missing:
        raise ValueError(f"checkpoint: {path} is incomplete (no {', '.join(missing)}); {_START_OVER}")
    return ckpt


@dataclass
class _Progress:
    """Where a run stands after ``epoch`` completed epochs, under the names its checkpoint uses.
    ``best_epoch`` -1: none yet; ``best_value``: its ``select`` metric; ``best_state``: its CPU weights."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float | None = None
    best_state: dict[str, Tensor] = field(default_factory=dict)
    wall_time: float = 0.0


#: what a fit checkpoint holds, besides its "format" and "version" marks
_CHECKPOINT_KEYS = ("model", "optimizer", "rng", *(f.name for f in fields(_Progress)), "config", "settings")


class _Loop(NamedTuple):
    """What the steps of one :func:`fit` call share; ``amp``: bf16 autocast (on CUDA with ``config.amp``)."""

    model: nn.Module
    params: list[nn.Parameter]  # the trainable ones: the optimizer's
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[nn.Module, Any], tuple[Tensor, Mapping[str, Tensor]]]
    config: TrainConfig
    amp: bool
    desc: str = ""  # which run, for messages ("lstm-48 seed 0")


def _resume(path: Path, loop: _Loop, run: dict[str, Any]) -> _Progress:
    """Load the checkpoint at ``path`` into the model, the optimizer and the RNGs; return its progress.
    A ValueError names the file and how to start over when it was written with another ``run`` (``{"config":
    ..., "settings": ...}``; the message names the keys that differ) or for another model."""
    ckpt = _load_checkpoint(path)
    differ = _differences(ckpt.get("config", {}), run["config"])
    named = {d.split(" ", 1)[0] for d in differ}  # a key in both (lr, epochs) is named once
    differ += [
        d for d in _differences(ckpt.get("settings", {}), run["settings"]) if d.split(" ", 1)[0] not in named
    ]
    if differ:
        raise ValueError(
            f"checkpoint: {path} was written with other settings: {'; '.join(differ)}. "
            f"To train with the new settings, {_START_OVER}"
        )
    try:
        loop.model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint: {path} does not match the model: {str(err).splitlines()[0]}; {_START_OVER}"
        ) from None
    progress = _Progress(**{f.name: ckpt[f.name] for f in fields(_Progress)})
    wrong = _impossible_progress(progress, loop.config.epochs, loop.model)
    if wrong:
        raise ValueError(f"checkpoint: {path} holds impossible progress ({wrong}); {_START_OVER}")
    try:
        loop.optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise ValueError(
            f"checkpoint: {path} is incomplete or damaged ({type(err).__name__}: {err}); {_START_OVER}"
        ) from None
    return progress


def _impossible_progress(progress: _Progress, epochs: int, model: nn.Module) -> str | None:
    """What is impossible about a checkpoint's progress for a run of ``epochs`` epochs of ``model``: an epoch
    outside ``0..epochs``, a history that is not a list of one row per completed epoch (``row["epoch"]`` its
    index), a best epoch outside the history (-1 only before the first epoch), best weights that do not fit
    ``model``, a negative or non-finite wall time; None when it is all possible."""
    p = progress

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(p.epoch) or not 0 <= p.epoch <= epochs:
        return f"epoch: expected an int in 0..{epochs} (the epochs completed), got {p.epoch!r}"
    if not isinstance(p.history, list) or len(p.history) != p.epoch:
        got = f"{len(p.history)} rows" if isinstance(p.history, list) else type(p.history).__name__
        return f"history: expected a list of {p.epoch} rows (one per completed epoch), got {got}"
    for i, row in enumerate(p.history):
        if not isinstance(row, dict) or row.get("epoch") != i:
            return f"history[{i}]: expected a row with 'epoch': {i}, got {str(row)[:60]}"
    if not is_int(p.best_epoch) or not (p.best_epoch == -1 if p.epoch == 0 else 0 <= p.best_epoch < p.epoch):
        want = "-1 (no epoch completed)" if p.epoch == 0 else f"an int in 0..{p.epoch - 1}"
        return f"best_epoch: expected {want}, got {p.best_epoch!r}"
    if not _finite_number(p.wall_time) or p.wall_time < 0:
        return f"wall_time: expected a finite number of seconds >= 0, got {p.wall_time!r}"
    if p.best_value is not None and not isinstance(p.best_value, (int, float)):
        return f"best_value: expected a number or None, got {type(p.best_value).__name__}"
    if p.epoch:
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        state = p.best_state
        fits = isinstance(state, dict) and set(state) == set(shapes)
        if not fits or any(
            not isinstance(v, Tensor) or tuple(v.shape) != shapes[k] for k, v in state.items()
        ):
            return "best_state: expected the best epoch's weights of this model"
    return None


def _save_checkpoint(path: Path, loop: _Loop, progress: _Progress, run: dict[str, Any]) -> None:
    """Write the run after a completed epoch, atomically, under the keys of ``_CHECKPOINT_KEYS``."""
    saved = {f.name: getattr(progress, f.name) for f in fields(_Progress)}
    head = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": saved.pop("epoch")}
    state = {"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(), "rng": _rng_state()}
    try:
        atomic_torch_save({**head, **state, **saved, **run}, path)
    except OSError as err:  # the folder became read-only, full, or vanished during the run
        before = "the last saved epoch" if path.exists() else "the start"
        raise ValueError(
            f"checkpoint: could not write {path} after epoch {progress.epoch} ({type(err).__name__}: "
            f"{err.strerror or err}); free or fix the folder and run again to resume from {before}"
        ) from None


def _train_step(loop: _Loop, batch: Any) -> dict[str, Tensor]:
    """One optimizer step on ``batch``: forward (under bf16 autocast with ``amp``), backward, clipping, Adam.

    Returns ``{"loss": ..., **metrics}``: detached float32 scalars (shape ``()``), still on the device.
    """
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=loop.amp):
        loss, metrics = loop.loss_fn(loop.model, batch)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if loop.config.grad_clip is not None:
        nn.utils.clip_grad_norm_(loop.params, loop.config.grad_clip)
    loop.optimizer.step()
    return {key: val.detach().float() for key, val in (("loss", loss), *metrics.items())}


def _nonfinite_parameters(loop: _Loop) -> list[str]:
    """The names of the trainable parameters that hold a NaN or an infinity (one host read when none do)."""
    finite = torch.stack([torch.isfinite(p).all() for p in loop.params]).all()
    if bool(finite):
        return []
    named = loop.model.named_parameters()
    return [n for n, p in named if p.requires_grad and not bool(torch.isfinite(p).all())]


def _diverged(
    loop: _Loop, epoch: int, steps: int, recent: list[Tensor], first: int
) -> TrainingDiverged | None:
    """The error to raise when the run diverged by step ``steps`` (done so far) of ``epoch``, else None.

    ``recent``: the step losses since the host last read them, the first of them the loss of step ``first``
    (0-based): the first non-finite one is where the loss diverged. Only called on a failure path (it reads
    every loss and parameter).
    """
    bad_step = next((first + i for i, v in enumerate(recent) if not math.isfinite(float(v))), None)
    bad_params = _nonfinite_parameters(loop)
    if bad_step is None and not bad_params:
        return None
    config = loop.config
    run = f" ({loop.desc})" if loop.desc else ""
    where = f"training diverged{run} in epoch {epoch + 1} of {config.epochs}"
    what = []
    if bad_step is not None:
        what.append(f"the loss became {float(recent[bad_step - first])} at step {bad_step + 1}")
    if bad_params:
        more = f" and {len(bad_params) - 3} more" if len(bad_params) > 3 else ""
        when = "" if bad_step is not None else f" by step {steps}"
        what.append(f"parameters {', '.join(bad_params[:3])}{more} became NaN or infinite{when}")
    lr = max(group["lr"] for group in loop.optimizer.param_groups)
    advice = f"try a lower learning rate (it is {lr:g}; --lr on the command line)"
    if config.grad_clip is None:
        advice += ", or clip the gradients (grad_clip)"
    return TrainingDiverged(f"{where}: {'; '.join(what)}. Nothing of this epoch was saved; {advice}")


def _train_epoch(loop: _Loop, batches: Iterable[Any], epoch: int) -> dict[str, float]:
    """One pass over ``batches``, a :func:`_train_step` each, at the learning rate of the schedule.

    The step metrics are summed on the device; the host reads them every ``log_every`` steps (progress
    bar) and at the end. Returns the epoch's means ``{"train_loss": ..., "train_<metric>": ...}``.
    """
    config = loop.config
    scheduled = config.lr_schedule != "constant" or config.warmup_steps > 0
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    if scheduled and total is None:
        raise ValueError(
            f"train_batches: expected a sized collection (with len) for lr_schedule={config.lr_schedule!r} "
            f"and warmup_steps={config.warmup_steps}, got {type(batches).__name__}"
        )
    step_bar = tqdm(batches, desc=f"epoch {epoch + 1}", total=total, leave=False, disable=not config.progress)
    sums: dict[str, Tensor] = {}
    steps = 0
    recent: list[Tensor] = []  # the step losses since the last host read: where a divergence is looked for

    def means() -> dict[str, float]:  # one host read of the sums; a NaN/inf loss stops the run
        out = {k: v.item() / steps for k, v in sums.items()}
        if not math.isfinite(out["loss"]):
            raise _diverged(loop, epoch, steps, recent, steps - len(recent)) or TrainingDiverged(
                f"training diverged in epoch {epoch + 1} of {config.epochs}: the mean loss of its first "
                f"{steps} steps is {out['loss']}; try a lower learning rate (--lr on the command line)"
            )
        recent.clear()
        return out

    try:
        for batch in step_bar:
            if scheduled:  # a function of the global step: a resumed run follows the same schedule
                rate = learning_rate(config, epoch * total + steps, total * config.epochs)
                for group in loop.optimizer.param_groups:
                    group["lr"] = rate
            try:
                step = _train_step(loop, batch)
            except Exception:  # e.g. the model refusing NaN activations: say so if the run diverged before
                try:
                    diverged = _diverged(loop, epoch, steps, recent, steps - len(recent))
                except Exception:  # cannot even look (out of memory...): the step's own error tells more
                    diverged = None
                if diverged is None:
                    raise
                raise diverged from None
            for key, val in step.items():
                sums[key] = sums[key] + val if key in sums else val.clone()
            recent.append(step["loss"])
            steps += 1
            if steps % config.log_every == 0:  # one host sync per log interval
                step_bar.set_postfix({k: f"{v:.3f}" for k, v in means().items()}, refresh=False)
    finally:
        step_bar.close()
    if steps == 0:
        raise ValueError(f"train_batches: expected at least one batch, got none for epoch {epoch}")
    result = {f"train_{k}": v for k, v in means().items()}
    diverged = _diverged(loop, epoch, steps, [], steps) if _nonfinite_parameters(loop) else None
    if diverged is not None:  # the last steps' updates: never evaluated, never checkpointed
        raise diverged
    return result


def _evaluate(
    loop: _Loop, evaluate: Callable[[nn.Module], Mapping[str, float]], select: str | None
) -> dict[str, float]:
    """``evaluate(model)`` as floats, in eval mode without gradients (bf16 autocast with ``amp``); it must
    return the key ``select`` (None: any)."""
    loop.model.eval()
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=loop.amp):
        scores = dict(evaluate(loop.model))
    loop.model.train()
    if select is not None and select not in scores:
        raise ValueError(
            f"select: expected a key returned by evaluate(), one of {sorted(scores)}, got {select!r}"
        )
    return {k: float(v) for k, v in scores.items()}


def _record_epoch(
    progress: _Progress, row: dict[str, float], model: nn.Module, select: str | None, mode: str
) -> None:
    """Add a finished epoch's ``row`` to ``progress``; keep the model's weights if it is the best so far:
    the highest (``mode="max"``) or lowest ``row[select]``, the first on a tie, never a NaN after the first
    epoch; with ``select=None``, the last epoch."""
    epoch = int(row["epoch"])
    progress.history.append(row)
    progress.epoch, progress.wall_time = epoch + 1, progress.wall_time + row["seconds"]
    value, best = row[select] if select is not None else float(epoch), progress.best_value
    better = best is None or (not math.isnan(value) and (value > best if mode == "max" else value < best))
    if select is None or better:
        progress.best_epoch, progress.best_value = epoch, value
        progress.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    train_batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], tuple[Tensor, Mapping[str, Tensor]]],
    evaluate: Callable[[nn.Module], Mapping[str, float]],
    config: TrainConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    select: str | None = "val_acc",
    mode: str = "max",
    desc: str = "",
    settings: Mapping[str, Any] | None = None,
    fresh: bool = False,
    flush_denormals: bool = True,
) -> FitResult:
    """Train ``model`` for ``config.epochs`` epochs, evaluating and checkpointing after each one.

    The module docstring gives the contract of ``train_batches``, ``loss_fn``, ``evaluate``, ``checkpoint``.
    ``select`` names the evaluate() metric that picks the best epoch (``mode`` "max" or "min"; None: the last
    epoch). ``settings``: the run's settings beyond ``config`` (plain values: numbers, strings, lists, dicts),
    saved in the checkpoint, which resumes only when they and the ``_RESUME_KEYS`` of ``config`` are equal.
    ``fresh``: delete an existing checkpoint and start over. ``flush_denormals``: on a CPU, train and evaluate
    inside :func:`denormals_flushed` (the module docstring says why). Each epoch is :func:`_train_epoch` (a
    :func:`_train_step` per batch), :func:`_evaluate`, :func:`_record_epoch`, :func:`_save_checkpoint`.

    Raises:
        ValueError: bad ``config``/``mode``/``select``/``settings``; a checkpoint that cannot be read safely,
            is not a fit checkpoint, or was written with other settings (the message names the keys that
            differ) or for another model: each names the file and how to start over.
        TrainingDiverged: the training loss or a parameter became NaN or infinite (a FloatingPointError and
            a ValueError; the message names what diverged, the epoch, the step and what to try).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    if not isinstance(fresh, bool):
        raise ValueError(f"fresh: expected True or False, got {fresh!r}")
    if not isinstance(flush_denormals, bool):
        raise ValueError(f"flush_denormals: expected True or False, got {flush_denormals!r}")
    run = {"config": _resume_config(config), "settings": _plain_settings(settings)}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: expected at least one trainable parameter, got none")
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    amp = config.amp and params[0].device.type == "cuda"
    loop = _Loop(model, params, optimizer, loss_fn, config, amp, desc)
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None:
        remove_stale_temp_files(ckpt_path)  # left by a save that was killed
    if ckpt_path is not None and fresh:  # the old run must not come back if this one is interrupted
        ckpt_path.unlink(missing_ok=True)
    if ckpt_path is not None and ckpt_path.exists():
        progress = _resume(ckpt_path, loop, run)
    else:
        seed_everything(config.seed)
        progress = _Progress()
    resumed_from = progress.epoch

    with denormals_flushed(params[0].device, flush_denormals):
        epoch_bar = tqdm(
            range(resumed_from, config.epochs),
            desc=desc or "epochs",
            initial=resumed_from,
            total=config.epochs,
            disable=not config.progress,
        )
        for epoch in epoch_bar:
            t0 = time.perf_counter()
            model.train()
            row: dict[str, float] = {"epoch": epoch, **_train_epoch(loop, train_batches(epoch), epoch)}
            row.update(_evaluate(loop, evaluate, select))
            row["seconds"] = time.perf_counter() - t0
            _record_epoch(progress, row, model, select, mode)
            shown = {k: row[k] for k in ("train_loss", "train_acc", select) if k is not None and k in row}
            epoch_bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, loop, progress, run)
        epoch_bar.close()

    if progress.best_epoch < 0:  # a finished checkpoint without a best epoch (cannot happen)
        raise ValueError(f"checkpoint: expected at least one completed epoch in {ckpt_path}, got none")
    if config.restore_best:
        model.load_state_dict(progress.best_state)
    return FitResult(
        history=progress.history,
        best_epoch=progress.best_epoch,
        best_metrics=copy.deepcopy(progress.history[progress.best_epoch]),
        best_state=progress.best_state,
        wall_time=progress.wall_time,
        resumed_from=resumed_from,
        config=asdict(config),
    )
