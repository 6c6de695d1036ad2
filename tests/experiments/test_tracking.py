"""Scores of predicted frames that match the picture: foreground F1, blobs, matching, tracking error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from minirims.experiments import baselines
from minirims.experiments import bouncing_balls as bb
from minirims.experiments.data.balls import make_sets, render
from minirims.experiments.tracking import (
    PENALTY,
    assignment,
    blob_centres,
    curtain_band,
    foreground_f1,
    score_frames,
    tracking_error,
)


def test_assignment_finds_the_cheapest_matching():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = (int(x) for x in rng.integers(1, 6, size=2))
        cost = rng.random((n, m)).round(2)  # ties included
        rows, cols = assignment(cost)
        assert len(rows) == len(set(rows)) == len(set(cols)) == min(n, m) and list(rows) == sorted(rows)
        if n <= m:
            best = min(sum(cost[i, j] for i, j in enumerate(p)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[i, j] for j, i in enumerate(p)) for p in itertools.permutations(range(n), m))
        assert cost[rows, cols].sum() == pytest.approx(best)
    with pytest.raises(ValueError, match=r"cost: expected a 2-d array of finite numbers, got shape \(3,\)"):
        assignment(np.ones(3))


def test_blobs_are_8_connected_components_at_their_centres():
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True  # a 2x2 square centred at pixel (1.5, 1.5) + 0.5
    mask[0, 3, 3] = True  # touches the square diagonally: the same blob
    mask[0, 6, 6] = True  # a stray pixel: not counted (min_pixels 2)
    mask[1, 0, 0:4] = True  # a bar along the top row of the second image
    out = blob_centres(mask)
    assert len(out) == 2 and out[0].shape == (1, 2) and out[1].shape == (1, 2)
    square = np.array([[1, 1], [1, 2], [2, 1], [2, 2], [3, 3]]) + 0.5  # (row, col) pixel centres
    np.testing.assert_allclose(out[0][0], square[:, ::-1].mean(0) / 8)  # (x, y) in box units
    np.testing.assert_allclose(out[1][0], [2.0 / 8, 0.5 / 8])
    assert len(blob_centres(mask, min_pixels=1)[0]) == 2
    assert blob_centres(torch.zeros(1, 4, 4, dtype=torch.bool))[0].shape == (0, 2)
    with pytest.raises(ValueError, match="mask: expected a bool tensor of shape"):
        blob_centres(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="min_pixels: expected a positive int, got 0"):
        blob_centres(mask, min_pixels=0)


def test_blobs_of_rendered_balls_sit_at_the_simulators_centres():
    positions = torch.tensor([[[[0.25, 0.3], [0.7, 0.65]]]])  # (B=1, T=1, N=2, 2), far apart
    frame = render(positions, torch.tensor([[0.08, 0.1]]), size=32)[0, 0, 0] > 0.5
    found = blob_centres(frame[None])[0]
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], positions[0, 0].numpy(), atol=0.5 / 32)


def test_foreground_f1_counts_pixels_above_the_threshold():
    truth = torch.zeros(3, 4, 4)
    truth[:, 0, :2] = 1.0  # 2 foreground pixels
    pred = truth.clone()
    pred[1, 0, 1] = 0.4  # one pixel missed: TP 1, FN 1 -> 2/3
    pred[2] = 0.45  # grey everywhere: nothing above 0.5
    np.testing.assert_allclose(foreground_f1(pred, truth).numpy(), [1.0, 2 / 3, 0.0], rtol=1e-6)
    assert float(foreground_f1(torch.zeros(4, 4), torch.zeros(4, 4))) == 1.0  # nothing to find, none drawn
    assert float(foreground_f1(torch.ones(4, 4), torch.zeros(4, 4))) == 0.0
    band = torch.zeros(4, 4, dtype=torch.bool)
    band[:, 2:] = True
    extra = truth[0].clone()
    extra[:, 3] = 1.0  # drawn only inside the ignored band: not counted
    assert float(foreground_f1(extra, truth[0], ignore=band)) == 1.0
    with pytest.raises(ValueError, match=r"truth: expected the shape of pred \(3, 4, 4\), got \(4, 4\)"):
        foreground_f1(pred, truth[0])
    with pytest.raises(ValueError, match="threshold: expected a number in \\(0, 1\\), got 1.5"):
        foreground_f1(pred, truth, threshold=1.5)


def test_tracking_error_matches_then_charges_misses_and_extras():
    true = np.array([[0.2, 0.2], [0.8, 0.8]])
    assert tracking_error(true, true, 0.2) == 0.0
    assert tracking_error(true + [0.03, 0.04], true, 0.2) == pytest.approx(0.05)  # each 0.05 away
    assert tracking_error(true[:1], true, 0.2) == pytest.approx(0.2 / 2)  # one missed
    assert tracking_error(np.zeros((0, 2)), true, 0.2) == pytest.approx(0.2)  # nothing drawn
    assert tracking_error(np.vstack([true, [[0.5, 0.5]]]), true, 0.2) == pytest.approx(0.1)  # one extra
    assert tracking_error(true + [0.5, -0.5], true, 0.2) == pytest.approx(0.2)  # far away: capped
    assert tracking_error(np.zeros((0, 2)), np.zeros((0, 2)), 0.2) == 0.0
    with pytest.raises(ValueError, match="penalty: expected a number > 0, got 0"):
        tracking_error(true, true, 0)
    with pytest.raises(ValueError, match=r"found: expected an array of shape \(k, 2\), got shape \(2,\)"):
        tracking_error(np.ones(2), true, 0.2)


def test_score_frames_on_truth_grey_copies_and_the_curtain():
    sets = make_sets(1, 6, 12, seed=0)
    idx = torch.arange(6)
    for name in ("4 balls", "curtain"):
        data = sets[name].to()
        frames = data.batch(idx, 32)
        perfect = score_frames(frames, frames, data.curtain)
        assert np.all(perfect["f1"] == 1.0) and np.all(perfect["track"] == 0.0)
        grey = score_frames(torch.full_like(frames, 0.3), frames, data.curtain)
        assert np.all(grey["f1"] == 0.0) and np.allclose(grey["track"], PENALTY * 32)
        late = score_frames(frames[:, :-5], frames[:, 5:], data.curtain)  # copy a frame five steps old
        soon = score_frames(frames[:, :-1], frames[:, 1:], data.curtain)
        assert late["f1"].mean() < soon["f1"].mean() < 1.0 and late["track"].mean() > soon["track"].mean() > 0
    band = curtain_band(32, sets["curtain"].curtain)
    assert band.sum() > 0 and curtain_band(32, None) is None
    with pytest.raises(ValueError, match=r"pred, truth: expected two tensors of shape \(B, F, 1, H, W\)"):
        score_frames(frames[:, :, 0], frames[:, :, 0])
    with pytest.raises(
        ValueError, match="penalty: expected a fraction of the frame width in \\(0, 1\\], got 2"
    ):
        score_frames(frames, frames, penalty=2)


def test_constant_velocity_guess_is_the_truth_until_a_bounce():
    s = bb.settings("smoke", frame_size=32, channels=(8, 16))
    data = make_sets(1, 8, s.n_given + s.n_future, seed=1)["4 balls"]
    on = data.to()
    idx = torch.arange(8)
    guess = baselines.constant_velocity_guess(on, idx, s)
    truth = on.batch(idx, 32, s.n_given + s.n_future)[:, s.n_given :]
    assert guess.shape == truth.shape
    vel = data.velocities
    steady = [  # videos in which no ball changes velocity from the last two given frames on
        i for i in range(8) if np.allclose(vel[i, s.n_given - 2 :], vel[i, s.n_given - 2], atol=1e-6)
    ]
    changed = [i for i in range(8) if i not in steady]
    assert steady and changed  # both kinds are in this sample
    torch.testing.assert_close(guess[steady], truth[steady], atol=1e-3, rtol=0)
    assert (guess[changed] - truth[changed]).abs().amax() > 0.5  # it cannot know the bounces
    one = baselines.constant_velocity_guess(on, idx, s.replace(n_given=1))  # one frame: the balls stand still
    torch.testing.assert_close(one[:, 0], one[:, -1])
    with pytest.raises(ValueError, match="data: expected a BallsTensors set, got Balls"):
        baselines.constant_velocity_guess(data, idx, s)
