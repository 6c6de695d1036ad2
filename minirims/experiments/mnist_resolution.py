"""Sequential MNIST by resolution: train on 14x14, test on 16x16, 19x19, 24x24 (RIM paper, Table 1).

Each digit is resized (nearest neighbour) and binarized, then read pixel by pixel in row order: 196 steps
at 14x14, 576 at 24x24. A model that has learned *what* a stroke looks like, rather than *when* it arrives,
should still recognise the longer sequences. API::

    PROFILE_SETTINGS: dict[profile, dict]                  # smoke / cpu / full, printed by the notebook
    MODEL_NAMES = ("rim-6-4", "rim-6-5", "rim-6-6", "lstm-300", "lstm-600", "transformer")
    CHANCE_ACC = 1 / 10                                    # a uniform guess: the trivial predictor
    profile_settings(profile=None, **overrides) -> dict
    make_model(name, settings=None) -> MNISTClassifier     # tokens (B, T) int -> logits (B, 10)
    activity_masks(model, tokens) -> (B, T, n) bool        # which RIM modules are active at each pixel
    run(profile=None, models=None, seeds=1, ...) -> record # trains with experiments.train.fit, saves a record
    add_arguments(parser) / main(args) -> int              # python -m minirims mnist-resolution ...

Every model is ``nn.Embedding(2, d_emb)`` (a pixel is a token, not a raw scalar) -> recurrent layer
(RIM, LSTM or causal Transformer) -> linear head on the last step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from minirims.experiments.common import (
    add_run_arguments,
    check_settings,
    count_parameters,
    default_runs_dir,
    format_settings,
    make_record,
    mean_std,
    output_record_path,
    profile_with_overrides,
    provenance,
    save_record,
    seed_list,
    settings_key,
    traced_masks,
)
from minirims.experiments.data.mnist import SPLIT_SIZES, load_mnist, pixel_sequences
from minirims.experiments.train import LR_SCHEDULES, TrainConfig, batch_indices, fit, pick_device
from minirims.experiments.transformer import CausalTransformer
from minirims.model import RIM, LSTMBaseline

__all__ = [
    "CHANCE_ACC",
    "EXPERIMENT",
    "MODEL_NAMES",
    "PAPER_TABLE1",
    "PROFILE_SETTINGS",
    "SETTINGS_RULES",
    "MNISTClassifier",
    "activity_masks",
    "add_arguments",
    "evaluate_accuracy",
    "main",
    "make_model",
    "plot_accuracy",
    "profile_settings",
    "run",
]

EXPERIMENT = "mnist_resolution"
#: the largest side a 28x28 digit is resized to (twice the native side)
MAX_SIZE = 56
#: a uniform guess among the 10 digits (the trivial predictor every model must beat)
CHANCE_ACC = 1 / 10
MODEL_NAMES = ("rim-6-4", "rim-6-5", "rim-6-6", "lstm-300", "lstm-600", "transformer")

#: The paper's Table 1 (test accuracy %, mean of 3 runs) at 16 / 19 / 24.
PAPER_TABLE1: dict[str, dict[int, float]] = {
    "rim-6-6": {16: 85.5, 19: 56.2, 24: 30.9},
    "rim-6-5": {16: 88.3, 19: 43.1, 24: 22.1},
    "rim-6-4": {16: 90.0, 19: 73.4, 24: 38.1},
    "lstm-300": {16: 86.8, 19: 42.3, 24: 25.2},
    "lstm-600": {16: 84.5, 19: 52.2, 24: 21.9},
    "transformer": {16: 91.2, 19: 51.6, 24: 22.9},
}

_FULL: dict[str, Any] = {
    "train_size": 14,
    "test_sizes": [14, 16, 19, 24],
    "n_train": 50_000,
    "n_valid": 10_000,
    "n_test": 10_000,
    "epochs": 20,
    "batch_size": 64,
    "eval_batch_size": 500,
    "lr": 7e-4,
    "lr_by_model": {},
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "grad_clip": 1.0,
    "d_emb": 16,
    "rim_hidden": 100,
    "input_d_k": 64,
    "input_d_v": 400,
    "input_heads": 1,
    "comm_heads": 4,
    "comm_d_k": 32,
    "comm_d_v": 32,
    "dropout": 0.1,
    "lstm_scale": 1.0,
    "tf_d_model": 128,
    "tf_layers": 4,
    "tf_heads": 4,
    "models": ["rim-6-4", "rim-6-5", "rim-6-6", "lstm-300", "lstm-600", "transformer"],
    "compile": False,
    "note": "paper settings; 20 epochs (not ~100) to fit a GPU budget -- estimate, not measured: "
    "~0.5 s per RIM batch of 64 x 196 steps on one GPU -> ~7 min/epoch -> ~2.5 h per RIM run, "
    "~25 h for 3 RIM variants x 3 seeds, LSTMs and Transformer a few hours more",
}

PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_FULL,
        "n_train": 256,
        "n_valid": 128,
        "n_test": 64,
        "epochs": 1,
        "batch_size": 32,
        "eval_batch_size": 64,
        "lr": 2e-3,
        "d_emb": 8,
        "rim_hidden": 12,
        "input_d_k": 16,
        "input_d_v": 32,
        "comm_heads": 2,
        "comm_d_k": 8,
        "comm_d_v": 8,
        "lstm_scale": 0.12,
        "tf_d_model": 32,
        "tf_layers": 1,
        "tf_heads": 2,
        "models": ["rim-6-4", "lstm-600"],
        "note": "proves the pipeline runs (seconds); accuracies are near chance",
    },
    "cpu": {
        **_FULL,
        "n_train": 50_000,
        "n_valid": 1_000,
        "n_test": 1_000,
        "epochs": 5,
        "batch_size": 32,
        "lr": 3e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 200,
        "dropout": 0.0,
        "rim_hidden": 32,
        "input_d_k": 32,
        "input_d_v": 64,
        "comm_heads": 4,
        "comm_d_k": 16,
        "comm_d_v": 16,
        "lstm_scale": 0.32,
        "tf_d_model": 64,
        "tf_layers": 2,
        "models": ["rim-6-4", "lstm-600"],
        "compile": True,
        "note": "laptop size: 6 x 32-unit RIM vs a 192-unit LSTM (0.32 x 600), all 50k training digits, "
        "5 epochs of batch 32 (7,810 steps), one recipe for both models: Adam with 200 warm-up steps to "
        "lr 3e-3, then a cosine decay to 0, no dropout (with one input slot, dropout on the input attention "
        "erases the pixel for a module); the RIM's loop runs through torch.compile. Chosen from one-epoch "
        "probes of both models (batch 64 / 32 / 16, lr 3e-3 / 5e-3, a learned initial state: "
        "results/sweeps/mnist_probes.md). The paper trains ~100 epochs of batch 64 at a constant 7e-4 with "
        "dropout 0.1: this is early training, not Table 1",
    },
    "full": _FULL,
}


#: how :func:`profile_settings` checks every setting (see :data:`minirims.experiments.common.Rule`)
SETTINGS_RULES: dict[str, Any] = {
    "profile": "text",
    "train_size": ("int", 1, MAX_SIZE),
    "test_sizes": ("list", ("int", 1, MAX_SIZE), True),
    "n_train": ("int", 1, SPLIT_SIZES["train"]),
    "n_valid": ("int", 1, SPLIT_SIZES["valid"]),
    "n_test": ("int", 1, SPLIT_SIZES["test"]),
    "epochs": "count",
    "batch_size": "count",
    "eval_batch_size": "count",
    "lr": "positive",
    "lr_by_model": ("by_name", MODEL_NAMES, "positive"),
    "lr_schedule": ("one_of", LR_SCHEDULES),
    "warmup_steps": "count0",
    "grad_clip": "positive|none",
    "d_emb": "count",
    "rim_hidden": "count",
    "input_d_k": "count",
    "input_d_v": "count",
    "input_heads": "count",
    "comm_heads": "count",
    "comm_d_k": "count",
    "comm_d_v": "count",
    "dropout": "prob",
    "lstm_scale": "positive",
    "tf_d_model": "count",
    "tf_layers": "count",
    "tf_heads": "count",
    "models": ("names", MODEL_NAMES),
    "compile": "bool",
    "note": "text",
}


def profile_settings(profile: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (default: env MINIRIMS_PROFILE, see resolve_profile) with ``overrides``.

    Every setting is checked (:data:`SETTINGS_RULES`) before any data are loaded: counts are positive ints
    (never floats or booleans), ``n_train`` / ``n_valid`` / ``n_test`` at most the split's size, sizes in
    [1, 56] (the 28x28 digits resized), rates finite and positive, lists distinct.
    """
    settings = profile_with_overrides(PROFILE_SETTINGS, profile, overrides)
    check_settings(settings, SETTINGS_RULES)
    return settings


class MNISTClassifier(nn.Module):
    """Pixel embedding -> recurrent layer -> linear head on the last step.

    Args:
        core: a RIM, LSTMBaseline or CausalTransformer whose input size is ``d_emb``.
        d_emb: embedding size of a pixel token (0 or 1).
    """

    def __init__(self, core: nn.Module, d_emb: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(2, d_emb)
        self.core = core
        self.head = nn.Linear(int(core.d_out), 10)

    def forward(self, tokens: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Any]:
        """tokens (B, T) int in {0, 1} -> logits (B, 10); with ``trace`` also the core's Trace (or None)."""
        if tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError(
                f"tokens: expected shape (B, T) of integer tokens, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel():
            lo, hi = torch.stack(torch.aminmax(tokens)).tolist()  # one host sync per batch
            if lo < 0 or hi > 1:
                raise ValueError(f"tokens: expected pixel tokens in {{0, 1}}, got values in [{lo}, {hi}]")
        out, _, tr = self.core(self.embed(tokens.long()), trace=trace)
        logits = self.head(out[:, -1])
        return (logits, tr) if trace else logits


def _check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise ValueError(f"name: expected one of {', '.join(MODEL_NAMES)}, got {name!r}")
    return name


def make_model(name: str, settings: Mapping[str, Any] | None = None) -> MNISTClassifier:
    """Build one of :data:`MODEL_NAMES` with the sizes in ``settings`` (default: the ``full`` profile).

    ``rim-6-k``: 6 modules, k active, ``rim_hidden`` each. ``lstm-300`` / ``lstm-600``: hidden
    ``round(300 * lstm_scale)`` / ``round(600 * lstm_scale)``. ``transformer``: ``tf_*`` sizes.
    """
    _check_model_name(name)
    s = dict(PROFILE_SETTINGS["full"] if settings is None else settings)
    d_emb = int(s["d_emb"])
    core: nn.Module
    if name.startswith("rim-"):
        n, k = (int(v) for v in name.split("-")[1:])
        core = RIM(
            d_emb,
            n_modules=n,
            k_active=k,
            d_hidden=int(s["rim_hidden"]),
            input_heads=int(s["input_heads"]),
            input_d_k=int(s["input_d_k"]),
            input_d_v=int(s["input_d_v"]),
            comm_heads=int(s["comm_heads"]),
            comm_d_k=int(s["comm_d_k"]),
            comm_d_v=int(s["comm_d_v"]),
            dropout=float(s["dropout"]),
            compile_step=bool(s.get("compile", False)),
        )
    elif name.startswith("lstm-"):
        core = LSTMBaseline(d_emb, max(1, round(int(name.split("-")[1]) * float(s["lstm_scale"]))))
    else:
        core = CausalTransformer(
            d_emb, int(s["tf_d_model"]), int(s["tf_layers"]), int(s["tf_heads"]), dropout=float(s["dropout"])
        )
    return MNISTClassifier(core, d_emb)


@torch.no_grad()
def activity_masks(model: MNISTClassifier, tokens: Tensor) -> Tensor:
    """Which RIM modules are active at each pixel: tokens (T,) or (B, T) -> masks (B, T, n) bool (CPU)."""
    if not isinstance(model, MNISTClassifier) or not isinstance(model.core, RIM):
        raise ValueError(f"model: expected an MNISTClassifier with a RIM core, got {type(model).__name__}")
    return traced_masks(model, tokens)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, tokens: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Accuracy of ``model`` on tokens (N, T) / labels (N,), in batches, under no_grad, model.eval()."""
    if tokens.dim() != 2 or labels.shape != tokens.shape[:1]:
        raise ValueError(
            f"tokens, labels: expected shapes (N, T) and (N,), "
            f"got {tuple(tokens.shape)}, {tuple(labels.shape)}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, tokens.shape[0], batch_size):
        logits = model(tokens[i : i + batch_size].to(device))
        correct += (logits.argmax(-1) == labels[i : i + batch_size].to(device)).sum()
    model.train(was_training)
    return float(correct) / max(1, tokens.shape[0])


def _load_split(split: str, n: int, size: int) -> tuple[Tensor, Tensor]:
    images, labels = load_mnist(split)
    n = min(int(n), len(labels))
    return pixel_sequences(images[:n], size), torch.as_tensor(labels[:n]).long()


def run(
    profile: str | None = None,
    models: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 1,
    *,
    overrides: Mapping[str, Any] | None = None,
    results: str | Path | None = None,
    runs_dir: str | Path | None = None,
    save: bool = True,
    device: str | None = None,
    progress: bool = True,
    trained: dict[str, nn.Module] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train each model and seed on 14x14, keep the best-validation epoch, test at every size.

    Args:
        profile: smoke / cpu / full (default: env MINIRIMS_PROFILE).
        models: names from :data:`MODEL_NAMES` (default: the profile's ``models``).
        seeds: a count (seeds 0..seeds-1) or an explicit list.
        overrides: settings to change (e.g. ``{"n_train": 32}``); unknown keys raise ValueError.
        results: folder for the record, file ``mnist_resolution_<profile>.json``; only an explicit
            ``results="results"`` writes into the tracked reference records (default: the runs folder).
        runs_dir: checkpoints and, without ``results``, the record (default: env ``MINIRIMS_RUNS`` or
            ``runs/``, git-ignored). One checkpoint per model/seed in a folder named by the settings' hash,
            so a rerun with the same settings resumes and one with other settings starts afresh.
        save: write the record.
        device: "cpu" / "cuda" (default: cuda if available).
        progress: tqdm bars.
        trained: if a dict is given, the trained models (last seed, best epoch) are stored in it by name.
        fresh: ignore and replace existing checkpoints (train from scratch).

    Returns:
        The record (see :mod:`minirims.experiments.common`); ``metrics[name]["acc"][size]`` is
        mean/std/values over seeds of the test accuracy (0..1) at ``size x size``.
    """
    settings = profile_settings(profile, **dict(overrides or {}))
    names = list(settings["models"] if models is None else models)
    if not names:
        raise ValueError("models: expected at least one model name, got an empty list")
    for name in names:
        _check_model_name(name)
    if len(set(names)) != len(names):
        raise ValueError(f"models: expected distinct model names, got {names!r}")
    seeds_used = seed_list(seeds)
    dev = pick_device(device)
    for name in names:  # a size the model cannot take fails here, before the data load
        make_model(name, settings)
    started = provenance(dev)
    start = time.perf_counter()
    size0 = int(settings["train_size"])
    x_train, y_train = _load_split("train", settings["n_train"], size0)
    x_valid, y_valid = _load_split("valid", settings["n_valid"], size0)
    tests = {int(s): _load_split("test", settings["n_test"], int(s)) for s in settings["test_sizes"]}
    x_train_d, y_train_d = x_train.to(dev), y_train.to(dev)
    ckpt_root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    ckpt_dir = ckpt_root / f"{EXPERIMENT}_{settings['profile']}_{settings_key(settings)}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    bs, ebs = int(settings["batch_size"]), int(settings["eval_batch_size"])

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": (logits.argmax(-1) == y).float().mean().detach()}

    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    parameters: dict[str, int] = {}
    for name in names:
        per_size: dict[int, list[float]] = {int(s): [] for s in settings["test_sizes"]}
        curves[name] = {}
        best_epochs: list[int] = []
        train_seconds = 0.0
        for seed in seeds_used:
            torch.manual_seed(seed)
            model = make_model(name, settings).to(dev)
            parameters[name] = count_parameters(model)

            def batches(epoch: int, seed: int = seed) -> list[tuple[Tensor, Tensor]]:
                idx = batch_indices(len(y_train), bs, seed, epoch)
                return [(x_train_d[i.to(dev)], y_train_d[i.to(dev)]) for i in idx]

            def evaluate(m: nn.Module) -> dict[str, float]:
                return {"val_acc": evaluate_accuracy(m, x_valid, y_valid, ebs)}

            config = TrainConfig(
                epochs=int(settings["epochs"]),
                lr=float(dict(settings["lr_by_model"]).get(name, settings["lr"])),
                grad_clip=None if settings["grad_clip"] is None else float(settings["grad_clip"]),
                seed=seed,
                progress=progress,
                lr_schedule=str(settings["lr_schedule"]),
                warmup_steps=int(settings["warmup_steps"]),
            )
            result = fit(
                model,
                batches,
                loss_fn,
                evaluate,
                config,
                checkpoint=ckpt_dir / f"{name}_seed{seed}.pt",
                desc=f"{name} seed {seed}",
                settings={**settings, "model": name},
                fresh=fresh,
            )
            curves[name][str(seed)] = result.history
            best_epochs.append(int(result.best_epoch))
            # Summed from the per-epoch history, so it stays right when a run was resumed from a checkpoint.
            train_seconds += sum(float(e.get("seconds", 0.0)) for e in result.history)
            sizes = list(per_size)
            bar = tqdm(sizes, desc=f"{name} test", leave=False, disable=not progress)
            for s in bar:
                per_size[s].append(evaluate_accuracy(model, tests[s][0], tests[s][1], ebs))
            if trained is not None:
                trained[name] = model.cpu().eval()
        metrics[name] = {
            "acc": {str(s): mean_std(v) for s, v in per_size.items()},
            "best_epoch": best_epochs,
            "train_seconds": round(train_seconds, 3),
        }
    wall = time.perf_counter() - start
    record = make_record(
        EXPERIMENT,
        settings["profile"],
        settings,
        seeds_used,
        metrics,
        curves=curves,
        parameters=parameters,
        wall_time=wall,
        device=dev,
        started=started,
        extra={"paper_table1": PAPER_TABLE1},
    )
    if save:
        save_record(record, output_record_path(EXPERIMENT, settings["profile"], results, runs_dir))
    return record


def format_table(record: Mapping[str, Any], paper: bool = True) -> str:
    """Test accuracy (%) per model and size as text, with the paper's Table 1 beside it.

    With several seeds each cell is mean ± std over seeds; a single seed has no spread, and none is shown.
    """
    sizes = list(record["settings"]["test_sizes"])
    head = "model".ljust(12) + "".join(f"{s}x{s}".rjust(14) for s in sizes)
    if paper:
        head += "   | paper 16 / 19 / 24"
    lines = [head]
    several = len(record["seeds"]) > 1
    for name, m in record["metrics"].items():
        row = name.ljust(12)
        for s in sizes:
            a = m["acc"][str(s)]
            spread = f" ±{100 * a['std']:4.1f}" if several and a["std"] is not None else " " * 6
            row += f"{100 * a['mean']:8.1f}{spread}"
        if paper and name in PAPER_TABLE1:
            row += "   | " + " / ".join(f"{PAPER_TABLE1[name][s]:.1f}" for s in (16, 19, 24))
        lines.append(row)
    return "\n".join(lines)


def plot_accuracy(
    record: Mapping[str, Any], ax: Any = None, title: str | None = None, paper: bool = True
) -> Any:
    """Test accuracy (%) against resolution, one line per model (error bars: std over seeds).

    With ``paper`` the paper's Table 1 is drawn dashed in the same colour; chance (:data:`CHANCE_ACC`) is
    drawn as a line. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
    else:
        fig = ax.figure
    sizes = [int(s) for s in record["settings"]["test_sizes"]]
    for name, m in record["metrics"].items():
        mean = [100 * m["acc"][str(s)]["mean"] for s in sizes]
        std = [100 * (m["acc"][str(s)]["std"] or 0.0) for s in sizes]
        line = ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=name)
        if paper and name in PAPER_TABLE1:
            ax.plot(
                [16, 19, 24],
                [PAPER_TABLE1[name][s] for s in (16, 19, 24)],
                ls="--",
                color=line[0].get_color(),
                alpha=0.6,
                label=f"{name} (paper)",
            )
    ax.axvline(int(record["settings"]["train_size"]), color="grey", lw=0.8, ls=":")
    ax.axhline(100 * CHANCE_ACC, color="black", lw=0.8, ls="-.", label=f"chance ({100 * CHANCE_ACC:.0f}%)")
    ax.set_xticks(sizes, [f"{s}x{s}" for s in sizes])
    ax.set_xlabel("test resolution (trained on 14x14)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"{record['profile']} profile")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims mnist-resolution`` (the shared ones from ``add_run_arguments``)."""
    parser.add_argument("--profile", default=None, help="smoke | cpu | full (default: MINIRIMS_PROFILE)")
    parser.add_argument("--models", default=None, help=f"comma-separated, from {','.join(MODEL_NAMES)}")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed CLI arguments; prints the settings and the table; returns 0.

    A user error (a bad setting, seed, model, device; a checkpoint written with other settings) raises a
    ValueError, before any data are loaded where it can: ``python -m minirims`` prints it as one line
    (status 2).
    """
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    settings = profile_settings(args.profile, **overrides)
    for name in models or []:
        _check_model_name(name)
    seed_list(args.seeds)
    pick_device(args.device)
    print(f"mnist-resolution, profile {settings['profile']}:\n{format_settings(settings)}", flush=True)
    record = run(
        args.profile,
        models,
        args.seeds,
        overrides=overrides,
        results=args.results,
        runs_dir=args.runs_dir,
        device=args.device,
        progress=not args.no_progress,
        fresh=args.fresh,
    )
    print(format_table(record))
    path = output_record_path(EXPERIMENT, record["profile"], args.results, args.runs_dir)
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_accuracy(record, title=f"{record['profile']} profile, {len(record['seeds'])} seed(s)")
    fig.savefig(path.with_suffix(".png"), dpi=100)
    print(f"wall time {record['wall_time']:.0f} s; record: {path}")
    return 0
