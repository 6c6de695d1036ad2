"""The trivial predictors of the bouncing-balls videos, and the reference of a model that knows the motion.

The two trivial predictors guess every future frame from the given ones, knowing nothing of how balls move;
a model has learned motion only where it beats both::

    mean_frame_baseline(data, settings) -> (n_future,)          # every pixel = the mean brightness
    last_frame_guess(frames, n_given, n_future, blend) -> (B, n_future, 1, H, W)
    fit_last_frame_blend(data, settings) -> (n_future,)         # the blend, tuned on validation videos
    last_frame_baseline(data, settings, blend=0.05) -> (n_future,)   # the last frame, blended to the mean

The third knows more than any model: the simulator's true ball centres at the last two given frames. It
moves every ball on at constant velocity and draws it: what a model that learned the motion but not the
collisions (with walls or balls) would predict::

    constant_velocity_guess(data, index, settings) -> (B, n_future, 1, H, W)

``data`` is a :class:`~minirims.experiments.data.balls.BallsTensors` set; ``settings`` anything with
``n_given``, ``n_future``, ``frame_size`` and ``eval_batch_size`` (the bouncing-balls Settings). Scores are
the mean BCE of each predicted frame, summed over its pixels (float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from minirims._validate import check_positive_int
from minirims.experiments.data.balls import BallsTensors, render

__all__ = [
    "BASELINES",
    "BLENDS",
    "REFERENCES",
    "constant_velocity_guess",
    "fit_last_frame_blend",
    "last_frame_baseline",
    "last_frame_guess",
    "mean_frame_baseline",
]

#: the trivial predictors in every bouncing-balls record: a model has learned something only at the rollout
#: frames where it beats both
BASELINES = ("mean-frame", "last-frame")
#: predictors that know more than a model can (the simulator's positions): a line to compare with, not to beat
REFERENCES = ("constant-velocity",)


def mean_frame_baseline(data: BallsTensors, settings: Any) -> np.ndarray:
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
    check_positive_int("n_given", n_given)
    check_positive_int("n_future", n_future)
    if frames.shape[1] < n_given:
        raise ValueError(f"frames: expected at least n_given = {n_given} frames, got {frames.shape[1]}")
    a = torch.as_tensor(_check_blend(blend, n_future), dtype=frames.dtype, device=frames.device)
    a = a.view(1, n_future, 1, 1, 1)
    given = frames[:, :n_given]
    mean = given.mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1)
    return (1 - a) * given[:, -1:] + a * mean


def _guess_bce(data: BallsTensors, settings: Any, blends: np.ndarray) -> np.ndarray:
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


def fit_last_frame_blend(data: BallsTensors, settings: Any) -> np.ndarray:
    """The blend of :func:`last_frame_baseline` that scores best on ``data`` at each rollout frame.

    Tuned on the validation videos (never on a test set): from :data:`BLENDS`, per rollout frame, the weight
    ``a`` whose guess ``(1 - a) * last frame + a * mean brightness`` has the lowest mean BCE. (n_future,).
    """
    grid = np.asarray(BLENDS)
    bce = _guess_bce(data, settings, np.repeat(grid[:, None], settings.n_future, axis=1))
    return grid[bce.argmin(axis=0)]


def last_frame_baseline(data: BallsTensors, settings: Any, blend: Any = 0.05) -> np.ndarray:
    """BCE per future frame of a guess that knows where the balls are but not how they move.

    Every future frame is predicted as the last given frame, blended towards the mean brightness of the given
    frames, ``p = (1 - blend) * last + blend * mean`` (a hard copy, blend 0, pays ~9 nats for every pixel a
    ball has left). ``blend``: a float or (n_future,) floats in [0, 1], e.g. from
    :func:`fit_last_frame_blend`. A model below this line knows that balls move. (n_future,) float64.
    """
    return _guess_bce(data, settings, _check_blend(blend, settings.n_future)[None])[0]


def constant_velocity_guess(data: BallsTensors, index: Tensor, settings: Any) -> Tensor:
    """Every ball moved on from its true centre at the last given frame with its last true step, then drawn.

    Uses the simulator's centres at frames ``n_given - 2`` and ``n_given - 1`` (with one given frame, the
    balls stand still), ignores walls and other balls, and draws the balls as :func:`render` does (a ball
    that leaves the box leaves the frame; the curtain, if any, is drawn over them).

    Args:
        data: the test set; index: (B,) int tensor of its videos.
        settings: with ``n_given``, ``n_future`` and ``frame_size``.

    Returns:
        (B, n_future, 1, H, W) frames in [0, 1], dtype of ``data.positions``.
    """
    if not isinstance(data, BallsTensors):
        raise ValueError(f"data: expected a BallsTensors set, got {type(data).__name__}")
    g, f = check_positive_int("n_given", settings.n_given), check_positive_int("n_future", settings.n_future)
    pos = data.positions[index]  # (B, T, N, 2)
    if pos.shape[1] < g:
        raise ValueError(f"data: expected videos of at least n_given = {g} frames, got {pos.shape[1]}")
    last = pos[:, g - 1]
    step = last - pos[:, g - 2] if g >= 2 else torch.zeros_like(last)
    ahead = torch.arange(1, f + 1, device=pos.device, dtype=pos.dtype).view(1, f, 1, 1)
    future = last[:, None] + ahead * step[:, None]  # (B, n_future, N, 2)
    return render(
        future, data.radii[index], size=settings.frame_size, present=data.present[index], curtain=data.curtain
    )
