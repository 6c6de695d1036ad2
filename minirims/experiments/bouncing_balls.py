"""Bouncing balls: next-frame prediction with RIMs vs LSTMs, tested on rollouts (paper, Figure 6).

Train on videos of 4 balls by teacher forcing: every training frame is predicted from the true frame
before it (``train_given = n_frames - 1``, as in the paper), scored by per-pixel BCE plus ``sharpen`` x
(1 - soft foreground F1), so that a confident ball beats a grey smear; a smaller ``train_given`` rolls out
the rest of the training video from the model's own predictions instead. Test by giving ``n_given`` true
frames and letting the model predict ``n_future`` frames (15, or the paper's 35) from its own predictions, on
three test sets: 4 balls (as in training), 6-8 balls (more objects than ever seen) and 4 balls behind an
occluding curtain. Every predicted frame gets three scores (:data:`SCORES`): foreground F1 (are the balls
where they should be, drawn sharp?), a tracking error (how far each true ball is from a predicted one) and
BCE (a likelihood, which rewards a blur under uncertainty). Every record also scores the trivial predictors
of :mod:`minirims.experiments.baselines` (the mean frame; the last given frame) and a reference that knows
the motion but not the collisions (constant velocity): a model has learned the dynamics only at the rollout
frames where it beats the trivial ones. The experiment has the shape
of every experiment (:mod:`minirims.experiments.common`)::

    Settings, PROFILES, settings(profile=None, **overrides) -> Settings
    make_data(settings) -> dict[str, Balls]         # "train", "val", "4 balls", "6-8 balls", "curtain"
    make_model(name, settings) -> FramePredictor    # rim-6x100-k4, lstm-256, ...
    evaluate_rollouts(model, data, settings) -> (n_future,)
    run(settings=None, seeds=1, ...) -> Record      # also writes <record>_examples.npz beside the record
    format_table(record) -> str; verdict(record) / verdict_table(record)
    example_rollouts(models, data, settings, n_examples=16) -> {"<set>/truth" | "<set>/<model>"...: array}
    switches_at_bounces(model, balls, settings) -> module switches per step, by what the frame shows
    add_arguments(parser) / main(args) -> int       # python -m minirims bouncing-balls ...

The figures are in :mod:`minirims.experiments.figures`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minirims.experiments import common
from minirims.experiments.baselines import (
    BASELINES,
    REFERENCES,
    constant_velocity_guess,
    fit_last_frame_blend,
    last_frame_guess,
)
from minirims.experiments.common import (
    TINY_ATTENTION,
    Record,
    Task,
    check_int,
    count_parameters,
    make_core,
    mean_std,
    output_record_path,
    settings_of,
    train_and_test,
)
from minirims.experiments.data.balls import SETS, Balls, BallsTensors, bounces, make_sets
from minirims.experiments.tracking import score_frames
from minirims.experiments.train import batch_indices
from minirims.experiments.video import FEEDBACK, FramePredictor, rollout, rollout_loss
from minirims.model import RIM

__all__ = [
    "BASELINES",
    "BCE_UNIT",
    "EXPERIMENT",
    "PROFILES",
    "SCORES",
    "SETS",
    "TEST_SETS",
    "Settings",
    "add_arguments",
    "describe_settings",
    "evaluate_rollouts",
    "example_rollouts",
    "format_table",
    "last_frame_guess",
    "main",
    "make_data",
    "make_model",
    "parameter_counts",
    "rollout_loss",
    "run",
    "score_predictions",
    "settings",
    "switches_at_bounces",
    "training_steps",
    "verdict",
    "verdict_table",
]

EXPERIMENT = "bouncing_balls"
TEST_SETS = tuple(SETS)
BCE_UNIT = "BCE of a frame summed over its pixels, averaged over test videos"
#: what a record scores on every predicted frame: (name, unit, which way is better)
SCORES = {
    "bce": ("BCE", "nats per frame, summed over its pixels", "lower"),
    "f1": ("foreground F1", "pixels > 0.5 in prediction and truth", "higher"),
    "track": ("tracking error", "pixels from a ball to where it is drawn (a miss: 0.2 widths)", "lower"),
}


@dataclass(frozen=True, kw_only=True)
class Settings(common.Settings):
    """Every knob of a bouncing-balls run (the shared ones in :class:`common.Settings`)."""

    models: tuple[str, ...] = ("rim-6x100-k4", "lstm-256", "lstm-512")
    frame_size: int = 64  # H = W of the rendered frames
    n_frames: int = 30  # frames per training (and validation) video
    n_given: int = 15  # true frames given before a test rollout
    n_future: int = 15  # frames rolled out and scored (test videos have n_given + n_future frames)
    n_train: int = 16_000
    n_val: int = 256  # 4-ball videos that pick the best epoch (by `select`); 0: the 4-ball test set
    n_test: int = 1000  # videos per test set
    channels: tuple[int, ...] = (16, 32, 64)  # encoder conv channels (the decoder mirrors them)
    d_embed: int = 512  # encoder output = the core's input size
    data_seed: int = 0  # the videos are the same for every model seed
    train_given: int = 15  # true frames read in training before the model rolls out the rest
    feedback_grad: bool = True  # backpropagate through the fed-back predictions in training
    select: str = "bce"  # the validation rollout score that picks the best epoch: "bce", "f1" or "track"
    sharpen: float = 0.0  # weight of (1 - soft F1) beside the per-pixel BCE in training (0: BCE alone)
    feedback: str = "probs"  # what a rollout feeds back, in training and test: "probs" or "binary" (> 0.5)
    slots: bool = False  # RIMs read the encoder's last feature map position by position (LSTMs: one vector)
    slot_dim: int = 64  # the size of one such slot (the RIM's d_in when slots is on)

    TEST_ONLY: ClassVar[tuple[str, ...]] = (*common.Settings.TEST_ONLY, "n_future", "n_test")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.channels, (list, tuple)) or not self.channels:
            raise ValueError(f"channels: expected a non-empty list of positive ints, got {self.channels!r}")
        channels = tuple(check_int(f"channels[{i}]", c) for i, c in enumerate(self.channels))
        object.__setattr__(self, "channels", channels)
        check_int("frame_size", self.frame_size, 4, 256)
        factor = 2 ** len(self.channels)
        if self.frame_size % factor:
            raise ValueError(
                f"frame_size: expected a multiple of 2 ** len(channels) = {factor}, got {self.frame_size!r}"
            )
        check_int("n_frames", self.n_frames, 2)
        for key in ("n_future", "n_train", "n_test", "d_embed"):
            check_int(key, getattr(self, key))
        check_int("n_val", self.n_val, 0)
        check_int("data_seed", self.data_seed, 0)
        check_int("train_given", self.train_given, 1, self.n_frames - 1)
        # the best epoch is picked on rollouts as long as the training videos
        check_int("n_given", self.n_given, 1, self.n_frames - 1)
        common.check_choice("feedback_grad", self.feedback_grad, (True, False))
        common.check_choice("select", self.select, tuple(SCORES))
        common.check_choice("feedback", self.feedback, FEEDBACK)
        common.check_choice("slots", self.slots, (True, False))
        check_int("slot_dim", self.slot_dim)
        if isinstance(self.sharpen, bool) or not isinstance(self.sharpen, (int, float)):
            raise ValueError(f"sharpen: expected a number in [0, 100], got {self.sharpen!r}")
        if not 0 <= self.sharpen <= 100:
            raise ValueError(f"sharpen: expected a number in [0, 100], got {self.sharpen!r}")


#: the training recipe of the 30-frame profiles, chosen by the probes of results/probes/README.md: teacher
#: forcing (every frame predicted from the true one before it), BCE + 0.5 (1 - soft F1), best epoch by F1
_RECIPE: dict[str, Any] = {"train_given": 29, "sharpen": 0.5, "select": "f1"}

_CPU = Settings(
    profile="cpu",
    frame_size=32,
    n_train=4000,
    n_val=64,
    n_test=256,
    batch_size=16,
    eval_batch_size=128,
    epochs=9,
    lr=2e-3,
    lr_schedule="cosine",
    warmup_steps=100,
    channels=(8, 16, 32),
    d_embed=256,
    **_RECIPE,
    note="32x32 frames and a narrower encoder/decoder (8-16-32), 4k videos of 30 frames, teacher "
    "forcing with BCE + 0.5 (1 - soft F1), the best of 9 epochs (2,250 steps of batch 16) by "
    "validation rollout F1; the recipe the probes of results/probes/README.md chose by validation F1",
)

PROFILES: dict[str, Settings] = {
    "smoke": Settings(
        profile="smoke",
        models=("rim-6x16-k4", "lstm-256", "lstm-512"),
        frame_size=16,
        n_frames=12,
        n_given=6,
        n_future=6,
        n_train=48,
        n_val=8,
        n_test=16,
        batch_size=16,
        eval_batch_size=16,
        channels=(8, 16),
        d_embed=32,
        train_given=11,
        sharpen=0.5,
        select="f1",
        **TINY_ATTENTION,
        note="CI check that every piece runs; the numbers mean nothing",
    ),
    "cpu": _CPU,
    "long": _CPU.replace(
        profile="long",
        models=("rim-6x100-k4", "lstm-512"),
        n_train=16_000,
        n_val=256,
        n_test=1000,
        epochs=16,
        note="a reference trained on a CPU for hours: the cpu recipe and sizes on 16k videos for 16 "
        "epochs (16,000 steps of batch 16, about 7x the cpu profile's), the best epoch by F1 on 256 "
        "validation videos; the RIM and the LSTM of about its size (lstm-512)",
    ),
    "full": Settings(
        profile="full",
        batch_size=64,
        epochs=8,
        **_RECIPE,
        note="the paper's 64x64 frames and 4 training balls; 16k videos of 30 frames, the cpu profile's "
        "recipe (teacher forcing, BCE + 0.5 (1 - soft F1), best epoch by validation F1), 2,000 steps of "
        "batch 64; sized by estimate for < 8 min of one H100 per seed; the paper trains on 51-frame videos "
        "for longer",
    ),
}


def settings(profile: str | Settings | None = None, **overrides: Any) -> Settings:
    """The settings of ``profile`` (default: env ``MINIRIMS_PROFILE``) with ``overrides``, validated."""
    return settings_of(PROFILES, profile, overrides)


def make_data(settings: Settings) -> dict[str, Balls]:
    """Simulate the sets of a run (numpy): "train", "val" (when n_val > 0) and the three test sets."""
    return make_sets(
        settings.n_train,
        settings.n_test,
        settings.n_frames,
        settings.data_seed,
        n_val=settings.n_val,
        test_frames=settings.n_given + settings.n_future,
    )


def make_model(name: str, settings: Settings | None = None) -> FramePredictor:
    """A :class:`FramePredictor` (encoder -> core -> decoder) whose core is named by its size; with
    ``settings.slots`` a RIM reads one slot per position of the encoder's last feature map."""
    s = PROFILES["full"] if settings is None else settings
    if s.slots and name.startswith("rim"):  # input attention over the positions of the feature map
        return FramePredictor(make_core(name, s.slot_dim, s), s.frame_size, s.channels, slots=True)
    return FramePredictor(make_core(name, s.d_embed, s), s.frame_size, s.channels)


class _Batches:
    """One epoch of training batches, rendered on the device when iterated: (B, T, 1, H, W) frames."""

    def __init__(self, data: BallsTensors, settings: Settings, seed: int, epoch: int) -> None:
        n = min(settings.batch_size, len(data))
        self.index = batch_indices(len(data), n, seed, epoch, shuffle=True, drop_last=True)
        self.data, self.size = data, settings.frame_size

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[Tensor]:
        device = self.data.positions.device
        for idx in self.index:
            yield self.data.batch(idx.to(device), self.size)


def score_predictions(
    predict: Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]],
    data: BallsTensors,
    settings: Settings,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Each predicted frame's BCE, foreground F1 and tracking error (:mod:`~minirims.experiments.tracking`),
    averaged over the videos of ``data``.

    Args:
        predict: ``(frames, index) -> (probabilities, bce)``, given the videos' first n_given + n_future
            frames (B, T, 1, H, W) and their (B,) indices in ``data``: the (B, n_future, 1, H, W)
            probabilities of the frames after the given ones, and their BCE per frame (B, n_future), or None
            to compute it from the probabilities (clamped to [1e-4, 1 - 1e-4]).
        data: a test set; settings: n_given, n_future, frame_size, eval_batch_size.

    Returns:
        {"bce": (n_future,), "f1": (n_future,), "track": (n_future,)} float64.
    """
    batch_size = batch_size or settings.eval_batch_size
    g, f = settings.n_given, settings.n_future
    device = data.positions.device
    sums = {key: np.zeros(f) for key in SCORES}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=device)
        frames = data.batch(idx, settings.frame_size, g + f)
        probs, bce = predict(frames, idx)
        truth = frames[:, g : g + f]
        if bce is None:
            p = probs.double().clamp(1e-4, 1 - 1e-4)
            bce = F.binary_cross_entropy(p, truth.double(), reduction="none").sum(dim=(2, 3, 4))
        sums["bce"] += bce.double().sum(0).cpu().numpy()
        for key, value in score_frames(probs, truth, data.curtain).items():
            sums[key] += value.sum(0)
    return {key: total / len(data) for key, total in sums.items()}


def evaluate_rollouts(
    model: FramePredictor, data: BallsTensors, settings: Settings, batch_size: int | None = None
) -> dict[str, np.ndarray]:
    """The scores of :func:`score_predictions` of the model's rollouts (n_given true frames, then n_future
    predicted from its own predictions): {"bce", "f1", "track"}, each (n_future,) float64."""

    def predict(frames: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        r = rollout(model, frames, settings.n_given, settings.n_future, feedback=settings.feedback)
        return r.predictions, r.bce

    return score_predictions(predict, data, settings, batch_size)


def training_steps(settings: Settings) -> int:
    """Optimizer steps of one model and seed: epochs x full batches per epoch (a partial batch is dropped)."""
    return settings.epochs * (settings.n_train // min(settings.batch_size, settings.n_train))


def describe_settings(settings: Settings) -> str:
    """The settings of a run in two lines (the record and ``format_settings`` hold all of them)."""
    s = settings
    lr = f"lr {s.lr:g}"
    if s.lr_schedule != "constant" or s.warmup_steps:
        lr += f" ({s.lr_schedule}, {s.warmup_steps} warm-up steps)"
    return (
        f"train: {s.n_train} videos of {s.n_frames} frames at {s.frame_size}x{s.frame_size} (the model reads "
        f"{s.train_given}, rolls out {s.n_frames - s.train_given}), {training_steps(s)} steps of batch "
        f"{s.batch_size}, {lr}\n"
        f"test: {s.n_given} frames given, {s.n_future} predicted, {s.n_test} videos per set; models: "
        f"{', '.join(s.models)}"
    )


def parameter_counts(settings: Settings) -> dict[str, dict[str, int]]:
    """Parameters of every model of ``settings``: {model: {"encoder", "core", "decoder", "total"}}."""
    counts = {}
    for name in settings.models:
        model = make_model(name, settings)
        parts = {part: count_parameters(getattr(model, part)) for part in ("encoder", "core", "decoder")}
        counts[name] = {**parts, "total": count_parameters(model)}
    return counts


@torch.no_grad()
def switches_at_bounces(
    model: FramePredictor, balls: Balls, settings: Settings, device: Any = None, n_videos: int = 64
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
    settings: Settings,
    n_examples: int = 16,
) -> dict[str, np.ndarray]:
    """Truth, every model's rollout and two guesses for the first ``n_examples`` videos of each test set.

    Returns arrays keyed ``"<set>/truth"``, ``"<set>/<model>"``, ``"<set>/last-frame"`` (the last given
    frame, copied) and ``"<set>/constant-velocity"`` (:func:`~.baselines.constant_velocity_guess`):
    (n_examples, n_given + n_future, H, W) uint8 (0-255; the first n_given frames are the given truth), plus
    ``"<set>/<model>/masks"`` (n_examples, n_given + n_future - 1, n) bool for RIMs.
    """
    check_int("n_examples", n_examples)
    out: dict[str, np.ndarray] = {}
    g, f = settings.n_given, settings.n_future

    def as_bytes(x: Tensor) -> np.ndarray:
        return (x[:, :, 0] * 255).round().to(torch.uint8).cpu().numpy()

    for set_name in TEST_SETS:
        d = data[set_name]
        idx = torch.arange(min(n_examples, len(d)), device=d.positions.device)
        frames = d.batch(idx, settings.frame_size, g + f)
        out[f"{set_name}/truth"] = as_bytes(frames)
        for name, model in models.items():
            r = rollout(model, frames, g, f, trace=True, feedback=settings.feedback)
            out[f"{set_name}/{name}"] = as_bytes(
                torch.cat([frames[:, :g], r.predictions.to(frames.dtype)], 1)
            )
            if r.trace is not None:
                out[f"{set_name}/{name}/masks"] = r.trace.masks.cpu().numpy()
        guesses = {
            "last-frame": last_frame_guess(frames, g, f, 0.0),
            "constant-velocity": constant_velocity_guess(d, idx, settings),
        }
        for name, guess in guesses.items():
            out[f"{set_name}/{name}"] = as_bytes(torch.cat([frames[:, :g], guess.to(frames.dtype)], 1))
    return out


def _curves(per_seed: list[np.ndarray]) -> dict[str, Any]:
    stack = np.stack(per_seed)  # (seeds, n_future)
    return {"per_frame": stack.mean(axis=0), "per_frame_std": stack.std(axis=0), "per_frame_per_seed": stack}


def _per_frame(per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """A record's entry for one test set from per-seed scores (each {"bce", "f1", "track"} of (n_future,)):
    the BCE curves at the top level (``mean_bce``, ``per_frame``, ...), F1 and tracking error below their key
    (``mean``, ``per_frame``, ...)."""
    bce = np.stack([s["bce"] for s in per_seed])
    entry = {"mean_bce": mean_std(bce.mean(axis=1)), **_curves(list(bce))}
    for key in SCORES:
        if key != "bce":
            values = [s[key] for s in per_seed]
            entry[key] = {"mean": mean_std(np.stack(values).mean(axis=1)), **_curves(values)}
    return entry


def run(settings: str | Settings | None = None, seeds: int | Sequence[int] = 1, **options: Any) -> Record:
    """Train every model for every seed, score rollouts on the three test sets and the trivial predictors.

    ``settings``: Settings or a profile name (None: env MINIRIMS_PROFILE); ``options``: those of
    :func:`minirims.experiments.common.train_and_test` (``results``, ``runs_dir``, ``save``, ``device``,
    ``progress``, ``fresh``, ``trained``). The best epoch is the one with the best validation rollout score
    (``select``: F1 in every profile), scored on rollouts as long as the training ones, so a longer test
    (``n_future`` 35) scores the very same trained models. A saved record gets
    ``<experiment>_<profile>_examples.npz`` beside it (:func:`example_rollouts` of the last seed's models).

    Returns:
        The record. Per model and test set: ``per_frame`` (mean over seeds of the per-frame BCE, n_future
        values), ``per_frame_std``, ``per_frame_per_seed``, and ``mean_bce`` (mean over the rollout frames;
        mean/std over seeds); ``"f1"`` and ``"track"`` hold foreground F1 and tracking error in the same
        layout (``mean``, ``per_frame``, ...). The entries of :data:`BASELINES` (mean frame, last frame) and
        of ``REFERENCES`` (constant velocity) hold their guesses' scores alike. The last frame's BCE is that
        of the copy blended towards the mean (the blend, tuned on the validation videos, is ``blend``); its
        F1 and tracking error, of the copy itself (a blend only dims it below the 0.5 threshold).
    """
    s = settings_of(PROFILES, settings, {})
    trained = options.pop("trained", None)
    trained = {} if trained is None and options.get("save", True) else trained
    sets: dict[str, BallsTensors] = {}
    simulated: dict[str, float] = {}

    def make_task(s: Settings, device: torch.device) -> Task:
        t0 = time.perf_counter()
        sets.update({k: v.to(device) for k, v in make_data(s).items()})
        simulated["simulate_seconds"] = time.perf_counter() - t0  # read by make_record after training
        val = sets.get("val", sets["4 balls"])
        select_on = s.replace(n_future=s.n_frames - s.n_given)

        def validate(m: FramePredictor) -> dict[str, float]:
            scores = evaluate_rollouts(m, val, select_on)
            out = {f"val_{key}": float(curve.mean()) for key, curve in scores.items()}
            return {**out, "val_bce_last": float(scores["bce"][-1])}

        return Task(
            batches=lambda seed, epoch: _Batches(sets["train"], s, seed, epoch),
            loss=lambda m, frames: rollout_loss(
                m, frames, s.train_given, s.feedback_grad, sharpen=s.sharpen, feedback=s.feedback
            ),
            validate=validate,
            test=lambda m: {name: evaluate_rollouts(m, sets[name], s) for name in TEST_SETS},
            summarize=lambda per_seed: {name: _per_frame([r[name] for r in per_seed]) for name in TEST_SETS},
            select=f"val_{s.select}",
            mode="min" if SCORES[s.select][2] == "lower" else "max",
            log_every=10,
            chance_loss=math.log(2),  # per-pixel BCE of a know-nothing guess (0.5 everywhere)
        )

    def baselines(task: Task) -> dict[str, Any]:
        blend = fit_last_frame_blend(sets.get("val", sets["4 balls"]), s)  # no training: one for all seeds
        g, f = s.n_given, s.n_future

        def _bce(frames: Tensor) -> Tensor:  # of the blended copy; F1 and tracking score the copy itself
            p = last_frame_guess(frames, g, f, blend).double().clamp(1e-4, 1 - 1e-4)
            return F.binary_cross_entropy(p, frames[:, g : g + f].double(), reduction="none").sum(
                dim=(2, 3, 4)
            )

        guesses = {  # each: the test set -> its predict function
            "mean-frame": lambda d: lambda frames, idx: (last_frame_guess(frames, g, f, 1.0), None),
            "last-frame": lambda d: lambda frames, idx: (last_frame_guess(frames, g, f, 0.0), _bce(frames)),
            "constant-velocity": lambda d: lambda frames, idx: (constant_velocity_guess(d, idx, s), None),
        }
        out: dict[str, Any] = {key: {} for key in guesses}
        for name in TEST_SETS:
            for key, guess in guesses.items():
                out[key][name] = _per_frame([score_predictions(guess(sets[name]), sets[name], s)])
        out["last-frame"]["blend"] = blend
        return out

    record = train_and_test(
        EXPERIMENT,
        s,
        seeds,
        make_model,
        make_task,
        baselines=baselines,
        trained=trained,
        extra=simulated,
        **options,
    )
    if options.get("save", True):
        path = output_record_path(EXPERIMENT, s.profile, options.get("results"), options.get("runs_dir"))
        models = {name: m.to(next(iter(sets.values())).positions.device) for name, m in trained.items()}
        examples = example_rollouts(models, sets, s)
        target = path.with_name(f"{EXPERIMENT}_{s.profile}_examples.npz")
        try:
            np.savez_compressed(target, **examples)
        except OSError as err:  # the folder became read-only meanwhile: the record is saved, keep these too
            import tempfile

            kept = Path(tempfile.mkdtemp(prefix="minirims-examples-")) / target.name
            np.savez_compressed(kept, **examples)
            raise ValueError(
                f"examples: could not write {target} ({type(err).__name__}: {err.strerror or err}); the "
                f"record is {path}, the example rollouts were saved to {kept} instead"
            ) from None
    return record


def _curve(entry: dict[str, Any], score: str) -> np.ndarray:
    """The per-frame curve of ``score`` in one test set's entry (BCE at the top level, the others below)."""
    return np.asarray(entry["per_frame"] if score == "bce" else entry[score]["per_frame"], dtype=np.float64)


def _check_score(record: dict[str, Any], score: str) -> None:
    if score not in SCORES:
        raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
    if score != "bce":
        missing = [m for m, e in record["metrics"].items() if score not in e.get(TEST_SETS[0], {})]
        if missing:
            raise ValueError(
                f"score: the record holds no {score!r} for {', '.join(missing)} (a record made before "
                "bouncing-balls records scored F1 and tracking error); rerun it, or use score='bce'"
            )


def format_table(
    record: dict[str, Any], frames: Sequence[int] = (0, 2, 4, 9, 14), scores: Sequence[str] | None = None
) -> str:
    """Per score, model and test set: the mean over the rollout and the values at a few frames (text).

    ``scores``: which of :data:`SCORES` (default: all the record holds); ``frames``: 0-based rollout frames.
    """
    n_future = record["settings"]["n_future"]
    frames = [f for f in frames if f < n_future]
    if scores is None:
        scores = [
            k
            for k in SCORES
            if k == "bce"
            or all(k in e.get(TEST_SETS[0], {}) for e in record["metrics"].values() if isinstance(e, dict))
        ]
    width = max(12, *(len(n) + 2 for n in record["metrics"]))
    blocks = []
    for score in scores:
        _check_score(record, score)
        label, unit, better = SCORES[score]
        digits = 2 if score == "f1" else 1
        head = f"{label} ({unit}; {better} is better)\n"
        head += f"{'model':{width}s}{'test set':10s} {'mean':>8s} " + " ".join(
            f"{'t+' + str(f + 1):>8s}" for f in frames
        )
        lines = [head]
        for name, entry in record["metrics"].items():
            for set_name in TEST_SETS:
                y = _curve(entry[set_name], score)
                cells = " ".join(f"{y[f]:8.{digits}f}" for f in frames)
                lines.append(f"{name:{width}s}{set_name:10s} {y.mean():8.{digits}f} {cells}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def verdict(record: dict[str, Any], score: str = "f1") -> dict[str, dict[str, dict[str, Any]]]:
    """What a record shows by ``score``, frame by frame (means over seeds): {test set: {model: {...}}}.

    Per model: ``"beats_baselines"``, the number of leading rollout frames at which the model is better than
    both trivial :data:`BASELINES` (it has learned something there), and ``"frames_beating_baselines"``, at
    how many frames in all; for RIMs also ``"beats_lstms"``, the rollout frames (1-based) at which it is
    better than every LSTM of the record, and ``"ties_or_beats_lstms"``, those where it is at least as good.
    """
    _check_score(record, score)
    sign = 1.0 if SCORES[score][2] == "lower" else -1.0  # compare sign * value: lower is better
    out: dict[str, dict[str, dict[str, Any]]] = {}
    metrics = record["metrics"]
    models = [m for m in metrics if m not in BASELINES and m not in REFERENCES]
    lstms = [m for m in models if m.startswith("lstm")]
    for set_name in TEST_SETS:
        bases = [sign * _curve(metrics[b][set_name], score) for b in BASELINES if b in metrics]
        floor = np.minimum.reduce(bases) if bases else None
        out[set_name] = {}
        for name in models:
            y = sign * _curve(metrics[name][set_name], score)
            entry: dict[str, Any] = {}
            if floor is not None:
                better = y < floor
                entry["beats_baselines"] = int(np.argmin(better)) if not better.all() else len(better)
                entry["frames_beating_baselines"] = int(better.sum())
            if name.startswith("rim") and lstms:
                best_lstm = np.minimum.reduce([sign * _curve(metrics[m][set_name], score) for m in lstms])
                entry["beats_lstms"] = [int(i) + 1 for i in np.flatnonzero(y < best_lstm)]
                entry["ties_or_beats_lstms"] = [int(i) + 1 for i in np.flatnonzero(y <= best_lstm)]
            out[set_name][name] = entry
    return out


def verdict_table(record: dict[str, Any], score: str = "f1") -> str:
    """:func:`verdict` as text: one line per test set and model."""
    n_future = record["settings"]["n_future"]
    label = SCORES.get(score, (score,))[0]
    lines = [f"by {label}:"]
    for set_name, by_model in verdict(record, score).items():
        for name, v in by_model.items():
            text = f"{set_name:10s} {name:13s} better than both baselines for the first "
            text += f"{v.get('beats_baselines', 0)} of {n_future} frames"
            if "beats_lstms" in v:
                frames = v["beats_lstms"]
                text += f"; better than every LSTM at {len(frames)} of {n_future} frames"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims bouncing-balls`` (those of every experiment, and ``--n-future``)."""

    def n_future(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--n-future",
            type=int,
            default=None,
            help="frames rolled out and scored after the n_given true ones (default: the profile's 15; the "
            "paper's long test: 35); training is unchanged, only the test videos get longer",
        )

    common.add_arguments(parser, n_future)


def main(args: argparse.Namespace) -> int:
    """``python -m minirims bouncing-balls``: run from parsed arguments, print the table; returns 0."""
    extra = {"n_future": args.n_future} if args.n_future is not None else {}
    return common.run_command(sys.modules[__name__], args, extra)
