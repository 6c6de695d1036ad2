"""What every experiment shares: its settings, the one loop over models and seeds, records, the CLI.

Every experiment module (:mod:`~minirims.experiments.copying`, :mod:`~minirims.experiments.mnist_resolution`,
:mod:`~minirims.experiments.bouncing_balls`) has the same shape::

    Settings                                 # frozen dataclass (a subclass of Settings below), validated
    PROFILES: {"smoke" | "cpu" | "full" (| "long"): Settings}
    settings(profile=None, **overrides) -> Settings        # profile None: env MINIRIMS_PROFILE
    make_model(name, settings) -> nn.Module                # names say their size: rim-6x48-k4, lstm-288
    run(settings=None, seeds=1, *, results=None, runs_dir=None, save=True, device=None, progress=True,
        fresh=False, trained=None) -> Record                # train_and_test() with the experiment's Task
    format_table(record) -> str
    add_arguments(parser) / main(args) -> int              # python -m minirims <experiment> ...
    check_environment(settings) -> None                    # optional: what the run needs, checked first

Reference records live in the tracked ``results/`` folder and change only on purpose: a run writes its
record to the ignored ``runs/`` folder (env ``MINIRIMS_RUNS``, or the run's ``runs_dir``) unless it is given
an explicit ``results`` folder (``--results results/`` on the command line). A *record* (:class:`Record`) is
one JSON file per (experiment, profile), e.g. ``results/mnist_resolution_cpu.json``::

    {
      "experiment": "mnist_resolution", "profile": "cpu", "created": "2025-01-01T12:00:00+00:00",
      "settings": {...},            # every field of the run's Settings
      "seeds": [0, 1, 2],
      "provenance": {"git_commit": "...", "git_dirty": false, "device": "cpu", "device_name": "...",
                     "torch": "2.x", "python": "3.11.x", "platform": "...", "threads": 2},
      "wall_time": 812.3,           # seconds, whole run
      "parameters": {"rim-6x32-k4": 123456, ...},
      "metrics": {...},             # per model (and trivial predictor): the experiment's scores over seeds
      "curves": {...}               # per model, per seed: the per-epoch history of fit()
    }
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib
import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypedDict, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from minirims.experiments.train import (
    LR_SCHEDULES,
    PROFILES,
    TrainConfig,
    checkpoint_epoch,
    cpu_info,
    denormals_flushed,
    fit,
    pick_device,
    remove_stale_temp_files,
    resolve_profile,
    seed_everything,
)
from minirims.model import RIM, LSTMBaseline

__all__ = [
    "SEEDS_HELP",
    "PROFILES",
    "Record",
    "Settings",
    "Task",
    "add_arguments",
    "check_output_dir",
    "check_runs_dir",
    "checkpoint_path",
    "count_parameters",
    "default_runs_dir",
    "default_workers",
    "describe_record",
    "format_settings",
    "load_record",
    "load_reference_results",
    "make_core",
    "make_record",
    "mean_std",
    "output_record_path",
    "parse_model_name",
    "provenance",
    "record_path",
    "resolve_profile",
    "results_dir",
    "run_command",
    "save_record",
    "save_record_figure",
    "save_record_or_keep",
    "seed_list",
    "settings_key",
    "settings_of",
    "traced",
    "traced_masks",
    "train_and_test",
    "train_in_processes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: bounds of what a run may ask for: seeds per run, a seed's value, epochs, a peak learning rate
MAX_SEEDS = 100
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 10_000
MAX_LR = 1.0
#: a model whose last training loss is above this many times the trivial predictor's learned nothing (or
#: diverged to finite values): its record entry gets a "warning"
ABSURD_LOSS_FACTOR = 2.0


def results_dir() -> Path:
    """Where result records live: env ``MINIRIMS_RESULTS`` if set, else ``<repo>/results``."""
    env = os.environ.get("MINIRIMS_RESULTS", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "results"


def default_runs_dir() -> Path:
    """Where runs write checkpoints and their records: env ``MINIRIMS_RUNS`` if set, else ``<repo>/runs``.

    ``runs/`` is git-ignored: a default run never touches the tracked reference records in ``results/``.
    """
    env = os.environ.get("MINIRIMS_RUNS", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "_-" for c in value):
        raise ValueError(f"{name}: expected a non-empty name of letters, digits, '_' or '-', got {value!r}")
    return value


def record_path(experiment: str, profile: str, results: str | os.PathLike[str] | None = None) -> Path:
    """The stable file name of a record: ``<results>/<experiment>_<profile>.json``."""
    _check_name("experiment", experiment)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    folder = Path(results) if results is not None else results_dir()
    return folder / f"{experiment}_{profile}.json"


def output_record_path(
    experiment: str,
    profile: str,
    results: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where a run writes its record: ``results`` when given (explicitly, e.g. ``results/``), else the runs
    folder (``runs_dir``, else :func:`default_runs_dir`). The tracked ``results/`` is never the default."""
    if results is not None:
        return record_path(experiment, profile, results)
    return record_path(experiment, profile, runs_dir if runs_dir is not None else default_runs_dir())


def check_runs_dir(runs_dir: str | os.PathLike[str] | None, name: str = "runs_dir") -> Path:
    """The runs folder of a run, checked (:func:`check_output_dir`): ``runs_dir`` (called ``name`` in the
    message), else :func:`default_runs_dir` (called ``MINIRIMS_RUNS`` when that is set)."""
    if runs_dir is not None:
        return check_output_dir(name, runs_dir)
    env = os.environ.get("MINIRIMS_RUNS", "").strip()
    return check_output_dir("MINIRIMS_RUNS" if env else "the runs folder", default_runs_dir())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out


def provenance(device: str | torch.device | None = None) -> dict[str, Any]:
    """Where and with what a run was made: git commit (None if unavailable), device (a CPU by its model
    name), versions, threads, the CPU's model and speed-relevant flags (:func:`cpu_info`)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cpu = cpu_info()
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        name = cpu["model"]
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "device": dev.type,
        "device_name": name,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu["model"],
        "cpu_flags": cpu["flags"],
    }


def _provenance_of_run(
    device: str | torch.device | None, started: Mapping[str, Any] | None
) -> dict[str, Any]:
    now = provenance(device)
    if started is None:
        return now
    out = dict(started)
    if (now["git_commit"], now["git_dirty"]) != (started.get("git_commit"), started.get("git_dirty")):
        out["git_commit_at_end"], out["git_dirty_at_end"] = now["git_commit"], now["git_dirty"]
    return out


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short hash of ``settings``: checkpoints of runs with other settings live in other folders."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:10]


def checkpoint_path(
    runs_dir: str | os.PathLike[str], experiment: str, settings: Settings, name: str, seed: int
) -> Path:
    """Where model ``name``'s training with ``seed`` keeps its checkpoint:
    ``<runs_dir>/<experiment>_<profile>_<hash of the training settings>/<name>_seed<seed>.pt``."""
    key = settings_key(settings.training_dict())
    return Path(runs_dir) / f"{experiment}_{settings.profile}_{key}" / f"{name}_seed{seed}.pt"


# ------------------------------------------------------------------------------------------------ settings
def _fail(name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{name}: expected {expected}, got {value!r}")


def check_int(name: str, value: object, lo: int = 1, hi: int | None = None) -> int:
    """An int (never a bool or float) in ``[lo, hi]`` (``hi`` None: no upper bound); returns it."""
    ok = (
        isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    )
    if not ok:
        want = "a positive int" if (lo, hi) == (1, None) else f"an int >= {lo}"
        raise _fail(name, want if hi is None else f"an int in [{lo}, {hi}]", value)
    return value  # type: ignore[return-value]


def check_rate(name: str, value: object, none_ok: bool = False, hi: float | None = None) -> float | None:
    """A finite number > 0 (and <= ``hi`` when given: a learning rate, a clipping norm), or None when
    ``none_ok``."""
    if value is None and none_ok:
        return None
    ok = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
    if not ok or (hi is not None and value > hi):  # type: ignore[operator]
        want = "a finite number > 0" if hi is None else f"a number in (0, {hi:g}]"
        raise _fail(name, want + (" or None" if none_ok else ""), value)
    return float(value)  # type: ignore[arg-type]


def check_output_dir(name: str, value: object) -> Path:
    """A folder a run can write into (it may not exist yet): a non-empty path that is not a file, whose
    nearest existing parent is a writable folder. ``name`` is what the message calls it (``--runs-dir``).

    Checked before any work, so that a run never trains for hours and then cannot save.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "a folder path (use . for the current folder)", value)
    path = Path(value)  # as given, as the run writes it
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: expected a folder, got {str(path)!r}, which is a file")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}: expected a folder, got {str(path)!r}, but {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        shown = "" if parent == path else f" (its parent {str(parent)!r} is not writable)"
        raise ValueError(f"{name}: expected a folder you can write to, got {str(path)!r}{shown}")
    return path


def check_choice(name: str, value: object, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if not any(type(value) is type(c) and value == c for c in choices):  # 1 is not True, 0.0 not False
        raise _fail(name, f"one of {', '.join(map(str, choices))}", value)
    return value


def check_distinct(name: str, values: object, check: Any) -> tuple[Any, ...]:
    """A non-empty list or tuple of distinct items, each passed through ``check(f"{name}[i]", item)``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise _fail(name, "a non-empty list", values)
    items = tuple(check(f"{name}[{i}]", v) for i, v in enumerate(values))
    if len(set(items)) != len(items):
        raise _fail(name, "a list of distinct values", values)
    return items


#: Model names say their size: ``rim-<n>x<d>-k<k>`` (n modules of d units, k active), ``lstm-<d>``,
#: ``transformer-<layers>x<d_model>``. A RIM's name may add, in this order, ``-gru`` (GRU modules) and the
#: ablations ``-nocomm`` (no communication) and ``-random`` (k modules at random at every step).
MODEL_NAME = re.compile(
    r"(?P<kind>rim)-(?P<n>\d+)x(?P<d>\d+)-k(?P<k>\d+)(?P<gru>-gru)?(?P<nocomm>-nocomm)?(?P<random>-random)?"
    r"|(?P<lstm>lstm)-(?P<h>\d+)"
    r"|(?P<tf>transformer)-(?P<layers>\d+)x(?P<width>\d+)"
)


def parse_model_name(
    name: object, kinds: Sequence[str] = ("rim", "lstm"), field: str = "name"
) -> dict[str, Any]:
    """``"rim-6x48-k4"`` -> ``{"kind": "rim", "n": 6, "d": 48, "k": 4, "rnn": "lstm", "communicate": True,
    "selection": "attention"}`` (``-gru``: ``"rnn": "gru"``; ``-nocomm``: ``"communicate": False``;
    ``-random``: ``"selection": "random"``); ``"lstm-288"`` -> ``{"kind": "lstm", "d": 288}``;
    ``"transformer-2x64"`` -> ``{"kind": "transformer", "layers": 2, "d": 64}``.

    Raises a ValueError naming ``field`` for anything else, a kind not in ``kinds``, a zero size or k > n.
    """
    examples = {"rim": "'rim-6x48-k4'", "lstm": "'lstm-288'", "transformer": "'transformer-2x64'"}
    want = "a model name like " + " or ".join(examples[k] for k in kinds)
    m = MODEL_NAME.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise _fail(field, want, name)
    if m["kind"]:
        out = {"kind": "rim", "n": int(m["n"]), "d": int(m["d"]), "k": int(m["k"])}
        out["rnn"] = "gru" if m["gru"] else "lstm"
        out["communicate"] = not m["nocomm"]
        out["selection"] = "random" if m["random"] else "attention"
        if not 1 <= out["k"] <= out["n"]:
            raise _fail(field, f"k active in [1, n = {out['n']}] in {want}", name)
    elif m["lstm"]:
        out = {"kind": "lstm", "d": int(m["h"])}
    else:
        out = {"kind": "transformer", "layers": int(m["layers"]), "d": int(m["width"])}
    sizes = (v for v in out.values() if isinstance(v, int) and not isinstance(v, bool))
    if out["kind"] not in kinds or min(sizes) < 1:
        raise _fail(field, want, name)
    return out


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of one run that all experiments share; each experiment's ``Settings`` adds its own.

    Made by ``<experiment>.settings(profile, **overrides)`` from the experiment's ``PROFILES``; validated
    when made (a ValueError names the field, what was expected and what was given), before any data or
    training. The RIM's attention sizes are the paper's (and :class:`minirims.RIMCell`'s) defaults.
    """

    profile: str = "full"
    models: tuple[str, ...] = ()
    epochs: int = 1
    batch_size: int = 64
    eval_batch_size: int = 500
    lr: float = 1e-3
    lr_by_model: Mapping[str, float] = field(default_factory=dict)  # a model's own peak rate
    lr_schedule: str = "constant"  # or "cosine" (see minirims.experiments.train.learning_rate)
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    input_heads: int = 1
    input_d_k: int = 64
    input_d_v: int = 400
    comm_heads: int = 4
    comm_d_k: int = 32
    comm_d_v: int = 32
    dropout: float = 0.1  # the RIM's attention dropout
    compile: bool = False  # run the RIM's step through torch.compile
    note: str = ""  # why the profile is what it is

    #: the model kinds this experiment knows (see :func:`parse_model_name`)
    MODEL_KINDS: ClassVar[tuple[str, ...]] = ("rim", "lstm")
    #: fields that only the test reads: changing them reuses the trained checkpoints
    TEST_ONLY: ClassVar[tuple[str, ...]] = ("models", "eval_batch_size", "note")

    def __post_init__(self) -> None:
        check_choice("profile", self.profile, PROFILES)

        def known_model(field: str, name: str) -> str:
            parse_model_name(name, self.MODEL_KINDS, field)
            return name

        object.__setattr__(self, "models", check_distinct("models", self.models, known_model))
        for key in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "input_heads",
            "input_d_k",
            "input_d_v",
            "comm_heads",
            "comm_d_k",
            "comm_d_v",
        ):
            check_int(key, getattr(self, key))
        if self.epochs > MAX_EPOCHS:
            raise _fail("epochs", f"a positive int of at most {MAX_EPOCHS}", self.epochs)
        check_int("warmup_steps", self.warmup_steps, lo=0)
        check_rate("lr", self.lr, hi=MAX_LR)
        check_rate("grad_clip", self.grad_clip, none_ok=True)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("compile", self.compile, (True, False))
        if not (
            isinstance(self.dropout, (int, float))
            and not isinstance(self.dropout, bool)
            and 0 <= self.dropout < 1
        ):
            raise _fail("dropout", "a number in [0, 1)", self.dropout)
        if not isinstance(self.note, str):
            raise _fail("note", "a string", self.note)
        if not isinstance(self.lr_by_model, Mapping):
            raise _fail("lr_by_model", "a dict from model names to learning rates", self.lr_by_model)
        for name, lr in self.lr_by_model.items():
            parse_model_name(name, self.MODEL_KINDS, f"lr_by_model[{name!r}]")
            check_rate(f"lr_by_model[{name!r}]", lr, hi=MAX_LR)
        object.__setattr__(self, "lr_by_model", dict(self.lr_by_model))

    def replace(self, **overrides: Any) -> Settings:
        """A copy with ``overrides`` (known fields only), validated again."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(
                f"overrides: expected keys among {sorted(f.name for f in fields(self))}, "
                f"got unknown {unknown}"
            )
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists): what a record stores."""
        return _jsonable(dataclasses.asdict(self))

    def training_dict(self) -> dict[str, Any]:
        """The fields a trained model depends on (all but ``TEST_ONLY``): the checkpoint folder's key."""
        return {k: v for k, v in self.as_dict().items() if k not in self.TEST_ONLY}

    def rim_kwargs(self) -> dict[str, Any]:
        """The :class:`minirims.RIM` arguments besides the sizes a model's name gives."""
        keys = ("input_heads", "input_d_k", "input_d_v", "comm_heads", "comm_d_k", "comm_d_v", "dropout")
        return {k: getattr(self, k) for k in keys} | {"compile_step": self.compile}

    def train_config(self, name: str, seed: int, progress: bool = True, **extra: Any) -> TrainConfig:
        """The :class:`TrainConfig` of model ``name`` and ``seed``: its own rate from ``lr_by_model``."""
        return TrainConfig(
            epochs=self.epochs,
            lr=float(self.lr_by_model.get(name, self.lr)),
            grad_clip=self.grad_clip,
            seed=seed,
            progress=progress,
            lr_schedule=self.lr_schedule,
            warmup_steps=self.warmup_steps,
            **extra,
        )


#: the RIM's attention in the laptop-sized (``cpu``) profiles: keys and values narrower than the paper's
LAPTOP_ATTENTION: dict[str, int] = {"input_d_k": 32, "input_d_v": 64, "comm_d_k": 16, "comm_d_v": 16}
#: the smallest attention, for the ``smoke`` profiles
TINY_ATTENTION: dict[str, int] = {
    "input_d_k": 8,
    "input_d_v": 16,
    "comm_heads": 2,
    "comm_d_k": 4,
    "comm_d_v": 4,
}

SettingsT = TypeVar("SettingsT", bound=Settings)


def settings_of(
    profiles: Mapping[str, SettingsT], profile: str | SettingsT | None, overrides: Mapping[str, Any]
) -> SettingsT:
    """``profile``'s settings (a name, None for env ``MINIRIMS_PROFILE``, or Settings) with ``overrides``."""
    if isinstance(profile, Settings):
        base = profile
    else:
        name = resolve_profile(profile)
        if name not in profiles:  # e.g. a ``long`` profile that only some experiments have
            raise ValueError(f"profile: expected one of {', '.join(profiles)}, got {name!r}")
        base = profiles[name]
    return base.replace(**overrides) if overrides else base  # type: ignore[return-value]


def make_core(name: str, d_in: int, settings: Settings) -> nn.Module:
    """The recurrent core a model's name describes: a :class:`RIM` (ablated as its name says) or
    :class:`LSTMBaseline` of ``d_in`` inputs (``(B, T, d_in) -> (B, T, d_out)``); a RIM's attention sizes
    come from ``settings``."""
    spec = parse_model_name(name, ("rim", "lstm"))
    if spec["kind"] == "rim":
        ablation = {"communicate": spec["communicate"], "selection": spec["selection"]}
        return RIM(
            d_in, spec["n"], spec["k"], spec["d"], rnn=spec["rnn"], **ablation, **settings.rim_kwargs()
        )
    return LSTMBaseline(d_in, spec["d"])


# ---------------------------------------------------------------------------------- models x seeds -> record
@dataclass
class Task:
    """What one experiment gives the shared loop of :func:`train_and_test` (data already on the device).

    Attributes:
        batches: ``(seed, epoch) -> iterable of batches`` of one training epoch (a function of both only).
        loss: ``(model, batch) -> (loss, {name: detached scalar})``, as :func:`fit` takes it.
        validate: ``model -> {name: float}`` after every epoch; ``select`` picks the best epoch.
        test: ``model -> result`` of one trained model (any value ``summarize`` understands).
        summarize: ``[result per seed] -> the record's entry of one model``.
        select, mode: the validation key that picks the best epoch, and "min" or "max".
        log_every: steps between progress-bar refreshes.
        chance_loss: the training loss of the trivial predictor (a uniform guess: ln 8 for the copied digits),
            or None; a model that ends far above it (:data:`ABSURD_LOSS_FACTOR`) is flagged in the record.
    """

    batches: Callable[[int, int], Iterable[Any]]
    loss: Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    validate: Callable[[nn.Module], dict[str, float]]
    test: Callable[[nn.Module], Any]
    summarize: Callable[[list[Any]], dict[str, Any]]
    select: str = "val_loss"
    mode: str = "min"
    log_every: int = 25
    chance_loss: float | None = None


class Record(TypedDict, total=False):
    """A result record: one JSON file per (experiment, profile) run (see the module docstring)."""

    experiment: str
    profile: str
    created: str
    command: str | None
    settings: dict[str, Any]
    seeds: list[int]
    provenance: dict[str, Any]
    wall_time: float | None
    parameters: dict[str, int]
    metrics: dict[str, Any]
    curves: dict[str, Any]


def train_and_test(
    experiment: str,
    settings: Settings,
    seeds: int | Sequence[int],
    make_model: Callable[[str, Any], nn.Module],
    make_task: Callable[[Any, torch.device], Task],
    *,
    baselines: Callable[[Task], dict[str, Any]] | None = None,
    results: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    save: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    fresh: bool = False,
    trained: dict[str, nn.Module] | None = None,
    extra: Mapping[str, Any] | None = None,
    flush_denormals: bool = True,
    workers: int = 1,
    train_only: bool = False,
) -> Record:
    """The loop every experiment runs: for each model and seed, train with :func:`fit`, test, then record.

    Every model of ``settings.models`` is built (so a size it cannot take fails) before ``make_task``
    loads or simulates data. One checkpoint per model and seed lives in
    ``<runs_dir>/<experiment>_<profile>_<hash of the training settings>/<model>_seed<seed>.pt``: a rerun with
    the same settings resumes (``fresh`` starts over), one with other settings trains afresh. The record is
    written to ``results`` when given, else to the runs folder (never to the tracked ``results/`` unless
    asked). ``trained`` (a dict), when given, receives each model's last seed, on the CPU, in eval mode.
    ``flush_denormals``: on a CPU, train and test with denormal floats flushed to zero (see
    :func:`minirims.experiments.train.denormals_flushed`; the record's provenance says which).

    Each model's entry is ``task.summarize`` of its per-seed test results, plus ``train_seconds`` (summed
    over seeds from the epochs' history, so right for resumed runs) and ``best_epoch`` (per seed); the
    trivial predictors of ``baselines(task)`` are added as entries of their own. A model whose last training
    loss is far above ``task.chance_loss`` (it learned nothing, or diverged to large finite values) gets a
    ``"warning"`` in its entry, also printed on stderr.

    ``workers`` > 1 (a CPU): first train the (model, seed) pairs in that many processes side by side, one
    thread each (:func:`train_in_processes`), then test them here from their finished checkpoints; on a
    2-core machine two small models train faster side by side than one after the other at two threads.
    ``train_only``: train (or resume) every checkpoint and return an empty record: what each of those
    processes does.

    The runs folder (and ``results``, when saving) must be folders one can write to: checked before any
    work. A record that cannot be written after all (the folder became read-only during the run) is written
    to a new temporary folder instead, and the ValueError raised says where.
    """
    seeds_used = seed_list(seeds)
    dev = pick_device(device)
    folder = check_runs_dir(runs_dir)
    if save and results is not None:
        check_output_dir("results", results)
    for name in settings.models:
        make_model(name, settings)
    check_int("workers", workers)
    started, start = provenance(dev), time.perf_counter()
    if workers > 1:
        if dev.type != "cpu":
            raise ValueError(
                f"workers: expected 1 on {dev.type} (processes side by side are for a CPU), got {workers}"
            )
        train_in_processes(
            experiment, settings, seeds_used, folder, workers, fresh, flush_denormals, progress
        )
        fresh = False  # the checkpoints just written are the run's
    task = make_task(settings, dev)
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    parameters: dict[str, int] = {}
    with denormals_flushed(dev, flush_denormals) as flushed:
        for name in settings.models:
            tested, best, seconds, curves[name] = [], [], 0.0, {}
            for seed in seeds_used:
                seed_everything(seed)
                model = make_model(name, settings).to(dev)
                parameters[name] = count_parameters(model)
                result = fit(
                    model,
                    lambda epoch, seed=seed: task.batches(seed, epoch),
                    task.loss,
                    task.validate,
                    settings.train_config(name, seed, progress, log_every=task.log_every),
                    checkpoint=checkpoint_path(folder, experiment, settings, name, seed),
                    select=task.select,
                    mode=task.mode,
                    desc=f"{name} seed {seed}",
                    settings={**settings.training_dict(), "model": name},
                    fresh=fresh,
                    flush_denormals=flush_denormals,
                )
                if train_only:
                    continue
                curves[name][str(seed)] = result.history
                best.append(int(result.best_epoch))
                seconds += sum(float(e.get("seconds", 0.0)) for e in result.history)
                tested.append(task.test(model))
                if trained is not None:
                    trained[name] = model.cpu().eval()
            if train_only:
                continue
            metrics[name] = {**task.summarize(tested), "best_epoch": best, "train_seconds": round(seconds, 3)}
            warning = _absurd_loss(name, curves[name], task.chance_loss)
            if warning is not None:
                metrics[name]["warning"] = warning
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        if train_only:
            return {}  # type: ignore[typeddict-item]
        if baselines is not None:
            metrics.update(baselines(task))
    started["flush_denormals"] = flushed
    record = make_record(
        experiment,
        settings.profile,
        settings.as_dict(),
        seeds_used,
        metrics,
        curves=curves,
        parameters=parameters,
        wall_time=time.perf_counter() - start,
        device=dev,
        started=started,
        extra=extra,
    )
    if save:
        save_record_or_keep(record, output_record_path(experiment, settings.profile, results, runs_dir))
    return record  # type: ignore[return-value]


def default_workers(device: str | torch.device | None = None) -> int:
    """How many processes a notebook's training run uses on ``device`` (None: the one :func:`run` picks):
    2 on a CPU with two cores or more for this process (the models train side by side, one thread each),
    else 1 (one core, or a GPU: one process)."""
    if pick_device(device).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if cores >= 2 else 1


def _train_one(job: tuple[str, Settings, int, str, bool, bool]) -> str:
    """Train one (model, seed) of an experiment in this process, one thread; its checkpoint is the result."""
    experiment, settings, seed, runs_dir, fresh, flush = job
    torch.set_num_threads(1)
    module = importlib.import_module(f"minirims.experiments.{experiment}")
    module.run(
        settings,
        [seed],
        runs_dir=runs_dir,
        save=False,
        progress=False,
        fresh=fresh,
        flush_denormals=flush,
        train_only=True,
    )
    return f"{settings.models[0]} seed {seed}"


def train_in_processes(
    experiment: str,
    settings: Settings,
    seeds: Sequence[int],
    runs_dir: str | os.PathLike[str],
    workers: int = 2,
    fresh: bool = False,
    flush_denormals: bool = True,
    progress: bool = True,
    poll_seconds: float = 10.0,
) -> None:
    """Train every (model, seed) of ``settings`` in ``workers`` processes side by side (one thread each, on
    the CPU), each into its checkpoint in ``runs_dir``; the experiment's ``run`` then finds them finished
    and only tests. The order is the settings' models, then seeds; the numbers are those of a run in one
    process (the same seeds, one thread each). The progress bar counts the epochs finished, summed over
    the processes, as their checkpoints show them (read every ``poll_seconds``).
    """
    import multiprocessing

    check_int("workers", workers)
    check_rate("poll_seconds", poll_seconds)
    pairs = [(name, seed) for name in settings.models for seed in seeds]
    jobs = [
        (experiment, settings.replace(models=(name,)), seed, str(runs_dir), fresh, flush_denormals)
        for name, seed in pairs
    ]
    checkpoints = [checkpoint_path(runs_dir, experiment, settings, name, seed) for name, seed in pairs]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch threads or locks
    bar = tqdm(
        total=len(jobs) * settings.epochs,
        unit="epoch",
        desc=f"{len(jobs)} trainings in {min(workers, len(jobs))} processes",
        disable=not progress,
    )
    with bar, context.Pool(min(workers, len(jobs))) as pool:
        results, finished = pool.imap_unordered(_train_one, jobs), 0
        while finished < len(jobs):
            try:
                results.next(timeout=poll_seconds)  # a process's error is raised here as soon as it happens
                finished += 1
            except multiprocessing.TimeoutError:
                pass
            bar.update(sum(checkpoint_epoch(path) for path in checkpoints) - bar.n)
        bar.update(bar.total - bar.n)  # every training finished


def _absurd_loss(name: str, curves: Mapping[str, Any], chance: float | None) -> str | None:
    """A warning when a model's last training loss (of any seed) is far above the trivial predictor's."""
    if chance is None:
        return None
    last = {seed: rows[-1].get("train_loss") for seed, rows in curves.items() if rows}
    bad = {s: v for s, v in last.items() if isinstance(v, (int, float)) and v > ABSURD_LOSS_FACTOR * chance}
    if not bad:
        return None
    shown = ", ".join(f"{v:.4g} (seed {s})" for s, v in bad.items())
    return (
        f"{name} ended with a training loss of {shown}, far above the trivial predictor's {chance:.3g}: "
        "it learned nothing (the learning rate is probably too high: try a lower --lr)"
    )


def save_record_or_keep(record: Mapping[str, Any], path: Path) -> Path:
    """:func:`save_record` to ``path``; when that fails (a folder made read-only or removed during the run),
    save it in a new temporary folder and raise a ValueError that says where: finished work is never lost."""
    try:
        return save_record(record, path)
    except OSError as err:
        import tempfile

        kept = Path(tempfile.mkdtemp(prefix="minirims-record-")) / path.name
        save_record(record, kept)
        raise ValueError(
            f"record: could not write {path} ({type(err).__name__}: {err.strerror or err}); the finished "
            f"run's record was saved to {kept} instead"
        ) from None


@torch.no_grad()
def traced(model: nn.Module, tokens: torch.Tensor) -> Any:
    """Run ``model(tokens, trace=True)`` in eval mode (restored after) on the model's device; the RIM's
    :class:`~minirims.model.Trace` (masks (B, L, n), input_attn (B, L, n, 1+m), comm_attn). ``tokens`` (L,)
    or (B, L)."""
    x = tokens[None] if tokens.dim() == 1 else tokens
    was_training = model.training
    model.eval()
    try:
        _, tr = model(x.to(next(model.parameters()).device), trace=True)
    finally:
        model.train(was_training)
    return tr


def traced_masks(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """:func:`traced`'s masks, on the CPU: tokens (L,) or (B, L) -> (B, L, n) bool. Each experiment's
    ``activity_masks`` checks the model."""
    return traced(model, tokens).masks.cpu()


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count n >= 1 gives 0..n-1; a non-empty list of distinct ints >= 0 is kept as is.

    At most :data:`MAX_SEEDS` seeds, each at most :data:`MAX_SEED` (checked before any list is built). A
    repeated seed would count one run twice in a mean over seeds, so it is refused.
    """
    if isinstance(seeds, bool):
        raise ValueError(f"seeds: expected a count >= 1 or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds: expected a count >= 1 or a list of seeds, got {seeds!r}")
        if seeds > MAX_SEEDS:
            raise ValueError(f"seeds: expected a count of at most {MAX_SEEDS} seeds, got {seeds}")
        return list(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds: expected a count >= 1 or a list of non-negative ints, got {seeds!r}")
    out = list(itertools.islice(seeds, MAX_SEEDS + 1))  # never more than that, whatever seeds is
    if len(out) > MAX_SEEDS:
        raise ValueError(f"seeds: expected at most {MAX_SEEDS} seeds, got more")
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"seeds: expected a count >= 1 or a list of non-negative ints, got {seeds!r}")
    if max(out) > MAX_SEED:
        raise ValueError(f"seeds: expected seeds in 0..{MAX_SEED}, got {max(out)}")
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise ValueError(
            f"seeds: expected distinct seeds, got {out!r} ({', '.join(map(str, twice))} repeated)"
        )
    return out


#: the help of every command's ``--seeds``
SEEDS_HELP = "a count N (seeds 0..N-1) or a list such as 0,3 (seed 2 alone: 2,)"


def seeds_argument(text: str) -> int | list[int]:
    """``--seeds`` on the command line: a count ``N`` (seeds 0..N-1) or a comma-separated list (``0,3``; one
    seed ``k`` alone: ``k,``).

    Raises ``argparse.ArgumentTypeError`` (argparse turns it into a one-line usage error, status 2).
    """
    import argparse

    try:
        if text.count(",") >= MAX_SEEDS:  # refused before any list of that length is built
            raise ValueError(
                f"seeds: expected at most {MAX_SEEDS} seeds, got a list of {text.count(',') + 1}"
            )
        value: int | list[int] = (
            [int(p) for p in text.removesuffix(",").split(",")] if "," in text else int(text)
        )
        seed_list(value)
    except ValueError as err:
        why = str(err).removeprefix("seeds: ") if str(err).startswith("seeds: ") else None
        raise argparse.ArgumentTypeError(
            why or f"expected a count N or a comma-separated list of seeds, got {text!r}"
        ) from None
    return value


def add_arguments(parser: Any, extra: Callable[[Any], None] | None = None) -> None:
    """The options of every experiment command, with one name each: ``--profile``, ``--models``, ``--seeds``,
    ``--epochs``, ``--lr``, ``--results``, ``--runs-dir``, ``--device``, ``--fresh``, ``--workers``,
    ``--no-save``, ``--no-progress``; ``extra(parser)`` adds an experiment's own."""
    parser.add_argument(
        "--profile",
        default=None,
        help="smoke | cpu | full | long (default: env MINIRIMS_PROFILE, else full on a GPU, cpu otherwise)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models to train, e.g. rim-6x48-k4 lstm-288 (default: the profile's)",
    )
    parser.add_argument(
        "--seeds",
        type=seeds_argument,
        default=1,
        help=SEEDS_HELP,
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--lr", type=float, default=None, help="one peak learning rate for every model")
    if extra is not None:
        extra(parser)
    parser.add_argument(
        "--results",
        default=None,
        help="write the record into this folder; --results results/ updates the tracked reference records "
        "(default: the runs folder, never results/)",
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="checkpoints, and the record unless --results is given (default: $MINIRIMS_RUNS or runs/)",
    )
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument(
        "--fresh", action="store_true", help="start over: ignore and replace existing checkpoints"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="on a CPU, train the models and seeds in this many processes side by side, one thread each "
        "(default 1: one after the other)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the record")
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="on a CPU, compute on denormal floats instead of flushing them to zero (slower on many CPUs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_command(module: Any, args: Any, overrides: Mapping[str, Any] | None = None) -> int:
    """``python -m minirims <experiment>``: check everything, print the settings, run, print the table.

    A user error (a bad setting, seed, model, device, output folder; a checkpoint written with other
    settings) raises a ValueError before any work where it can: ``python -m minirims`` prints it as one line
    (status 2). The record and its figure go to ``--results`` or the runs folder; when they cannot be written
    after the run (the folder became read-only meanwhile) they go to a temporary folder, and the error says
    where.
    """
    changes = dict(overrides or {})
    if args.models is not None:
        names = [m.strip() for arg in args.models for m in arg.split(",")]
        if not names or not all(names):
            raise ValueError(
                "--models: expected model names such as rim-6x48-k4 lstm-288 (separated by spaces or "
                f"commas), got {' '.join(args.models)!r}"
            )
        changes["models"] = names
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.lr is not None:  # one learning rate for every model, as asked
        changes.update(lr=args.lr, lr_by_model={})
    settings = module.settings(args.profile, **changes)
    seeds = seed_list(args.seeds)
    pick_device(args.device)
    check_runs_dir(args.runs_dir, "--runs-dir")
    if args.results is not None and not args.no_save:
        check_output_dir("--results", args.results)
    check = getattr(module, "check_environment", None)
    if check is not None:  # e.g. the data an experiment needs: before any work too
        check(settings)
    print(f"{module.EXPERIMENT}, profile {settings.profile}:\n{format_settings(settings)}", flush=True)
    record = module.run(
        settings,
        seeds,
        results=args.results,
        runs_dir=args.runs_dir,
        device=args.device,
        save=not args.no_save,
        progress=not args.no_progress,
        fresh=args.fresh,
        flush_denormals=not args.keep_denormals,
        workers=args.workers,
    )
    print(describe_record(record))
    print(module.format_table(record))
    if not args.no_save:
        path = output_record_path(module.EXPERIMENT, settings.profile, args.results, args.runs_dir)
        save_record_figure(record, path)
        print(f"record: {path}")
    return 0


def save_record_figure(record: Mapping[str, Any], path: Path) -> Path:
    """Save :func:`~minirims.experiments.figures.plot_record` of ``record`` beside its ``path`` (a .png);
    the figure's path. Where that cannot be written, the figure goes to a temporary folder and a ValueError
    says where both are."""
    import matplotlib

    matplotlib.use("Agg")
    from minirims.experiments import figures

    fig, png = figures.plot_record(record), path.with_suffix(".png")
    try:
        fig.savefig(png, dpi=100)
    except OSError as err:  # the record is saved (or kept, see train_and_test): keep the figure too
        import tempfile

        kept = Path(tempfile.mkdtemp(prefix="minirims-figure-")) / png.name
        fig.savefig(kept, dpi=100)
        raise ValueError(
            f"figure: could not write {png} ({type(err).__name__}: "
            f"{err.strerror or err}); the record is {path}, the figure was saved to {kept} instead"
        ) from None
    return png


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mean_std(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` of a list of numbers (std over seeds, ddof=0; 0 for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: expected at least one number, got none")
    arr = np.asarray(vals, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(vals), "values": vals}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, float) and math.isnan(obj):  # NaN -> null (strict JSON)
        return None
    return obj


def make_record(
    experiment: str,
    profile: str,
    settings: Mapping[str, Any],
    seeds: Iterable[int],
    metrics: Mapping[str, Any],
    curves: Mapping[str, Any] | None = None,
    parameters: Mapping[str, int] | None = None,
    wall_time: float | None = None,
    device: str | torch.device | None = None,
    extra: Mapping[str, Any] | None = None,
    started: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a JSON-ready result record (see the module docstring for the layout).

    ``started`` is :func:`provenance` taken when the run began: the commit the code was loaded from. The
    record keeps it, and adds ``git_commit_at_end`` / ``git_dirty_at_end`` when the checkout changed during
    the run (a commit made while a long run trained does not change the code the run had loaded).
    """
    _check_name("experiment", experiment)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    record = {
        "experiment": experiment,
        "profile": profile,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        "settings": dict(settings),
        "seeds": [int(s) for s in seeds],
        "provenance": _provenance_of_run(device, started),
        "wall_time": wall_time,
        "parameters": dict(parameters or {}),
        "metrics": dict(metrics),
        "curves": dict(curves or {}),
    }
    if extra:
        record.update(dict(extra))
    return _jsonable(record)


def save_record(record: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``record`` as indented JSON, atomically (default path: :func:`record_path`)."""
    if not isinstance(record, Mapping) or "experiment" not in record or "profile" not in record:
        raise ValueError("record: expected a mapping with 'experiment' and 'profile' keys (see make_record)")
    target = Path(path) if path is not None else record_path(record["experiment"], record["profile"])
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)  # left by a save that was killed
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(_jsonable(record), indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one record; ValueError if it is not a record."""
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"path: expected a readable JSON result record, got {p} ({err})") from None
    if not isinstance(record, dict) or "experiment" not in record or "metrics" not in record:
        raise ValueError(f"path: expected a result record with 'experiment' and 'metrics', got {p}")
    return record


def load_reference_results(
    experiment: str, results: str | os.PathLike[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every saved record of ``experiment`` in ``results`` (default :func:`results_dir`), keyed by profile.

    Missing records are simply absent (an empty dict when there are none), so a notebook can show whatever
    reference runs exist -- e.g. a ``cpu`` record but no ``full`` GPU record yet.
    """
    _check_name("experiment", experiment)
    folder = Path(results) if results is not None else results_dir()
    found: dict[str, dict[str, Any]] = {}
    for profile in PROFILES:
        p = folder / f"{experiment}_{profile}.json"
        if p.exists():
            found[profile] = load_record(p)
    return found


def describe_record(record: Mapping[str, Any]) -> str:
    """A one-line label, e.g. ``"cpu profile, CPU (2 threads), 1 seed, 13.5 min"``.

    A record whose models trained in earlier runs (resumed from checkpoints, so ``wall_time`` is only the
    run that tested them) is labelled with both: ``"..., 3 seeds, 136.7 min of training, this run 97 s"``,
    the training time summed over models and seeds from ``metrics[name]["train_seconds"]``.
    """
    prov = record.get("provenance", {})
    dev = prov.get("device", "?")
    threads = prov.get("threads", "?")
    where = (
        f"GPU ({prov.get('device_name')})"
        if dev == "cuda"
        else f"CPU ({threads} thread{'' if threads == 1 else 's'})"
    )
    seeds = record.get("seeds", [])
    wall = record.get("wall_time")
    trained = sum(
        float(m["train_seconds"])
        for m in record.get("metrics", {}).values()
        if isinstance(m, Mapping) and isinstance(m.get("train_seconds"), (int, float))
    )
    parts = [
        f"{record.get('profile', '?')} profile",
        where,
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
    ]

    def minutes(seconds: float) -> str:
        return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"

    if wall is not None and trained > 1.05 * wall:
        parts.append(f"{minutes(trained)} of training, this run {minutes(wall)}")
    elif wall is not None:
        parts.append(minutes(wall))
    return ", ".join(parts)


def format_settings(settings: Mapping[str, Any] | Settings, indent: str = "  ") -> str:
    """Aligned ``key: value`` lines (nested mappings indented), for printing a profile's settings."""
    if isinstance(settings, Settings):
        settings = settings.as_dict()
    lines: list[str] = []
    width = max((len(str(k)) for k in settings), default=0)
    for key, val in settings.items():
        if isinstance(val, Mapping):
            lines.append(f"{indent}{key}:")
            lines.append(format_settings(val, indent + "  "))
        else:
            lines.append(f"{indent}{str(key).ljust(width)} : {val}")
    return "\n".join(lines)
