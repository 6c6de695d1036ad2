"""The check of notebook 08 (the last-frame guess): typical mistakes get their hint."""

from __future__ import annotations

import pytest
import torch
from helpers import load_fixture

from minirims.course.checks import check_last_frame_guess
from minirims.experiments.baselines import last_frame_guess

fails = load_fixture("check_answers").fails

pytestmark = pytest.mark.usefixtures("one_thread")


def guess(last, mean):
    """A learner's guess built from what it takes as the last frame and the mean, for every blend."""

    def fn(frames, g, f, blend):
        a = torch.as_tensor(blend, dtype=frames.dtype)
        a = (a if a.dim() else a.expand(f)).view(1, f, 1, 1, 1)
        return (1 - a) * last(frames, g) + a * mean(frames, g)

    return fn


def last_given(frames, g):
    return frames[:, g - 1 : g]


def video_mean(frames, g):
    return frames[:, :g].mean(dim=(1, 2, 3, 4), keepdim=True)


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (guess(lambda frames, g: frames[:, g : g + 1], video_mean), "the first frame to predict"),
        (guess(video_mean, last_given), "wrong way round"),
        (guess(last_given, lambda frames, g: frames[:, :g].mean(dim=1, keepdim=True)), "pixel by pixel"),
        (
            guess(last_given, lambda frames, g: frames.mean(dim=(1, 2, 3, 4), keepdim=True)),
            "reads future frames",
        ),
        (guess(last_given, lambda frames, g: frames[:, :g].mean()), "one mean per video"),
    ],
)
def test_typical_mistakes_get_their_hint(fn, hint) -> None:
    fails(check_last_frame_guess, fn, hint)


def test_shape_and_dtype_are_named() -> None:
    fails(
        check_last_frame_guess,
        lambda frames, g, f, blend: last_frame_guess(frames, g, f, blend)[:, :1],
        r"expected shape \(3, 4, 1, 16, 16\).*got \(3, 1, 1, 16, 16\)",
    )
    fails(
        check_last_frame_guess,
        lambda frames, g, f, blend: last_frame_guess(frames, g, f, blend).double(),
        r"expected dtype torch.float32 \(that of frames\)",
    )
    fails(check_last_frame_guess, lambda frames, g, f, blend: [], "expected a torch.Tensor, got list")
