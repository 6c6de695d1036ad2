"""The copying task (the paper's first experiment): remember 10 digits across a long stretch of blanks.

A sequence is 10 random digits from 1..8, then ``T - 1`` blanks (0), a marker (9), then 10 blanks during which
the model must output the 10 digits in order; elsewhere the target is the blank. Models are trained with
``T = 50`` and tested with longer delays (the paper: ``T = 200``), where an LSTM's memory decays and a RIM's
inactive modules, which keep their state bit for bit, do not.

::

    copying_sequences(digits (N, 10), delay) -> (tokens (N, delay + 20), targets (N, delay + 20))
    copying_batch(n, delay, generator) -> the same, for n random digit strings
    make_model(name, settings) -> CopyModel               # tokens (B, L) -> logits (B, L, 10)
    evaluate(model, delay, n, batch_size, seed) -> {"acc", "ce"}   # over the 10 copied digits
    activity_masks(model, tokens) -> (B, L, n) bool       # which RIM modules are active at each step
    run(profile=None, models=None, seeds=1, ...) -> record
    add_arguments(parser) / main(args) -> int             # python -m minirims copying ...

Record: ``metrics[model]["acc"][str(T)]`` is the digit accuracy (0..1) over the 10 copied digits at delay
``T`` and ``metrics[model]["ce"][str(T)]`` the cross-entropy on those 10 steps, each mean/std/n/values over
seeds. Trivial predictor: a uniform guess among the 8 digits scores 12.5% and ``ln 8 = 2.08`` nats.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
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
from minirims.experiments.train import LR_SCHEDULES, TrainConfig, fit, pick_device
from minirims.model import RIM, LSTMBaseline

__all__ = [
    "EXPERIMENT",
    "MODEL_NAMES",
    "N_DIGITS",
    "PROFILE_SETTINGS",
    "SETTINGS_RULES",
    "CHANCE_ACC",
    "CHANCE_CE",
    "CopyModel",
    "copying_sequences",
    "copying_batch",
    "profile_settings",
    "make_model",
    "evaluate",
    "activity_masks",
    "run",
    "format_table",
    "plot_accuracy",
    "add_arguments",
    "main",
]

EXPERIMENT = "copying"
MODEL_NAMES = ("rim", "lstm")
N_DIGITS = 10  # digits to copy
BLANK, MARKER = 0, 9
VOCAB = 10  # 0 blank, 1..8 digits, 9 marker
#: a uniform guess among the 8 digits (the trivial predictor every model must beat)
CHANCE_ACC = 1 / 8
CHANCE_CE = math.log(8)

_FULL: dict[str, Any] = {
    "train_delay": 50,
    "test_delays": [50, 100, 200, 400],
    "steps_per_epoch": 500,
    "epochs": 20,
    "batch_size": 64,
    "lr": 1e-3,
    "lr_by_model": {},
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "grad_clip": 1.0,
    "d_emb": 32,
    "n_modules": 6,
    "k_active": 4,
    "rim_hidden": 100,
    "input_d_k": 64,
    "input_d_v": 400,
    "comm_heads": 4,
    "comm_d_k": 32,
    "comm_d_v": 32,
    "dropout": 0.5,
    "lstm_hidden": 600,
    "n_eval": 1000,
    "eval_batch_size": 500,
    "compile": False,
    "models": ["rim", "lstm"],
    "note": "the official code's README example: 6 modules, 4 active, 600 units, lr 1e-3, dropout 0.5; "
    "LSTM of 600 units; 10k steps of batch 64 at delay 50",
}

PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_FULL,
        "train_delay": 5,
        "test_delays": [5, 10],
        "steps_per_epoch": 8,
        "epochs": 1,
        "batch_size": 16,
        "d_emb": 8,
        "rim_hidden": 8,
        "input_d_k": 8,
        "input_d_v": 16,
        "comm_heads": 2,
        "comm_d_k": 4,
        "comm_d_v": 4,
        "dropout": 0.1,
        "lstm_hidden": 48,
        "n_eval": 64,
        "eval_batch_size": 64,
        "note": "proves the pipeline runs (seconds); accuracies are near chance",
    },
    "cpu": {
        **_FULL,
        "train_delay": 50,
        "test_delays": [50, 100, 150, 200, 400],
        "steps_per_epoch": 250,
        "epochs": 16,
        "batch_size": 64,
        "lr": 5e-3,
        "lr_by_model": {"rim": 4e-3},
        "lr_schedule": "cosine",
        "warmup_steps": 200,
        "d_emb": 16,
        "rim_hidden": 48,
        "input_d_k": 32,
        "input_d_v": 64,
        "comm_heads": 4,
        "comm_d_k": 16,
        "comm_d_v": 16,
        "dropout": 0.1,
        "lstm_hidden": 288,
        "n_eval": 1000,
        "compile": True,
        "note": "laptop size: 6 x 48-unit RIM (4 active) vs a 288-unit LSTM (the same state size), "
        "4k steps of batch 64 at delay 50 (200 warm-up steps, then a cosine decay to 0); the RIM's step "
        "runs through torch.compile. Widths: at 6 x 32 the active modules drift during long waits and "
        "the RIM forgets (93% at T=200, 78% at T=400); at 6 x 48 they settle. Peak learning rates chosen "
        "by validation loss at delay 50 in the sweeps of results/sweeps/ (seed 0 unless said): the 6 x 48 "
        "RIM collapsed mid-training at 5e-3 (seeds 0, 1), under-trained at 3e-3, 4e-3 kept; LSTM-288 at "
        "cosine 1e-3, 2e-3, 5e-3 (seeds 0, 1), 8e-3: 5e-3 best (LSTM-192 had stayed at chance at every "
        "rate). Deviations from the official example: 6 x 48 units instead of 6 x 100, dropout 0.1 "
        "instead of 0.5, 4k steps instead of 10k, the learning rates and their schedule",
    },
    "full": _FULL,
}


#: how :func:`profile_settings` checks every setting (see :data:`minirims.experiments.common.Rule`)
SETTINGS_RULES: dict[str, Any] = {
    "profile": "text",
    "train_delay": "count",
    "test_delays": ("list", "count", True),
    "steps_per_epoch": "count",
    "epochs": "count",
    "batch_size": "count",
    "lr": "positive",
    "lr_by_model": ("by_name", MODEL_NAMES, "positive"),
    "lr_schedule": ("one_of", LR_SCHEDULES),
    "warmup_steps": "count0",
    "grad_clip": "positive|none",
    "d_emb": "count",
    "n_modules": "count",
    "k_active": ("int", 1, "n_modules"),
    "rim_hidden": "count",
    "input_d_k": "count",
    "input_d_v": "count",
    "comm_heads": "count",
    "comm_d_k": "count",
    "comm_d_v": "count",
    "dropout": "prob",
    "lstm_hidden": "count",
    "n_eval": "count",
    "eval_batch_size": "count",
    "compile": "bool",
    "models": ("names", MODEL_NAMES),
    "note": "text",
}


def profile_settings(profile: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (default: env MINIRIMS_PROFILE) with ``overrides`` (known keys only).

    Every setting is checked (:data:`SETTINGS_RULES`) before anything runs: counts are positive ints (never
    floats or booleans), rates finite and positive, ``k_active`` at most ``n_modules``, lists distinct.
    """
    settings = profile_with_overrides(PROFILE_SETTINGS, profile, overrides)
    check_settings(settings, SETTINGS_RULES)
    return settings


def copying_sequences(digits: Tensor, delay: int) -> tuple[Tensor, Tensor]:
    """Lay out copying sequences around given digits.

    Args:
        digits: (N, 10) int64 in 1..8, the digits to remember.
        delay: T >= 1, the number of steps from the last digit to the marker.

    Returns:
        tokens (N, T + 20): the digits, ``T - 1`` blanks (0), the marker (9), 10 blanks;
        targets (N, T + 20): blanks everywhere except the last 10 steps, which are the digits.
    """
    if not isinstance(digits, Tensor) or digits.dim() != 2 or digits.shape[1] != N_DIGITS:
        shape = tuple(digits.shape) if isinstance(digits, Tensor) else type(digits).__name__
        raise ValueError(f"digits: expected a tensor of shape (N, {N_DIGITS}), got {shape}")
    if digits.dtype.is_floating_point or (digits.numel() and not bool(((digits >= 1) & (digits <= 8)).all())):
        raise ValueError(f"digits: expected integers in 1..8, got dtype {digits.dtype}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ValueError(f"delay: expected a positive int, got {delay!r}")
    n, length = digits.shape[0], delay + 2 * N_DIGITS
    tokens = torch.full((n, length), BLANK, dtype=torch.long)
    tokens[:, :N_DIGITS] = digits
    tokens[:, N_DIGITS + delay - 1] = MARKER
    targets = torch.full((n, length), BLANK, dtype=torch.long)
    targets[:, -N_DIGITS:] = digits
    return tokens, targets


def copying_batch(n: int, delay: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` copying sequences with random digits (uniform on 1..8) and a delay of ``delay`` steps.

    Returns:
        tokens (n, delay + 20) and targets (n, delay + 20), both int64 (see :func:`copying_sequences`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    return copying_sequences(torch.randint(1, 9, (n, N_DIGITS), generator=generator), delay)


class CopyModel(nn.Module):
    """Token embedding -> recurrent core -> a linear read-out at every step.

    tokens (B, L) int64 in 0..9 -> logits (B, L, 10). ``core`` maps (B, L, d_emb) -> (B, L, d_out).
    """

    def __init__(self, core: nn.Module, d_emb: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_emb)
        self.core = core
        self.head = nn.Linear(int(core.d_out), VOCAB)

    def forward(self, tokens: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Any]:
        if tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError(
                f"tokens: expected shape (B, L) of integer tokens, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        out, _, tr = self.core(self.embed(tokens), trace=trace)
        logits = self.head(out)
        return (logits, tr) if trace else logits


def make_model(name: str, settings: Mapping[str, Any] | None = None) -> CopyModel:
    """``rim``: n modules of ``rim_hidden`` units, k active. ``lstm``: ``lstm_hidden`` units."""
    if name not in MODEL_NAMES:
        raise ValueError(f"name: expected one of {', '.join(MODEL_NAMES)}, got {name!r}")
    s = dict(PROFILE_SETTINGS["full"] if settings is None else settings)
    d_emb = int(s["d_emb"])
    if name == "rim":
        core: nn.Module = RIM(
            d_emb,
            n_modules=int(s["n_modules"]),
            k_active=int(s["k_active"]),
            d_hidden=int(s["rim_hidden"]),
            input_d_k=int(s["input_d_k"]),
            input_d_v=int(s["input_d_v"]),
            comm_heads=int(s["comm_heads"]),
            comm_d_k=int(s["comm_d_k"]),
            comm_d_v=int(s["comm_d_v"]),
            dropout=float(s["dropout"]),
            compile_step=bool(s.get("compile", False)),
        )
    else:
        core = LSTMBaseline(d_emb, int(s["lstm_hidden"]))
    return CopyModel(core, d_emb)


def _copy_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and digit accuracy over the last 10 steps. logits (B, L, 10), targets (B, L)."""
    lg, tg = logits[:, -N_DIGITS:], targets[:, -N_DIGITS:]
    ce = F.cross_entropy(lg.reshape(-1, VOCAB), tg.reshape(-1))
    acc = (lg.argmax(-1) == tg).float().mean()
    return ce, acc


@torch.no_grad()
def evaluate(
    model: nn.Module, delay: int, n: int = 1000, batch_size: int = 500, seed: int = 12345
) -> dict[str, float]:
    """Digit accuracy and cross-entropy over the 10 copied digits on ``n`` fresh sequences at ``delay``.

    The test sequences come from their own seed, so every model sees the same ones.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed + delay)
    ce_sum = torch.zeros((), device=device)
    acc_sum = torch.zeros((), device=device)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        tokens, targets = copying_batch(b, delay, gen)
        ce, acc = _copy_loss(model(tokens.to(device)), targets.to(device))
        ce_sum += ce * b
        acc_sum += acc * b
        done += b
    model.train(was_training)
    return {"acc": float(acc_sum) / n, "ce": float(ce_sum) / n}


@torch.no_grad()
def activity_masks(model: CopyModel, tokens: Tensor) -> Tensor:
    """Which RIM modules are active at each step: tokens (L,) or (B, L) -> masks (B, L, n) bool (CPU)."""
    if not isinstance(model, CopyModel) or not isinstance(model.core, RIM):
        raise ValueError(f"model: expected a CopyModel with a RIM core, got {type(model).__name__}")
    return traced_masks(model, tokens)


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
    """Train each model and seed at ``train_delay``, test at every delay in ``test_delays``.

    Training data are drawn fresh for every step (seeded by seed and epoch, so a resumed run sees the same
    data); the best epoch is the one with the lowest cross-entropy on 512 held-out sequences at the training
    delay (never at a test delay). Arguments as in :func:`minirims.experiments.mnist_resolution.run`.

    Returns:
        The record; ``metrics[name]["acc"][str(T)]`` and ``["ce"][str(T)]`` are mean/std/values over seeds.
    """
    settings = profile_settings(profile, **dict(overrides or {}))
    names = _check_models(settings["models"] if models is None else models)
    seeds_used = seed_list(seeds)
    dev = pick_device(device)
    started = provenance(dev)
    start = time.perf_counter()
    ckpt_root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    ckpt_dir = ckpt_root / f"{EXPERIMENT}_{settings['profile']}_{settings_key(settings)}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    delay, bs, steps = (
        int(settings["train_delay"]),
        int(settings["batch_size"]),
        int(settings["steps_per_epoch"]),
    )
    delays = [int(d) for d in settings["test_delays"]]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        tokens, targets = batch
        ce, acc = _copy_loss(model(tokens), targets)
        return ce, {"acc": acc.detach()}

    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    parameters: dict[str, int] = {}
    for name in names:
        per_delay: dict[int, list[dict[str, float]]] = {d: [] for d in delays}
        curves[name] = {}
        train_seconds = 0.0
        for seed in seeds_used:
            torch.manual_seed(seed)
            model = make_model(name, settings).to(dev)
            parameters[name] = count_parameters(model)

            def batches(epoch: int, seed: int = seed) -> list[tuple[Tensor, Tensor]]:
                gen = torch.Generator().manual_seed(1_000_003 * seed + epoch)
                tokens, targets = copying_batch(steps * bs, delay, gen)
                return [
                    (tokens[i : i + bs].to(dev), targets[i : i + bs].to(dev))
                    for i in range(0, steps * bs, bs)
                ]

            def validate(m: nn.Module) -> dict[str, float]:
                scores = evaluate(m, delay, 512, int(settings["eval_batch_size"]), seed=777)
                return {"val_acc": scores["acc"], "val_ce": scores["ce"]}

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
                validate,
                config,
                checkpoint=ckpt_dir / f"{name}_seed{seed}.pt",
                select="val_ce",
                mode="min",
                desc=f"{name} seed {seed}",
                settings={**settings, "model": name},
                fresh=fresh,
            )
            curves[name][str(seed)] = result.history
            train_seconds += sum(float(e.get("seconds", 0.0)) for e in result.history)
            for d in tqdm(delays, desc=f"{name} test", leave=False, disable=not progress):
                per_delay[d].append(
                    evaluate(model, d, int(settings["n_eval"]), int(settings["eval_batch_size"]))
                )
            if trained is not None:
                trained[name] = model.cpu().eval()
        metrics[name] = {
            "acc": {str(d): mean_std([r["acc"] for r in v]) for d, v in per_delay.items()},
            "ce": {str(d): mean_std([r["ce"] for r in v]) for d, v in per_delay.items()},
            "train_seconds": round(train_seconds, 3),
        }
    metrics["chance"] = {"acc": CHANCE_ACC, "ce": CHANCE_CE}
    record = make_record(
        EXPERIMENT,
        settings["profile"],
        settings,
        seeds_used,
        metrics,
        curves=curves,
        parameters=parameters,
        wall_time=time.perf_counter() - start,
        device=dev,
        started=started,
    )
    if save:
        save_record(record, output_record_path(EXPERIMENT, settings["profile"], results, runs_dir))
    return record


def _models(record: Mapping[str, Any]) -> list[str]:
    return [name for name in record["metrics"] if name != "chance"]


def format_table(record: Mapping[str, Any]) -> str:
    """Digit accuracy (%) and cross-entropy per model and delay, with the uniform-guess baseline."""
    delays = [int(d) for d in record["settings"]["test_delays"]]
    lines = ["model".ljust(8) + "".join(f"T={d}".rjust(16) for d in delays)]
    n_seeds = len(record["seeds"])
    for name in _models(record):
        m = record["metrics"][name]
        row = name.ljust(8)
        for d in delays:
            a = m["acc"][str(d)]
            spread = f" ±{100 * a['std']:4.1f}" if n_seeds > 1 and a["std"] is not None else ""
            row += f"{100 * a['mean']:.1f}%{spread}".rjust(16)
        lines.append(row)
        lines.append("  ce".ljust(8) + "".join(f"{m['ce'][str(d)]['mean']:.3f}".rjust(16) for d in delays))
    lines.append("chance".ljust(8) + "".join(f"{100 * CHANCE_ACC:.1f}%".rjust(16) for _ in delays))
    return "\n".join(lines)


def plot_accuracy(record: Mapping[str, Any], ax: Any = None, title: str | None = None) -> Any:
    """Digit accuracy (%) against delay T, one line per model (bars: std over seeds), chance dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.4))
    else:
        fig = ax.figure
    delays = [int(d) for d in record["settings"]["test_delays"]]
    for name in _models(record):
        acc = record["metrics"][name]["acc"]
        mean = [100 * acc[str(d)]["mean"] for d in delays]
        std = [100 * (acc[str(d)]["std"] or 0.0) for d in delays]
        ax.errorbar(delays, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.axhline(100 * CHANCE_ACC, color="grey", ls="--", lw=1, label="chance (1/8)")
    ax.axvline(int(record["settings"]["train_delay"]), color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"delay T (trained at T = {int(record['settings']['train_delay'])})")
    ax.set_ylabel("digit accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title(title or f"copying, {record['profile']} profile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims copying`` (the shared ones from :func:`common.add_run_arguments`)."""
    parser.add_argument("--profile", default=None, help="smoke | cpu | full (default: MINIRIMS_PROFILE)")
    parser.add_argument("--models", default=None, help=f"comma-separated, from {','.join(MODEL_NAMES)}")
    parser.add_argument(
        "--lr", type=float, default=None, help="one learning rate for every model (overrides the profile's)"
    )
    add_run_arguments(parser)


def _check_models(names: Sequence[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ValueError("models: expected at least one model name, got an empty list")
    for name in names:
        if name not in MODEL_NAMES:
            raise ValueError(f"models: expected names from {', '.join(MODEL_NAMES)}, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"models: expected distinct model names, got {names!r}")
    return names


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed CLI arguments; prints the settings and the table; returns 0.

    A user error (a bad setting, seed, model, device; a checkpoint written with other settings) raises a
    ValueError before any training where it can: ``python -m minirims`` prints it as one line (status 2).
    """
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    overrides: dict[str, Any] = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    if args.lr is not None:  # one learning rate for every model, as asked
        overrides["lr_by_model"] = {}
    settings = profile_settings(args.profile, **overrides)
    if models is not None:
        _check_models(models)
    seed_list(args.seeds)
    pick_device(args.device)
    print(f"copying, profile {settings['profile']}:\n{format_settings(settings)}", flush=True)
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
    fig = plot_accuracy(record, title=f"copying, {record['profile']} profile, {len(record['seeds'])} seed(s)")
    fig.savefig(path.with_suffix(".png"), dpi=100)
    print(f"wall time {record['wall_time']:.0f} s; record: {path}")
    return 0
