"""Bouncing balls: next-frame prediction with RIMs vs LSTMs, tested on rollouts (paper, Figure 6).

Train on videos of 4 balls on the test's own terms: the model reads the first ``train_given`` true frames
(teacher forcing) and rolls out the rest of the training video from its own predictions, with per-pixel BCE
on every predicted frame (``train_given = n_frames - 1`` is pure teacher forcing, as in the paper; at the
sizes a learner can run, a teacher-forced model's rollouts blow up within a few frames). Test
by giving ``n_given`` true frames and letting the model predict ``n_future`` frames (15, or the paper's 35)
from its own predictions; score the BCE of every predicted frame (summed over the frame's pixels, averaged
over sequences) on three test sets: 4 balls (as in training), 6-8 balls (more objects than ever seen) and 4
balls behind an occluding curtain. Every record also scores two trivial predictors (:data:`BASELINES`): the
mean frame and the last given frame (blended towards the mean); a model has learned the dynamics only at the
rollout frames where it beats both.

Profiles (``MINIRIMS_PROFILE`` / ``--profile``):

* ``smoke``: 16x16 frames, 12-frame videos, a few dozen sequences, one epoch; proves the pipeline runs (CI).
* ``cpu``: 32x32 frames (half the paper's side), 30-frame training videos, 4k of them, 1,500 steps; 23
  minutes on 2 CPU cores for the three models and one seed (measured end to end). Not the paper's scale.
* ``full``: 64x64 frames, 16k training videos, 2,000 steps of batch 64, sized (by estimate) for under 8
  minutes of one H100/H200 per seed for the three models (see ``PROFILE_NOTES``).

API::

    MODELS, SETS, PROFILE_SETTINGS, get_settings(profile=None, **overrides) -> BallsSettings
    make_data(settings) -> dict[str, Balls]             # "train", "val", "4 balls", "6-8 balls", "curtain"
    build_model(name, settings) -> FramePredictor
    train_model(name, settings, data, seed=0, device=None, checkpoint=None, progress=True)
        -> (model, FitResult)
    evaluate_rollouts(model, data, settings, batch_size=None) -> np.ndarray (n_future,)
    mean_frame_baseline(data, settings) -> np.ndarray (n_future,)   # a guess that knows nothing of motion
    run(profile=None, seeds=1, models=None, device=None, save=True, results=None, progress=True,
        runs_dir=None, fresh=False, **overrides) -> BallsRun(record, models, data, settings, path)
    example_rollouts(models, data, settings, n_examples=2) -> {"<set>/truth" | "<set>/<model>"[/masks]: array}
    summary_table(record) -> str; record_curves(record) -> {set: {model: (n_future,)}}
    figures: plot_frames, plot_rollouts, plot_bce_curves, show_rollout_frame(t, ...), rollout_viewer(...)
    add_arguments(parser); main(args) -> int             # python -m minirims bouncing-balls ...
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minirims.experiments.common import (
    add_run_arguments,
    check_settings,
    count_parameters,
    default_runs_dir,
    describe_record,
    format_settings,
    make_record,
    mean_std,
    output_record_path,
    provenance,
    resolve_profile,
    save_record,
    seed_list,
    settings_key,
)
from minirims.experiments.data.balls import SETS, Balls, BallsTensors, bounces, make_sets
from minirims.experiments.train import (
    LR_SCHEDULES,
    FitResult,
    TrainConfig,
    batch_indices,
    fit,
    pick_device,
    seed_everything,
)
from minirims.experiments.video import FramePredictor, make_frame_model, rollout, rollout_loss
from minirims.model import RIM

__all__ = [
    "BASELINE",
    "BASELINES",
    "BLENDS",
    "EXPERIMENT",
    "MODELS",
    "PROFILE_NOTES",
    "PROFILE_SETTINGS",
    "SETS",
    "TEST_ONLY",
    "BallsRun",
    "BallsSettings",
    "add_arguments",
    "build_model",
    "describe_settings",
    "evaluate_rollouts",
    "fit_last_frame_blend",
    "last_frame_baseline",
    "last_frame_guess",
    "example_rollouts",
    "get_settings",
    "main",
    "make_data",
    "mean_frame_baseline",
    "parameter_counts",
    "plot_bce_curves",
    "plot_frames",
    "plot_rollouts",
    "record_curves",
    "rollout_viewer",
    "run",
    "show_rollout_frame",
    "summary_table",
    "switches_at_bounces",
    "train_model",
    "training_settings",
    "training_steps",
    "verdict",
    "verdict_table",
]

EXPERIMENT = "bouncing_balls"
MODELS = ("rim-6-4", "lstm-256", "lstm-512")
TEST_SETS = tuple(SETS)
#: the trivial predictors in every record: the mean frame (:func:`mean_frame_baseline`) and the last given
#: frame (:func:`last_frame_baseline`, blended towards the mean as tuned on the validation videos).
#: A model has learned something only at the rollout frames where it beats both.
BASELINES = ("mean-frame", "last-frame")
BASELINE = BASELINES[0]


@dataclass(frozen=True)
class BallsSettings:
    """Every knob of one run (printed by the notebook, stored in the result record)."""

    profile: str
    frame_size: int  # H = W of the rendered frames
    n_frames: int  # frames per training (and validation) video
    n_given: int  # true frames given before a test rollout
    n_future: int  # frames rolled out and scored (test videos have n_given + n_future frames)
    n_train: int
    n_val: int  # 4-ball videos for picking the best epoch (rollout BCE)
    n_test: int  # videos per test set
    batch_size: int
    epochs: int
    lr: float
    channels: tuple[int, ...]  # encoder conv channels (decoder mirrors them)
    d_embed: int  # encoder output = core input size
    d_hidden: int  # RIM hidden size per module (LSTM sizes are in the model names)
    dropout: float  # RIM attention dropout
    grad_clip: float
    data_seed: int  # the videos are the same for every model seed
    eval_batch_size: int
    train_given: int  # true frames read in training before the model rolls out the rest (n_frames - 1: pure
    #                   teacher forcing)
    feedback_grad: bool = True  # backprop through the fed-back predictions in training
    lr_schedule: str = "constant"  # or "cosine": linear warm-up, then cosine decay to 0 (TrainConfig)
    warmup_steps: int = 0  # linear warm-up steps of the learning rate
    compile: bool = False  # run the RIM's step through torch.compile
    bce_unit: str = "BCE of a frame summed over its pixels, averaged over test videos"
    models: tuple[str, ...] = field(default=MODELS)


PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        frame_size=16,
        n_frames=12,
        n_given=6,
        n_future=6,
        n_train=48,
        n_val=8,
        n_test=16,
        batch_size=16,
        epochs=1,
        lr=1e-3,
        channels=(8, 16),
        d_embed=32,
        d_hidden=16,
        dropout=0.1,
        grad_clip=1.0,
        data_seed=0,
        eval_batch_size=16,
        train_given=6,
    ),
    "cpu": dict(
        frame_size=32,
        n_frames=30,
        n_given=15,
        n_future=15,
        n_train=4000,
        n_val=64,
        n_test=256,
        batch_size=16,
        epochs=6,
        lr=2e-3,
        channels=(8, 16, 32),
        d_embed=256,
        d_hidden=100,
        dropout=0.1,
        grad_clip=1.0,
        data_seed=0,
        eval_batch_size=128,
        train_given=15,
        lr_schedule="cosine",
        warmup_steps=100,
    ),
    "full": dict(
        frame_size=64,
        n_frames=30,
        n_given=15,
        n_future=15,
        n_train=16_000,
        n_val=256,
        n_test=1000,
        batch_size=64,
        epochs=8,
        lr=1e-3,
        channels=(16, 32, 64),
        d_embed=512,
        d_hidden=100,
        dropout=0.1,
        grad_clip=1.0,
        data_seed=0,
        eval_batch_size=500,
        train_given=15,
    ),
}

PROFILE_NOTES = {
    "smoke": "CI check that every piece runs; the numbers mean nothing.",
    "cpu": "32x32 frames (the paper: 64x64) and a narrower encoder/decoder (channels 8-16-32; the paper: "
    "16-32-64), 4k training videos of 30 frames, each read for 15 frames and rolled out by the model for "
    "the other 15 (gradient through the fed-back predictions); 6 epochs of batch 16 (1,500 steps) for every "
    "model, lr 2e-3 after 100 warm-up steps with cosine decay (the best peak of every model in the sweep of "
    "results/sweeps); 19 min per seed for the three models on 2 CPU cores (measured end to end). Not the "
    "paper's scale.",
    "full": "The paper's frame size (64x64) and 4 training balls; 16k training videos of 30 frames (15 read, "
    "15 rolled out), 8 epochs of batch 64 (2,000 steps) at lr 1e-3 per model; sized by estimate, not yet "
    "measured, for < 8 min of one H100/H200 per seed for the three models; resumable (--runs-dir). The "
    "paper trains on 51-frame videos for longer.",
}


#: how :func:`get_settings` checks every setting (see :data:`minirims.experiments.common.Rule`)
SETTINGS_RULES: dict[str, Any] = {
    "profile": "text",
    "frame_size": ("int", 4, 256),
    "n_frames": ("int", 2, None),
    "n_given": "count",
    "n_future": "count",
    "n_train": "count",
    "n_val": "count0",
    "n_test": "count",
    "batch_size": "count",
    "epochs": "count",
    "lr": "positive",
    "channels": ("list", "count", False),
    "d_embed": "count",
    "d_hidden": "count",
    "dropout": "prob",
    "grad_clip": "positive|none",
    "data_seed": "seed",
    "eval_batch_size": "count",
    "train_given": "count",  # and at most n_frames - 1 (checked in get_settings)
    "feedback_grad": "bool",
    "lr_schedule": ("one_of", LR_SCHEDULES),
    "warmup_steps": "count0",
    "compile": "bool",
    "bce_unit": "text",
    "models": ("names", r"rim-\d+-\d+|lstm-\d+", "distinct names like 'rim-6-4' or 'lstm-256'"),
}


def get_settings(profile: str | None = None, **overrides: Any) -> BallsSettings:
    """The settings of ``profile`` (env ``MINIRIMS_PROFILE`` / default when None), with ``overrides``."""
    name = resolve_profile(profile)
    values = dict(PROFILE_SETTINGS[name])
    known = {f.name for f in dataclasses.fields(BallsSettings)} - {"profile"}
    for key in overrides:
        if key not in known:
            raise ValueError(f"overrides: expected keys among {sorted(known)}, got {key!r}")
    values.update(overrides)
    if "models" in values:
        values["models"] = tuple(values["models"])
    settings = BallsSettings(profile=name, **values)
    check_settings(dataclasses.asdict(settings), SETTINGS_RULES)  # every setting, before any simulation
    factor = 2 ** len(settings.channels)
    if settings.frame_size % factor:
        raise ValueError(
            f"frame_size: expected a multiple of 2 ** len(channels) = {factor}, got {settings.frame_size!r}"
        )
    tg = settings.train_given
    if isinstance(tg, bool) or not isinstance(tg, int) or not 1 <= tg <= settings.n_frames - 1:
        raise ValueError(
            f"train_given: expected an int in [1, n_frames - 1 = {settings.n_frames - 1}], got {tg!r}"
        )
    if settings.n_given > settings.n_frames - 1:  # the best epoch is picked on training-length rollouts
        raise ValueError(
            f"n_given: expected at most n_frames - 1 = {settings.n_frames - 1} (validation rollouts are as "
            f"long as the training videos), got {settings.n_given!r}"
        )
    return settings


#: settings that only the test reads: changing them reuses the trained checkpoints
TEST_ONLY = ("n_future", "n_test", "eval_batch_size", "models", "bce_unit")


def training_settings(settings: BallsSettings) -> dict[str, Any]:
    """The settings a trained model depends on (all but :data:`TEST_ONLY`): the checkpoint's key."""
    return {k: v for k, v in dataclasses.asdict(settings).items() if k not in TEST_ONLY}


def make_data(settings: BallsSettings) -> dict[str, Balls]:
    """Simulate the sets of a run (numpy): "train", "val" (when n_val > 0) and the three test sets."""
    return make_sets(
        settings.n_train,
        settings.n_test,
        settings.n_frames,
        settings.data_seed,
        n_val=settings.n_val,
        test_frames=settings.n_given + settings.n_future,
    )


def build_model(name: str, settings: BallsSettings) -> FramePredictor:
    """A :class:`FramePredictor` named ``"rim-<n>-<k>"`` or ``"lstm-<d_h>"`` sized by ``settings``."""
    kwargs: dict[str, Any] = {}
    if name.startswith("rim"):
        kwargs = {"dropout": settings.dropout, "compile_step": settings.compile}
    return make_frame_model(
        name, settings.frame_size, settings.d_embed, settings.channels, settings.d_hidden, **kwargs
    )


class _Batches:
    """One epoch of training batches, rendered on the device when iterated: (B, T, 1, H, W) frames."""

    def __init__(self, data: BallsTensors, settings: BallsSettings, seed: int, epoch: int) -> None:
        n = min(settings.batch_size, len(data))
        self.index = batch_indices(len(data), n, seed, epoch, shuffle=True, drop_last=True)
        self.data, self.size = data, settings.frame_size

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[Tensor]:
        device = self.data.positions.device
        for idx in self.index:
            yield self.data.batch(idx.to(device), self.size)


def evaluate_rollouts(
    model: FramePredictor, data: BallsTensors, settings: BallsSettings, batch_size: int | None = None
) -> np.ndarray:
    """Mean rollout BCE of each predicted frame over all videos of ``data``: (n_future,) float64."""
    batch_size = batch_size or settings.eval_batch_size
    device = data.positions.device
    total = torch.zeros(settings.n_future, dtype=torch.float64, device=device)
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=device)
        frames = data.batch(idx, settings.frame_size, settings.n_given + settings.n_future)
        total += rollout(model, frames, settings.n_given, settings.n_future).bce.double().sum(0)
    return (total / len(data)).cpu().numpy()


def mean_frame_baseline(data: BallsTensors, settings: BallsSettings) -> np.ndarray:
    """BCE per future frame of a guess that knows nothing about motion: every pixel of every future frame is
    white with probability = the mean brightness of the given frames. (n_future,) float64.

    It is :func:`last_frame_baseline` with blend 1. A model whose rollout scores above this line predicts
    sharp balls in the wrong places.
    """
    return _guess_bce(data, settings, np.ones((1, settings.n_future)))[0]


#: the blend weights tried by :func:`fit_last_frame_blend` (0: the last frame as it is; 1: the mean frame)
BLENDS = (0.0, 0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)


def _check_blend(blend: object, n_future: int) -> np.ndarray:
    arr = np.asarray(blend, dtype=np.float64) if not isinstance(blend, (str, bytes)) else np.array([np.nan])
    if arr.ndim == 0:
        arr = np.full(n_future, float(arr))
    if arr.shape != (n_future,) or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"blend: expected a float or {n_future} floats in [0, 1], got {blend!r}")
    return arr


def last_frame_guess(frames: Tensor, n_given: int, n_future: int, blend: Any) -> Tensor:
    """The last-frame baseline's prediction: probabilities of the ``n_future`` frames after ``n_given``.

    Every future frame is ``(1 - a) * frames[:, n_given - 1] + a * m`` with ``m`` the mean brightness of the
    given frames of that video (one number per video) and ``a`` the blend of that rollout frame.

    Args:
        frames: (B, T, 1, H, W) in [0, 1], T >= n_given (frames after n_given are never read).
        n_given, n_future: positive ints.
        blend: a float or (n_future,) floats in [0, 1].

    Returns:
        (B, n_future, 1, H, W) probabilities, dtype of ``frames``.
    """
    if not isinstance(frames, Tensor) or frames.dim() != 5 or not frames.is_floating_point():
        got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames: expected a float tensor of shape (B, T, 1, H, W), got {got}")
    for key, value in (("n_given", n_given), ("n_future", n_future)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: expected a positive int, got {value!r}")
    if frames.shape[1] < n_given:
        raise ValueError(f"frames: expected at least n_given = {n_given} frames, got {frames.shape[1]}")
    a = torch.as_tensor(_check_blend(blend, n_future), dtype=frames.dtype, device=frames.device)
    a = a.view(1, n_future, 1, 1, 1)
    given = frames[:, :n_given]
    mean = given.mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1)
    return (1 - a) * given[:, -1:] + a * mean


def _guess_bce(data: BallsTensors, settings: BallsSettings, blends: np.ndarray) -> np.ndarray:
    """Mean BCE per rollout frame of :func:`last_frame_guess` with each row of ``blends`` (A, n_future) as
    its per-frame blend: (A, n_future). Probabilities are clamped to [1e-4, 1 - 1e-4]."""
    g, f = settings.n_given, settings.n_future
    device = data.positions.device
    total = torch.zeros(len(blends), f, dtype=torch.float64, device=device)
    for start in range(0, len(data), settings.eval_batch_size):
        idx = torch.arange(start, min(start + settings.eval_batch_size, len(data)), device=device)
        frames = data.batch(idx, settings.frame_size, g + f).double()
        target = frames[:, g:]
        for i, row in enumerate(blends):  # one guess at a time: memory stays (B, n_future, 1, H, W)
            p = last_frame_guess(frames, g, f, row).clamp(1e-4, 1 - 1e-4)
            bce = F.binary_cross_entropy(p, target, reduction="none")
            total[i] += bce.sum(dim=(2, 3, 4)).sum(0)
    return (total / len(data)).cpu().numpy()


def fit_last_frame_blend(data: BallsTensors, settings: BallsSettings) -> np.ndarray:
    """The blend of :func:`last_frame_baseline` that scores best on ``data`` at each rollout frame.

    Tuned on the validation videos (never on a test set): from :data:`BLENDS`, per rollout frame, the weight
    ``a`` whose guess ``(1 - a) * last frame + a * mean brightness`` has the lowest mean BCE. (n_future,).
    """
    grid = np.asarray(BLENDS)
    bce = _guess_bce(data, settings, np.repeat(grid[:, None], settings.n_future, axis=1))
    return grid[bce.argmin(axis=0)]


def last_frame_baseline(data: BallsTensors, settings: BallsSettings, blend: Any = 0.05) -> np.ndarray:
    """BCE per future frame of a guess that knows where the balls are but not how they move.

    Every future frame is predicted as the last given frame, blended towards the mean brightness of the given
    frames, ``p = (1 - blend) * last + blend * mean`` (a hard copy, blend 0, pays ~9 nats for every pixel a
    ball has left). ``blend``: a float or (n_future,) floats in [0, 1], e.g. from
    :func:`fit_last_frame_blend`. A model below this line knows that balls move. (n_future,) float64.
    """
    return _guess_bce(data, settings, _check_blend(blend, settings.n_future)[None])[0]


def train_model(
    name: str,
    settings: BallsSettings,
    data: dict[str, BallsTensors],
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    fresh: bool = False,
) -> tuple[FramePredictor, FitResult]:
    """Train one model with :func:`minirims.experiments.train.fit`; best epoch by validation rollout BCE.

    Args:
        name: a model name (see :func:`build_model`).
        settings: the run's settings.
        data: the sets moved to the device (``{k: v.to(device)}``); needs "train" and "val" (or falls back to
            "4 balls" when there is no validation set).
        seed: model initialisation and data order.
        checkpoint: optional file for resumable training; it resumes only a run with the same settings.
        fresh: ignore and replace an existing checkpoint.

    Returns:
        (the model with its best weights, the FitResult).
    """
    dev = pick_device(device)
    seed_everything(seed)
    model = build_model(name, settings).to(dev)
    train, val = data["train"], data.get("val", data["4 balls"])
    config = TrainConfig(
        epochs=settings.epochs,
        lr=settings.lr,
        lr_schedule=settings.lr_schedule,
        warmup_steps=settings.warmup_steps,
        grad_clip=settings.grad_clip,
        seed=seed,
        progress=progress,
        log_every=10,
    )

    # the best epoch is picked on rollouts as long as the training ones, so that a longer test (n_future 35)
    # scores the very same trained model (the validation videos' first frames do not depend on their length)
    select_on = dataclasses.replace(settings, n_future=settings.n_frames - settings.n_given)

    def evaluate(m: FramePredictor) -> dict[str, float]:
        curve = evaluate_rollouts(m, val, select_on)
        return {"val_bce": float(curve.mean()), "val_bce_last": float(curve[-1])}

    def loss_fn(m: FramePredictor, frames: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return rollout_loss(m, frames, settings.train_given, settings.feedback_grad)

    result = fit(
        model,
        lambda epoch: _Batches(train, settings, seed, epoch),
        loss_fn,
        evaluate,
        config,
        checkpoint=checkpoint,
        select="val_bce",
        mode="min",
        desc=f"{name} seed {seed}",
        settings={**training_settings(settings), "model": name},
        fresh=fresh,
    )
    return model, result


@dataclass
class BallsRun:
    """What :func:`run` returns: the record, the last seed's trained models, the data and the settings."""

    record: dict[str, Any]
    models: dict[str, FramePredictor]
    data: dict[str, Balls]
    settings: BallsSettings
    path: Path | None = None


def training_steps(settings: BallsSettings) -> int:
    """Optimizer steps of one model and seed: epochs x full batches per epoch (a partial batch is dropped)."""
    return settings.epochs * (settings.n_train // min(settings.batch_size, settings.n_train))


def describe_settings(settings: BallsSettings) -> str:
    """The settings of a run in two lines (the record and ``format_settings`` hold all of them)."""
    s = settings
    steps = training_steps(s)
    rolled = s.n_frames - s.train_given
    lr = f"lr {s.lr:g}"
    if s.lr_schedule != "constant" or s.warmup_steps:
        lr += f" ({s.lr_schedule}, {s.warmup_steps} warm-up steps)"
    return (
        f"train: {s.n_train} videos of {s.n_frames} frames at {s.frame_size}x{s.frame_size} (the model reads "
        f"{s.train_given}, rolls out {rolled}), {steps} steps of batch {s.batch_size}, {lr}\n"
        f"test: {s.n_given} frames given, {s.n_future} predicted, {s.n_test} videos per set; models: "
        f"{', '.join(s.models)}"
    )


def parameter_counts(settings: BallsSettings) -> dict[str, dict[str, int]]:
    """Parameters of every model of ``settings``: {model: {"encoder", "core", "decoder", "total"}}."""
    counts = {}
    for name in settings.models:
        model = build_model(name, settings)
        parts = {part: count_parameters(getattr(model, part)) for part in ("encoder", "core", "decoder")}
        counts[name] = {**parts, "total": count_parameters(model)}
    return counts


@torch.no_grad()
def switches_at_bounces(
    model: FramePredictor, balls: Balls, settings: BallsSettings, device: Any = None, n_videos: int = 64
) -> dict[str, Any]:
    """How often a RIM's modules switch on or off at the steps whose input frame shows a bounce.

    The model reads the true frames of the first ``n_videos`` videos (no rollout, so the scene it sees is the
    simulated one); at step t it has read frame t and predicts frame t+1. A module *switches* at step t when
    it is active at t and was not at t-1, or the other way round. Steps are grouped by what happened in frame
    t (:func:`~minirims.experiments.data.balls.bounces`): a ball-ball bounce, only wall bounces, or none.

    Returns:
        {"rate": {"ball": r, "wall": r, "none": r} (mean switches per step), "steps": {group: count},
        "n_videos": int}; rates are NaN for a group without steps.
    """
    if not isinstance(model.core, RIM):
        raise ValueError(f"model: expected a FramePredictor with a RIM core, got {type(model.core).__name__}")
    if not isinstance(balls, Balls):
        raise ValueError(f"balls: expected a Balls set, got {type(balls).__name__}")
    if isinstance(n_videos, bool) or not isinstance(n_videos, int) or n_videos < 1:
        raise ValueError(f"n_videos: expected a positive int, got {n_videos!r}")
    n = min(n_videos, len(balls))
    dev = next(model.parameters()).device if device is None else torch.device(device)
    frames = balls.frames(slice(0, n), size=settings.frame_size, device=dev)
    was_training = model.training
    model.eval()
    try:
        _, _, trace = model(frames, trace=True)
    finally:
        model.train(was_training)
    masks = trace.masks.cpu().numpy()  # (B, T, n_modules)
    switches = (masks[:, 1:] != masks[:, :-1]).sum(-1)  # (B, T-1): at steps 1..T-1
    hits = bounces(balls)
    ball, wall = hits["ball"][:n, 1:] > 0, hits["wall"][:n, 1:] > 0
    groups = {"ball": ball, "wall": wall & ~ball, "none": ~ball & ~wall}
    rate = {k: float(switches[g].mean()) if g.any() else float("nan") for k, g in groups.items()}
    return {"rate": rate, "steps": {k: int(g.sum()) for k, g in groups.items()}, "n_videos": n}


def example_rollouts(
    models: dict[str, FramePredictor],
    data: dict[str, BallsTensors],
    settings: BallsSettings,
    n_examples: int = 2,
) -> dict[str, np.ndarray]:
    """Ground truth and every model's rollout for the first ``n_examples`` videos of each test set.

    Returns arrays keyed ``"<set>/truth"`` and ``"<set>/<model>"``: (n_examples, n_given + n_future, H, W)
    uint8 (0-255; the first n_given frames are the given truth), plus ``"<set>/<model>/masks"``
    (n_examples, n_given + n_future - 1, n) bool for RIMs.
    """
    out: dict[str, np.ndarray] = {}
    g, f = settings.n_given, settings.n_future
    for set_name in TEST_SETS:
        d = data[set_name]
        idx = torch.arange(min(n_examples, len(d)), device=d.positions.device)
        frames = d.batch(idx, settings.frame_size, g + f)
        out[f"{set_name}/truth"] = (frames[:, :, 0] * 255).round().to(torch.uint8).cpu().numpy()
        for name, model in models.items():
            r = rollout(model, frames, g, f, trace=True)
            video = torch.cat([frames[:, :g], r.predictions.to(frames.dtype)], dim=1)[:, :, 0]
            out[f"{set_name}/{name}"] = (video * 255).round().to(torch.uint8).cpu().numpy()
            if r.trace is not None:
                out[f"{set_name}/{name}/masks"] = r.trace.masks.cpu().numpy()
    return out


def run(
    profile: str | None = None,
    seeds: int | Sequence[int] = 1,
    models: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    save: bool = True,
    results: str | Path | None = None,
    progress: bool = True,
    runs_dir: str | Path | None = None,
    fresh: bool = False,
    **overrides: Any,
) -> BallsRun:
    """Train every model for every seed, score rollouts on the three test sets, optionally save a record.

    Args:
        profile: smoke | cpu | full (None: env ``MINIRIMS_PROFILE`` / default).
        seeds: a count (seeds 0..n-1) or a list of seeds.
        models: model names (default :data:`MODELS`).
        device: torch device (default: CUDA if available).
        save: write ``bouncing_balls_<profile>.json`` and ``..._examples.npz``.
        results: folder for the record; only an explicit ``results="results"`` writes into the tracked
            reference records (default: ``runs_dir``, else env ``MINIRIMS_RUNS`` or ``runs/``, git-ignored).
        runs_dir: folder for resumable checkpoints, one per model and seed under
            ``bouncing_balls_<profile>_<settings hash>/`` (None: no checkpoints; the command line uses
            ``runs/``), and for the record when ``results`` is not given.
        fresh: ignore and replace existing checkpoints.
        overrides: settings to change (e.g. ``epochs=1``).

    Returns:
        :class:`BallsRun`. Record metrics, per model and test set: ``per_frame`` (mean over seeds of the
        per-frame BCE, n_future values), ``per_frame_std``, ``per_frame_per_seed``, and ``mean_bce`` (mean
        over the rollout frames; mean/std over seeds). Per model: ``train_seconds``, ``best_epoch``. The
        entries of :data:`BASELINES` hold :func:`mean_frame_baseline` and :func:`last_frame_baseline` (its
        blend tuned on the validation videos, stored as ``blend``) per test set, in the same layout.
    """
    t_start = time.perf_counter()
    if models is not None:
        overrides["models"] = tuple(models)
    settings = get_settings(profile, **overrides)
    seeds_used = seed_list(seeds)
    dev = pick_device(device)
    for name in settings.models:  # a model the settings cannot build fails here, before the simulation
        build_model(name, settings)
    started = provenance(dev)
    t0 = time.perf_counter()
    data = make_data(settings)
    simulate_seconds = time.perf_counter() - t0
    on_device = {k: v.to(dev) for k, v in data.items()}

    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    parameters: dict[str, int] = {}
    trained: dict[str, FramePredictor] = {}
    for name in settings.models:
        per_set: dict[str, list[np.ndarray]] = {s: [] for s in TEST_SETS}
        seconds, best_epochs, curves[name] = [], [], {}
        for seed in seeds_used:
            ckpt = None
            if runs_dir is not None:  # one folder per training settings (what only the test reads aside)
                key = settings_key(training_settings(settings))
                ckpt = Path(runs_dir) / f"{EXPERIMENT}_{settings.profile}_{key}" / f"{name}_seed{seed}.pt"
            model, fit_result = train_model(name, settings, on_device, seed, dev, ckpt, progress, fresh)
            seconds.append(fit_result.wall_time)
            best_epochs.append(fit_result.best_epoch)
            curves[name][str(seed)] = fit_result.history
            for set_name in TEST_SETS:
                per_set[set_name].append(evaluate_rollouts(model, on_device[set_name], settings))
            trained[name] = model
        parameters[name] = count_parameters(model)
        entry: dict[str, Any] = {"train_seconds": mean_std(seconds), "best_epoch": best_epochs}
        for set_name, curves_by_seed in per_set.items():
            stack = np.stack(curves_by_seed)  # (seeds, n_future)
            entry[set_name] = {
                "mean_bce": mean_std(stack.mean(axis=1)),
                "per_frame": stack.mean(axis=0),
                "per_frame_std": stack.std(axis=0),
                "per_frame_per_seed": stack,
            }
        metrics[name] = entry
    blend = fit_last_frame_blend(on_device.get("val", on_device["4 balls"]), settings)
    for base in BASELINES:  # no training: the same for every seed
        entry = {"blend": blend} if base == "last-frame" else {}
        for set_name in TEST_SETS:
            if base == "last-frame":
                curve = last_frame_baseline(on_device[set_name], settings, blend)
            else:
                curve = mean_frame_baseline(on_device[set_name], settings)
            entry[set_name] = {
                "mean_bce": mean_std([curve.mean()]),
                "per_frame": curve,
                "per_frame_std": np.zeros_like(curve),
                "per_frame_per_seed": curve[None],
            }
        metrics[base] = entry

    wall = time.perf_counter() - t_start
    record = make_record(
        EXPERIMENT,
        settings.profile,
        dataclasses.asdict(settings) | {"notes": PROFILE_NOTES[settings.profile], "sets": SETS},
        seeds_used,
        metrics,
        curves=curves,
        parameters=parameters,
        wall_time=wall,
        device=dev,
        started=started,
        extra={"simulate_seconds": simulate_seconds},
    )
    path = None
    if save:
        path = save_record(record, output_record_path(EXPERIMENT, settings.profile, results, runs_dir))
        examples = example_rollouts(trained, on_device, settings)
        np.savez_compressed(path.with_name(f"{EXPERIMENT}_{settings.profile}_examples.npz"), **examples)
    return BallsRun(record, trained, data, settings, path)


def summary_table(record: dict[str, Any], frames: Sequence[int] = (0, 4, 9, 14)) -> str:
    """Text table: per model and test set, the mean rollout BCE and the BCE at a few rollout frames."""
    n_future = record["settings"]["n_future"]
    frames = [f for f in frames if f < n_future]
    head = f"{'model':10s} {'test set':10s} {'mean':>8s} " + " ".join(
        f"{'t+' + str(f + 1):>8s}" for f in frames
    )
    lines = [head]
    for name, entry in record["metrics"].items():
        for set_name in TEST_SETS:
            m = entry[set_name]
            cells = " ".join(f"{m['per_frame'][f]:8.1f}" for f in frames)
            lines.append(f"{name:10s} {set_name:10s} {m['mean_bce']['mean']:8.1f} {cells}")
    return "\n".join(lines)


def verdict(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """What a record shows, frame by frame (means over seeds): {test set: {model: {...}}}.

    Per model: ``"below_baselines"``, the number of leading rollout frames at which the model is below both
    :data:`BASELINES` (it has learned something there), and ``"frames_below_baselines"``, at how many frames
    in all; for RIMs also ``"below_lstms"``, the rollout frames (1-based) at which it is below every LSTM of
    the record.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    metrics = record["metrics"]
    models = [m for m in metrics if m not in BASELINES]
    lstms = [m for m in models if m.startswith("lstm")]
    for set_name in TEST_SETS:
        bases = [np.asarray(metrics[b][set_name]["per_frame"]) for b in BASELINES if b in metrics]
        floor = np.minimum.reduce(bases) if bases else None
        out[set_name] = {}
        for name in models:
            y = np.asarray(metrics[name][set_name]["per_frame"])
            entry: dict[str, Any] = {}
            if floor is not None:
                below = y < floor
                entry["below_baselines"] = int(np.argmin(below)) if not below.all() else len(below)
                entry["frames_below_baselines"] = int(below.sum())
            if name.startswith("rim") and lstms:
                best_lstm = np.minimum.reduce([np.asarray(metrics[m][set_name]["per_frame"]) for m in lstms])
                entry["below_lstms"] = [int(i) + 1 for i in np.flatnonzero(y < best_lstm)]
            out[set_name][name] = entry
    return out


def verdict_table(record: dict[str, Any]) -> str:
    """:func:`verdict` as text: one line per test set and model."""
    n_future = record["settings"]["n_future"]
    lines = []
    for set_name, by_model in verdict(record).items():
        for name, v in by_model.items():
            text = (
                f"{set_name:10s} {name:10s} below both baselines for the first {v.get('below_baselines', 0)}"
            )
            text += f" of {n_future} frames"
            if "below_lstms" in v:
                frames = v["below_lstms"]
                text += f"; below every LSTM at {len(frames)} of {n_future} frames"
                if 0 < len(frames) < n_future:
                    text += f" ({_ranges(frames)})"
            lines.append(text)
    return "\n".join(lines)


def _ranges(frames: Sequence[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10'."""
    parts, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(f"{start}" if start == f else f"{start}-{f}")
            start = None
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------- figures
def _figure(figsize: tuple[float, float]) -> Any:
    """A Figure closed in pyplot at once, so a notebook shows it once: when a cell returns it."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _video(name: str, x: Any) -> np.ndarray:
    """(T, H, W) or (T, 1, H, W) frames (tensor or array; uint8 0-255 or float 0-1) -> float (T, H, W)."""
    arr = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected frames of shape (T, H, W) or (T, 1, H, W), got {arr.shape}")
    return arr / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)


def plot_frames(frames: Any, title: str = "", every: int = 1, max_frames: int = 16) -> Any:
    """A strip of frames, left to right: frames 0, every, 2*every, ... (at most ``max_frames``)."""
    video = _video("frames", frames)
    shown = list(range(0, len(video), max(1, every)))[:max_frames]
    fig = _figure((1.0 * len(shown), 1.35))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, t in zip(axes, shown, strict=False):
        ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"t={t}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_rollouts(
    truth: Any, predictions: dict[str, Any], n_given: int, every: int = 2, title: str = ""
) -> Any:
    """The paper's figure: ground truth and each model's rollout, one row each, frames left to right.

    Args:
        truth: (T, H, W) true video.
        predictions: model name -> (T, H, W) video whose first ``n_given`` frames are the given truth and the
            rest the model's rollout (as returned by :func:`example_rollouts`).
        n_given: number of given frames; only frames from ``n_given - 2`` on are drawn, a red frame marks the
            predicted ones.
        every: draw every ``every``-th frame.
    """
    rows = {"ground truth": _video("truth", truth)}
    rows.update({name: _video(f"predictions[{name!r}]", v) for name, v in predictions.items()})
    t_len = len(rows["ground truth"])
    shown = list(range(max(0, n_given - 2), t_len, max(1, every)))
    fig = _figure((0.8 * len(shown) + 1.2, 0.85 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(shown), squeeze=False)
    for r, (name, video) in enumerate(rows.items()):
        for c, t in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r > 0 and t >= n_given:
                for spine in ax.spines.values():
                    spine.set_color("tab:red")
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title or f"{n_given} frames given, then rolled out (red: predicted)", fontsize=10)
    return fig


def record_curves(record: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame rollout BCE from a result record: {test set: {model: (n_future,)}}."""
    return {
        s: {m: np.asarray(entry[s]["per_frame"]) for m, entry in record["metrics"].items()} for s in TEST_SETS
    }


def plot_bce_curves(curves: dict[str, dict[str, Any]], title: str = "", n_given: int | None = None) -> Any:
    """Rollout BCE of each predicted frame, one panel per test set, one line per model.

    Args:
        curves: {test set: {model: (n_future,) per-frame BCE}} (see :func:`record_curves`).
        n_given: when given, the x axis shows absolute frame numbers (n_given + i), else rollout steps.
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            f"curves: expected a non-empty dict {{test set: {{model: per-frame BCE}}}}, got {curves!r}"
        )
    fig = _figure((3.4 * len(curves), 2.8))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (set_name, by_model) in zip(axes, curves.items(), strict=False):
        for model, values in by_model.items():
            y = np.asarray(values, dtype=np.float64)
            x = np.arange(1, len(y) + 1) + (n_given - 1 if n_given else 0)
            if model in BASELINES:  # the trivial predictors: grey, dashed, no markers
                style = {"color": "0.45", "linestyle": "--" if model == BASELINE else ":", "linewidth": 1.5}
                ax.plot(x, y, label=f"{model} (baseline)", **style)
            else:
                ax.plot(x, y, marker="o", markersize=3, label=model)
        ax.set_title(set_name, fontsize=10)
        ax.set_xlabel("frame" if n_given else "rollout step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BCE per frame")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_rollout_frame(
    t: int, truth: Any, predictions: dict[str, Any], n_given: int, masks: Any | None = None
) -> Any:
    """One time step of a rollout: the true frame and every model's frame at ``t`` side by side.

    Args:
        t: frame index in [0, T).
        truth, predictions, n_given: as in :func:`plot_rollouts`.
        masks: optional (T-1, n) bool, the RIM's active modules at each step; step t-1 produced frame t, so
            the panel shows which modules were active while predicting the frame on screen.
    """
    rows = {"ground truth": _video("truth", truth)}
    rows.update({name: _video(f"predictions[{name!r}]", v) for name, v in predictions.items()})
    t_len = len(rows["ground truth"])
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < t_len:
        raise ValueError(f"t: expected an int in [0, {t_len - 1}], got {t!r}")
    extra = masks is not None
    fig = _figure((1.9 * (len(rows) + extra), 2.3))
    axes = fig.subplots(1, len(rows) + extra, squeeze=False)[0]
    phase = "given" if t < n_given else f"predicted ({t - n_given + 1} of {t_len - n_given})"
    for ax, (name, video) in zip(axes, rows.items(), strict=False):
        ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
        ax.set_title(name if name == "ground truth" else f"{name}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    if extra:
        m = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
        if m.ndim != 2 or m.shape[0] != t_len - 1:
            raise ValueError(f"masks: expected shape ({t_len - 1}, n), got {m.shape}")
        ax = axes[-1]
        active = m[t - 1].astype(bool) if t > 0 else np.zeros(m.shape[1], dtype=bool)
        ax.barh(np.arange(m.shape[1]), active.astype(float), color=np.where(active, "#1f5fa8", "#dddddd"))
        ax.set_yticks(np.arange(m.shape[1]), [f"M{i}" for i in range(m.shape[1])], fontsize=8)
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_xlim(0, 1)
        ax.set_title("active RIM modules", fontsize=9)
    fig.suptitle(f"t = {t}: {phase}", fontsize=10)
    return fig


def rollout_viewer(
    truth: Any, predictions: dict[str, Any], n_given: int, masks: Any | None = None, t: int = 0
):
    """An ipywidgets slider over the frames of a rollout; each move redraws :func:`show_rollout_frame`."""
    show_rollout_frame(t, truth, predictions, n_given, masks)  # validate early
    import ipywidgets as widgets
    from IPython.display import display

    t_len = len(_video("truth", truth))
    slider = widgets.IntSlider(value=t, min=0, max=t_len - 1, description="t", continuous_update=False)
    out = widgets.Output()

    def draw(_change: Any = None) -> None:
        fig = show_rollout_frame(slider.value, truth, predictions, n_given, masks)
        with out:
            out.clear_output(wait=True)
            display(fig)

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([slider, out])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options of ``python -m minirims bouncing-balls``."""
    parser.add_argument(
        "--profile",
        choices=("smoke", "cpu", "full"),
        default=None,
        help="experiment size (default: env MINIRIMS_PROFILE, else full on GPU, cpu otherwise)",
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help=f"models to train (default: {' '.join(MODELS)})"
    )
    parser.add_argument(
        "--n-future",
        type=int,
        default=None,
        help="frames rolled out and scored after the n_given true ones (default: the profile's 15; the "
        "paper's long test: 35); training is unchanged, only the test videos get longer",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the result record")
    add_run_arguments(parser)  # --seeds --epochs --results --runs-dir --device --fresh --no-progress


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments; prints the settings and a summary. Returns 0.

    Checkpoints go to ``--runs-dir`` (default: env ``MINIRIMS_RUNS`` or ``runs/``). A user error raises a
    ValueError before the simulation where it can: ``python -m minirims`` prints it as one line (status 2).
    """
    overrides: dict[str, Any] = {"epochs": args.epochs} if args.epochs is not None else {}
    if args.models is not None:
        overrides["models"] = tuple(args.models)
    if args.n_future is not None:
        overrides["n_future"] = args.n_future
    settings = get_settings(args.profile, **overrides)
    seed_list(args.seeds)
    pick_device(args.device)
    print(f"bouncing balls, profile {settings.profile}: {PROFILE_NOTES[settings.profile]}")
    print(format_settings(dataclasses.asdict(settings)))
    result = run(
        settings.profile,
        seeds=args.seeds,
        device=args.device,
        save=not args.no_save,
        results=args.results,
        progress=not args.no_progress,
        runs_dir=args.runs_dir if args.runs_dir is not None else default_runs_dir(),
        fresh=args.fresh,
        **overrides,
    )
    print(describe_record(result.record))
    print(f"rollout BCE per frame ({settings.bce_unit}):")
    print(summary_table(result.record))
    if result.path is not None:
        print(f"saved {result.path}")
    return 0
