"""Checks for notebook 08: the last-frame guess, the trivial predictor the video models must beat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minirims.course.checks._core import (
    _call,
    _expect_tensor,
    _failure,
    _first_match,
    _require_callable,
    passed,
)
from minirims.experiments.baselines import last_frame_guess
from minirims.experiments.data.balls import make_balls

__all__ = ["check_last_frame_guess"]

SEED = 808


def _cases() -> list[tuple[str, torch.Tensor, int, int, Any]]:
    videos = make_balls(3, 4, 12, seed=SEED).frames(size=16)  # (3, 12, 1, 16, 16)
    blend = torch.linspace(0.1, 0.9, 5, dtype=torch.float64).tolist()
    return [
        ("3 videos, n_given=6, n_future=4, blend=0.25", videos, 6, 4, 0.25),
        ("3 videos, n_given=4, n_future=5, a blend per frame", videos[:, :9].double(), 4, 5, blend),
        ("1 video, n_given=1, n_future=3, blend=0.0", videos[:1], 1, 3, 0.0),
    ]


def _mistakes(frames: torch.Tensor, g: int, f: int, blend: Any) -> list[tuple[str, Callable[[], Any]]]:
    a = torch.as_tensor(blend, dtype=frames.dtype)
    a = (a if a.dim() else a.expand(f)).view(1, f, 1, 1, 1)
    last, given = frames[:, g - 1 : g], frames[:, :g]
    mean = given.mean(dim=(1, 2, 3, 4), keepdim=True)
    out = []
    if frames.shape[1] > g:
        out.append(
            (
                "you copied frame n_given, the first frame to predict (the future!): the last given frame is "
                "frames[:, n_given - 1]",
                lambda: (1 - a) * frames[:, g : g + 1] + a * mean,
            )
        )
    out += [
        (
            "the blend is the wrong way round: blend 0 must be the last frame as it is, blend 1 the mean",
            lambda: a * last + (1 - a) * mean,
        ),
        (
            "you blended towards the mean frame pixel by pixel (mean over time only); the baseline blends "
            "towards one number per video, the mean brightness over time and pixels: dim=(1, 2, 3, 4)",
            lambda: (1 - a) * last + a * given.mean(dim=1, keepdim=True),
        ),
        (
            "the mean brightness reads future frames too: average only the n_given frames the model is shown",
            lambda: (1 - a) * last + a * frames.mean(dim=(1, 2, 3, 4), keepdim=True),
        ),
        (
            "one mean over the whole batch mixes videos: keep one mean per video (keepdim over dims 1-4)",
            lambda: (1 - a) * last + a * given.mean(),
        ),
    ]
    return out


def check_last_frame_guess(fn: Callable[..., Any]) -> None:
    """``fn(frames (B, T, 1, H, W), n_given, n_future, blend) -> (B, n_future, 1, H, W)`` must match the
    package's guess: the last given frame, blended towards the video's mean brightness (``blend`` a number or
    one per future frame)."""
    _require_callable(fn)
    name = "last_frame_guess"
    cases = _cases()
    for label, frames, g, f, blend in cases:
        got = _call(name, fn, (frames.clone(), g, f, blend), label)
        expected = last_frame_guess(frames, g, f, blend)
        broadcast = isinstance(got, torch.Tensor) and tuple(got.shape[2:]) == tuple(expected.shape[2:])
        hint = "broadcast the last frame (B, 1, 1, H, W) against a blend of shape (1, n_future, 1, 1, 1)"
        prefix = f"{name} ({label})"
        shape_hint = hint if broadcast else ""
        _expect_tensor(prefix, got, expected, " (B, n_future, 1, H, W)", " (that of frames)", shape_hint)
        if not bool(torch.allclose(got, expected, atol=1e-6)):
            diff = (got - expected).abs().flatten(2).amax(-1)  # (B, n_future)
            b, t = (int(v) for v in torch.nonzero(diff == diff.max())[0])
            message = f"{prefix}: video {b}, rollout frame {t} differs (by up to {float(diff[b, t]):.3g})"
            raise _failure(message, _first_match(got, _mistakes(frames, g, f, blend)))
    passed(name, f"{len(cases)} cases")
