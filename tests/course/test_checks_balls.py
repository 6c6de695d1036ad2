"""The notebook-08 check (last-frame baseline): the reference passes, typical mistakes get their hint."""

from __future__ import annotations

import pytest
import torch

from minirims.course.checks import ExerciseFailure
from minirims.course.checks.balls import check_last_frame_guess
from minirims.experiments.bouncing_balls import last_frame_guess

pytestmark = pytest.mark.usefixtures("one_thread")


def _blend(blend, f, dtype):
    a = torch.as_tensor(blend, dtype=dtype)
    return (a if a.dim() else a.expand(f)).view(1, f, 1, 1, 1)


def test_the_reference_passes(capsys) -> None:
    check_last_frame_guess(last_frame_guess)
    assert "✔ last_frame_guess passed: 3 cases" in capsys.readouterr().out


def test_a_blank_exercise_is_not_attempted() -> None:
    def blank(frames, n_given, n_future, blend):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        check_last_frame_guess(blank)


def _peek(frames, g, f, blend):
    a = _blend(blend, f, frames.dtype)
    return (1 - a) * frames[:, g : g + 1] + a * frames[:, :g].mean(dim=(1, 2, 3, 4), keepdim=True)


def _reversed(frames, g, f, blend):
    a = _blend(blend, f, frames.dtype)
    return a * frames[:, g - 1 : g] + (1 - a) * frames[:, :g].mean(dim=(1, 2, 3, 4), keepdim=True)


def _pixel_mean(frames, g, f, blend):
    a = _blend(blend, f, frames.dtype)
    return (1 - a) * frames[:, g - 1 : g] + a * frames[:, :g].mean(dim=1, keepdim=True)


def _future_mean(frames, g, f, blend):
    a = _blend(blend, f, frames.dtype)
    return (1 - a) * frames[:, g - 1 : g] + a * frames.mean(dim=(1, 2, 3, 4), keepdim=True)


def _batch_mean(frames, g, f, blend):
    a = _blend(blend, f, frames.dtype)
    return (1 - a) * frames[:, g - 1 : g] + a * frames[:, :g].mean()


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (_peek, "the first frame to predict"),
        (_reversed, "wrong way round"),
        (_pixel_mean, "pixel by pixel"),
        (_future_mean, "reads future frames"),
        (_batch_mean, "one mean per video"),
    ],
)
def test_typical_mistakes_get_their_hint(fn, hint) -> None:
    with pytest.raises(ExerciseFailure, match=hint):
        check_last_frame_guess(fn)


def test_shape_and_dtype_are_named() -> None:
    with pytest.raises(ExerciseFailure, match=r"expected shape \(3, 4, 1, 16, 16\).*got \(3, 1, 1, 16, 16\)"):
        check_last_frame_guess(lambda frames, g, f, blend: last_frame_guess(frames, g, f, blend)[:, :1])
    with pytest.raises(ExerciseFailure, match=r"expected dtype torch.float32 \(that of frames\)"):
        check_last_frame_guess(lambda frames, g, f, blend: last_frame_guess(frames, g, f, blend).double())
    with pytest.raises(ExerciseFailure, match="expected a torch.Tensor, got list"):
        check_last_frame_guess(lambda frames, g, f, blend: [])


def test_registered_for_notebook_08() -> None:
    from minirims.course import checks
    from minirims.course.checks import balls

    assert checks.BY_NOTEBOOK["08"] == tuple(balls.__all__) == ("check_last_frame_guess",)
    assert checks.check_last_frame_guess is check_last_frame_guess
