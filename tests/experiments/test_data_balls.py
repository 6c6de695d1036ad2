"""Bouncing-balls simulator and renderer: physics invariants, determinism, rendering, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minirims.experiments.data.balls import (
    SETS,
    elastic_collision,
    make_balls,
    make_sets,
    render,
    round_robin,
    simulate,
)


@pytest.fixture(scope="module")
def crowded():
    """6-8 balls: many collisions, padding, walls."""
    return make_balls(300, (6, 8), 40, seed=3)


def _kinetic(balls) -> np.ndarray:
    v = balls.velocities.astype(np.float64)
    m = (balls.masses * balls.present)[:, None, :]
    return 0.5 * (m * (v**2).sum(-1)).sum(-1)  # (S, T)


def _gaps(balls) -> np.ndarray:
    """(S, T, N, N) distance minus radii sum between present pairs (+inf elsewhere)."""
    x = balls.positions.astype(np.float64)
    d = np.sqrt(((x[:, :, :, None] - x[:, :, None, :]) ** 2).sum(-1))
    r = balls.radii.astype(np.float64)
    gap = d - (r[:, None, :, None] + r[:, None, None, :])
    pair = balls.present[:, None, :, None] & balls.present[:, None, None, :]
    pair = pair & ~np.eye(balls.positions.shape[2], dtype=bool)
    return np.where(pair, gap, np.inf)


def test_round_robin_covers_every_pair_once_with_no_ball_twice_per_round():
    for n in range(2, 10):
        i, j = round_robin(n)
        pairs = {(a, b) for ri, rj in zip(i, j, strict=True) for a, b in zip(ri, rj, strict=True)}
        assert pairs == {(a, b) for a in range(n) for b in range(a + 1, n)}
        assert i.size == n * (n - 1) // 2
        for ri, rj in zip(i, j, strict=True):
            balls = np.concatenate([ri, rj])
            assert len(set(balls.tolist())) == len(balls)


def test_elastic_collision_conserves_momentum_and_energy_exactly():
    rng = np.random.default_rng(0)
    x_i, x_j, v_i, v_j = (rng.normal(size=(1000, 2)) for _ in range(4))
    m_i, m_j = rng.uniform(0.2, 3.0, size=(2, 1000))
    w_i, w_j = elastic_collision(x_i, x_j, v_i, v_j, m_i, m_j)
    p0 = m_i[:, None] * v_i + m_j[:, None] * v_j
    p1 = m_i[:, None] * w_i + m_j[:, None] * w_j
    np.testing.assert_allclose(p1, p0, atol=1e-12)
    e0 = m_i * (v_i**2).sum(-1) + m_j * (v_j**2).sum(-1)
    e1 = m_i * (w_i**2).sum(-1) + m_j * (w_j**2).sum(-1)
    np.testing.assert_allclose(e1, e0, rtol=1e-12)
    # the tangential components are unchanged
    n = (x_j - x_i) / np.linalg.norm(x_j - x_i, axis=-1, keepdims=True)
    t = np.stack([-n[:, 1], n[:, 0]], -1)
    np.testing.assert_allclose((w_i * t).sum(-1), (v_i * t).sum(-1), atol=1e-12)


def test_head_on_equal_masses_swap_velocities_and_momentum_is_conserved():
    # two equal balls in the middle of the box, moving towards each other along x
    pos = np.array([[[0.35, 0.5], [0.65, 0.5]]])
    vel = np.array([[[0.03, 0.0], [-0.02, 0.0]]])
    r = np.full((1, 2), 0.08)
    m = np.ones((1, 2))
    x, v = simulate(pos, vel, r, m, n_frames=6, substeps=8)
    np.testing.assert_allclose(v[0, -1], [[-0.02, 0.0], [0.03, 0.0]], atol=1e-6)
    momentum = (m[:, None, :, None] * v).sum(2)  # (1, T, 2): no wall was hit
    np.testing.assert_allclose(momentum, np.broadcast_to(momentum[:, :1], momentum.shape), atol=1e-6)


def test_unequal_masses_follow_the_1d_elastic_formula():
    pos = np.array([[[0.3, 0.5], [0.6, 0.5]]])
    vel = np.array([[[0.04, 0.0], [0.0, 0.0]]])
    r, m = np.full((1, 2), 0.08), np.array([[1.0, 3.0]])
    _, v = simulate(pos, vel, r, m, n_frames=5, substeps=8)
    # 1-D elastic: v1' = (m1 - m2)/(m1 + m2) u1, v2' = 2 m1/(m1 + m2) u1
    np.testing.assert_allclose(v[0, -1, :, 0], [-0.02, 0.02], atol=1e-6)


def test_balls_stay_in_the_box(crowded):
    x, r = crowded.positions, crowded.radii[:, None, :, None]
    live = crowded.present[:, None, :, None]
    assert np.all(~live | (x - r >= -1e-5))
    assert np.all(~live | (x + r <= 1 + 1e-5))


def test_kinetic_energy_is_conserved_by_walls_and_collisions(crowded):
    ke = _kinetic(crowded)
    np.testing.assert_allclose(ke, np.broadcast_to(ke[:, :1], ke.shape), rtol=1e-5)
    # and there were collisions to test
    speeds = np.linalg.norm(crowded.velocities, axis=-1)
    assert np.abs(np.diff(speeds, axis=1)).max() > 1e-3


def test_no_lasting_overlap(crowded):
    gaps = _gaps(crowded)
    assert gaps.min() > -0.02  # never deeper than a fraction of a radius (r >= 0.06)
    overlapping = gaps.min(axis=(2, 3)) < -1e-4  # (S, T)
    assert not np.any(overlapping[:, 1:] & overlapping[:, :-1])  # never two frames in a row
    assert overlapping.mean() < 0.01


def test_absent_balls_do_not_move_and_counts_are_in_range(crowded):
    counts = crowded.present.sum(1)
    assert counts.min() == 6 and counts.max() == 8
    absent = ~crowded.present
    moved = np.abs(crowded.positions - crowded.positions[:, :1]).max(axis=(1, 3))  # (S, N)
    assert np.all(moved[absent] == 0)
    assert np.all(crowded.radii[absent] == 0)


def test_arrays_are_float32_with_the_documented_shapes():
    b = make_balls(5, 4, 7, seed=0)
    assert b.positions.shape == b.velocities.shape == (5, 7, 4, 2)
    assert b.positions.dtype == b.velocities.dtype == np.float32
    assert b.radii.shape == b.masses.shape == b.present.shape == (5, 4)
    # heavier balls are bigger
    order = np.argsort(b.radii.ravel())
    assert np.all(np.diff(b.masses.ravel()[order]) >= 0)


def test_same_seed_same_sequences_other_seed_other_sequences():
    a, b, c = make_balls(20, 4, 10, seed=7), make_balls(20, 4, 10, seed=7), make_balls(20, 4, 10, seed=8)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.radii, b.radii)
    assert not np.allclose(a.positions, c.positions)


def test_make_sets_names_sizes_and_independence():
    sets = make_sets(12, 6, n_frames=8, seed=1, n_val=4)
    assert list(sets) == ["train", "val", *SETS]
    assert len(sets["train"]) == 12 and len(sets["val"]) == 4 and len(sets["curtain"]) == 6
    assert sets["curtain"].curtain == SETS["curtain"]["curtain"]
    assert sets["6-8 balls"].positions.shape[2] == 8
    # changing the training-set size leaves the test sets alone
    other = make_sets(30, 6, n_frames=8, seed=1)
    np.testing.assert_array_equal(other["4 balls"].positions, sets["4 balls"].positions)


def test_render_shape_range_dtype_device_and_ball_position():
    pos = torch.tensor([[[[0.25, 0.75]]]])  # one ball: x = 0.25 (column), y = 0.75 (row)
    frames = render(pos, torch.tensor([[0.1]]), size=32)
    assert frames.shape == (1, 1, 1, 32, 32) and frames.dtype == torch.float32
    assert frames.device == pos.device
    assert frames.min() >= 0 and frames.max() <= 1
    img = frames[0, 0, 0]
    assert img[24, 8] == 1 and img[8, 24] == 0  # row = y * size, column = x * size
    # binary-ish: only the one-pixel rim is grey, the area matches pi r^2
    grey = ((img > 0) & (img < 1)).float().mean()
    assert grey < 0.1
    assert abs(img.sum().item() - np.pi * (0.1 * 32) ** 2) < 4


def test_render_from_a_set_and_float64_and_absent_balls():
    b = make_balls(3, (2, 3), 5, seed=0)
    frames = b.frames(slice(0, 3), size=16)
    assert frames.shape == (3, 5, 1, 16, 16)
    on = b.to("cpu")
    np.testing.assert_array_equal(on.batch(torch.arange(3), 16).numpy(), frames.numpy())
    assert on.batch(torch.arange(3), 16, n_frames=2).shape == (3, 2, 1, 16, 16)
    f64 = render(torch.as_tensor(b.positions, dtype=torch.float64), torch.as_tensor(b.radii), 16)
    assert f64.dtype == torch.float64
    # a ball marked absent is not drawn
    pos, r = torch.tensor([[[[0.5, 0.5]]]]), torch.tensor([[0.2]])
    assert render(pos, r, 16, present=torch.tensor([[False]])).sum() == 0


def test_curtain_hides_balls_behind_it():
    pos = torch.tensor([[[[0.5, 0.5], [0.15, 0.5]]]])  # one ball behind the curtain, one beside it
    r = torch.tensor([[0.06, 0.06]])
    plain = render(pos, r, 32)
    curtained = render(pos, r, 32, curtain=(0.35, 0.65))
    band = slice(int(0.35 * 32) + 1, int(0.65 * 32))
    assert torch.all(curtained[..., band] == 1)  # the band is a solid occluder
    # the hidden ball leaves no trace: the curtained frame equals "plain with the band painted"
    painted = plain.clone()
    painted[..., int(np.ceil(0.35 * 32 - 0.5)) : int(np.ceil(0.65 * 32 - 0.5))] = 1
    torch.testing.assert_close(curtained, painted)
    # and a frame without the hidden ball looks the same
    alone = render(pos[:, :, 1:], r[:, 1:], 32, curtain=(0.35, 0.65))
    torch.testing.assert_close(curtained, alone)
    assert curtained[..., :8].sum() > 0  # the visible ball is still there


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_render_on_cuda():
    b = make_balls(2, 4, 3, seed=0).to("cuda")
    assert b.batch(torch.arange(2, device="cuda"), 16).device.type == "cuda"


def test_simulator_benchmark_runs():
    """Speed lives in benchmarks/bench_balls.py (ratios, never a timed assertion); here it only has to run."""
    from benchmarks.bench_balls import main

    rows = main(["--sequences", "20", "40", "--frames", "6"])
    assert [r["sequences"] for r in rows] == [20, 40] and all(r["seconds"] > 0 for r in rows)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_sequences": 0}, r"n_sequences: expected a positive int, got 0"),
        ({"n_balls": 0}, r"n_balls: expected a positive int, got 0"),
        ({"n_balls": (5, 3)}, r"n_balls: expected an int >= 1 or a pair"),
        ({"n_frames": 2.5}, r"n_frames: expected a positive int, got 2.5"),
        ({"radius_range": (0.1, 0.05)}, r"radius_range: expected a pair \(a, b\)"),
        ({"n_balls": 9, "radius_range": (0.1, 0.2)}, r"radius_range: expected .* <= 0.1666"),
        ({"speed_range": (0.1,)}, r"speed_range: expected a pair"),
        ({"curtain": (0.6, 0.4)}, r"curtain: expected None or a band \(x0, x1\)"),
        ({"seed": "a"}, r"seed: expected an int or numpy SeedSequence, got 'a'"),
        ({"burn_in": -1}, r"burn_in: expected an int >= 0, got -1"),
    ],
)
def test_make_balls_validation(kwargs, match):
    args = {"n_sequences": 2, "n_balls": 4, "n_frames": 3, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        make_balls(**args)


def test_simulate_and_render_validation():
    pos = np.full((2, 3, 2), 0.5)
    with pytest.raises(ValueError, match=r"velocities: expected shape \(2, 3, 2\), got \(2, 3\)"):
        simulate(pos, np.zeros((2, 3)), np.full((2, 3), 0.1), np.ones((2, 3)), 4)
    with pytest.raises(ValueError, match=r"masses: expected > 0 for present balls"):
        simulate(pos, np.zeros_like(pos), np.full((2, 3), 0.1), np.zeros((2, 3)), 4)
    with pytest.raises(
        ValueError, match=r"positions: expected a tensor of shape \(B, T, N, 2\), got \(2, 3, 2\)"
    ):
        render(torch.zeros(2, 3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"radii: expected shape \(1, 3\), got \(3,\)"):
        render(torch.zeros(1, 2, 3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"size: expected a positive int, got 0"):
        render(torch.zeros(1, 2, 3, 2), torch.zeros(1, 3), size=0)
    with pytest.raises(ValueError, match=r"n_val: expected an int >= 0, got -1"):
        make_sets(2, 2, 3, n_val=-1)


def test_bounces_tell_wall_hits_from_ball_hits() -> None:
    from minirims.experiments.data.balls import bounces

    one = bounces(make_balls(40, 1, 30, seed=0))
    assert one["ball"].sum() == 0 and one["wall"].sum() > 0  # a lone ball only ever hits walls
    four = bounces(make_balls(40, 4, 30, seed=0))
    assert four["ball"].shape == (40, 30) and four["ball"].sum() > 0
    assert np.all(four["wall"][:, 0] == 0) and np.all(four["ball"][:, 0] == 0)
    # a bounce is a change of velocity: frames without one count nothing
    sim = make_balls(40, 4, 30, seed=0)
    still = np.linalg.norm(np.diff(sim.velocities, axis=1), axis=-1).max(-1) <= 1e-6  # (S, T-1)
    assert np.all((four["wall"] + four["ball"])[:, 1:][still] == 0)
    with pytest.raises(ValueError, match="balls: expected a Balls set, got dict"):
        bounces({})
