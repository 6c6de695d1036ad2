"""Bouncing balls: a vectorized simulator and an on-device renderer.

The physics runs in numpy, vectorized over sequences: S sequences of N balls in the unit box, each ball
with its own radius and mass (mass proportional to area, so heavier balls look bigger). Balls bounce
elastically off the four walls and off each other. A ball-ball collision is the exact 2-D elastic collision
of two discs: the velocity components along the line of centres are exchanged as in a 1-D collision of masses
m_i and m_j, the tangential components are kept, so momentum and kinetic energy are conserved.

To resolve all pairs without a Python loop over pairs *and* without two collisions fighting over one ball, the
pairs are grouped into the N-1 rounds of a round-robin tournament ("circle method"): within a round no ball
appears twice, so the whole round is one vectorized update over (S, N/2) pairs. Each frame is split into
``substeps`` small steps so that balls cannot tunnel through each other.

Only positions and velocities are stored, as float32 arrays (S, T, N, 2) (about 80 MB for 50k sequences of
51 frames of 4 balls). Frames are drawn by :func:`render` in torch, on the training device, from positions and
radii: (B, T, 1, size, size) in [0, 1], white discs with a one-pixel anti-aliased edge on black. An optional
vertical *curtain* band is drawn in white on top of the balls, so a ball behind it is invisible.

Shapes: S sequences, B batch, T frames, N balls (padded to the largest count when the count varies;
``present`` marks the real balls), H = W = size pixels. Coordinates are (x, y) in [0, 1]: x is the column,
y the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from minirims._validate import fmt_shape

__all__ = [
    "Balls",
    "BallsTensors",
    "SETS",
    "bounces",
    "elastic_collision",
    "make_balls",
    "make_sets",
    "render",
    "round_robin",
    "simulate",
]

#: The paper's test sets: 4 balls (as in training), 6-8 balls (out of distribution), 4 balls behind a curtain.
SETS: dict[str, dict] = {
    "4 balls": {"n_balls": 4, "curtain": None},
    "6-8 balls": {"n_balls": (6, 8), "curtain": None},
    "curtain": {"n_balls": 4, "curtain": (0.4, 0.6)},
}


# ----------------------------------------------------------------------------------------------- validation
def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def _range(name: str, value: object, lo: float, hi: float) -> tuple[float, float]:
    """A pair (a, b) with lo <= a <= b <= hi."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name}: expected a pair (a, b) with {lo} <= a <= b <= {hi}, got {value!r}")
    return float(value[0]), float(value[1])


def _curtain(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not 0.0 <= value[0] < value[1] <= 1.0:
        raise ValueError(f"curtain: expected None or a band (x0, x1) with 0 <= x0 < x1 <= 1, got {value!r}")
    return float(value[0]), float(value[1])


def _array(name: str, x: object, shape: tuple) -> np.ndarray:
    """Check a numpy array's rank and fixed dims (ints in ``shape``; letters are free)."""
    expected = fmt_shape(shape)
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of shape {expected}, got {type(x).__name__}")
    fixed = [(got, want) for got, want in zip(x.shape, shape, strict=False) if isinstance(want, int)]
    if x.ndim != len(shape) or any(got != want for got, want in fixed):
        raise ValueError(f"{name}: expected shape {expected}, got {x.shape}")
    return x


# ----------------------------------------------------------------------------------------------- physics
def round_robin(n_balls: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``n_balls`` balls grouped into rounds in which no ball appears twice.

    Circle method: fix ball 0, rotate the others. With an odd count a dummy ball is added and its pairs
    dropped.

    Returns:
        i, j: int arrays (R, P) of ball indices, i < j; R = N-1 rounds (N if N is odd) of P = N//2 pairs.
    """
    n = _positive_int("n_balls", n_balls)
    m = n + (n % 2)
    others = list(range(1, m))
    rounds_i, rounds_j = [], []
    for _ in range(m - 1):
        ring = [0, *others]
        pairs = [(ring[a], ring[m - 1 - a]) for a in range(m // 2)]
        pairs = [(min(a, b), max(a, b)) for a, b in pairs if a < n and b < n]
        rounds_i.append([a for a, _ in pairs])
        rounds_j.append([b for _, b in pairs])
        others = others[-1:] + others[:-1]
    if n < 2:
        return np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0), dtype=np.int64)
    return np.array(rounds_i, dtype=np.int64), np.array(rounds_j, dtype=np.int64)


def elastic_collision(
    x_i: np.ndarray, x_j: np.ndarray, v_i: np.ndarray, v_j: np.ndarray, m_i: np.ndarray, m_j: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Velocities after an elastic collision of two discs touching at positions ``x_i``, ``x_j``.

    Along the unit normal n = (x_j - x_i)/|x_j - x_i| the two balls exchange momentum like a 1-D elastic
    collision; the tangential components are unchanged::

        v_i' = v_i + 2 m_j / (m_i + m_j) * <v_j - v_i, n> n
        v_j' = v_j - 2 m_i / (m_i + m_j) * <v_j - v_i, n> n

    Args:
        x_i, x_j, v_i, v_j: (..., 2) positions and velocities.
        m_i, m_j: (...) masses.

    Returns:
        v_i', v_j' (..., 2). Total momentum m v and kinetic energy m |v|^2 / 2 are conserved.
    """
    d = x_j - x_i
    dist2 = np.maximum((d * d).sum(-1, keepdims=True), 1e-18)
    rel = ((v_j - v_i) * d).sum(-1, keepdims=True) / dist2  # <v_j - v_i, n> / |d|
    total = (m_i + m_j)[..., None]
    return v_i + (2 * m_j[..., None] / total) * rel * d, v_j - (2 * m_i[..., None] / total) * rel * d


def simulate(
    positions: np.ndarray,
    velocities: np.ndarray,
    radii: np.ndarray,
    masses: np.ndarray,
    n_frames: int,
    substeps: int = 8,
    present: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the physics from the given initial state.

    Each frame advances time by 1 in ``substeps`` equal steps (velocities are in box units per frame). One
    step: move; resolve ball-ball contacts round by round (approaching pairs that touch collide elastically;
    any overlap is then removed by moving both balls apart along the normal, the lighter one further, which
    keeps the centre of mass); reflect off the walls.

    Args:
        positions: (S, N, 2) initial positions, inside the box.
        velocities: (S, N, 2) initial velocities (box units per frame).
        radii: (S, N) radii (> 0 for present balls).
        masses: (S, N) masses (> 0).
        n_frames: T, frames to record; frame 0 is the initial state.
        substeps: physics steps per frame.
        present: optional (S, N) bool; absent balls neither move nor collide (padding for varying counts).

    Returns:
        positions, velocities: float32 (S, T, N, 2).
    """
    _array("positions", positions, ("S", "N", 2))
    s, n, _ = positions.shape
    _array("velocities", velocities, (s, n, 2))
    _array("radii", radii, (s, n))
    _array("masses", masses, (s, n))
    n_frames = _positive_int("n_frames", n_frames)
    substeps = _positive_int("substeps", substeps)
    if present is None:
        present = np.ones((s, n), dtype=bool)
    _array("present", present, (s, n))
    if np.any(masses[present] <= 0):
        raise ValueError(f"masses: expected > 0 for present balls, got min {masses[present].min()}")
    if np.any(radii[present] <= 0):
        raise ValueError(f"radii: expected > 0 for present balls, got min {radii[present].min()}")

    # Internal layout: one float64 (N, S) array per coordinate, so that picking balls picks contiguous rows.
    px, py = (positions[..., k].T.astype(np.float64) for k in (0, 1))
    vx, vy = (np.where(present, velocities[..., k], 0.0).T.astype(np.float64) for k in (0, 1))
    r, m = radii.T.astype(np.float64), masses.T.astype(np.float64)
    lo, hi = r, 1.0 - r
    h = 1.0 / substeps
    rounds_i, rounds_j = round_robin(n)  # (R, P)
    n_rounds, per_round = rounds_i.shape
    pair_i, pair_j = rounds_i.ravel(), rounds_j.ravel()  # all pairs, round by round
    both = present.T[pair_i] & present.T[pair_j]
    reach2 = np.where(both, (r[pair_i] + r[pair_j]) ** 2, -1.0)  # (pairs, S); absent pairs never touch

    out = np.empty((n_frames, 4, n, s), dtype=np.float32)
    out[0] = px, py, vx, vy
    for t in range(1, n_frames):
        for _ in range(substeps):
            px += vx * h
            py += vy * h
            if n_rounds:
                dx, dy = px[pair_j] - px[pair_i], py[pair_j] - py[pair_i]
                p_idx, s_idx = np.nonzero(dx * dx + dy * dy < reach2)  # few contacts: go sparse
                bounds = np.searchsorted(p_idx // per_round, np.arange(n_rounds + 1))
                for a, b in zip(
                    bounds[:-1], bounds[1:], strict=False
                ):  # rounds in order; no ball twice in a round
                    if a < b:
                        p, q = p_idx[a:b], s_idx[a:b]
                        _contact(px, py, vx, vy, r, m, pair_i[p], pair_j[p], q)
            for x, v in ((px, vx), (py, vy)):
                below, above = x < lo, x > hi
                if below.any():
                    x[below] = 2 * lo[below] - x[below]
                    v[below] = np.abs(v[below])
                if above.any():
                    x[above] = 2 * hi[above] - x[above]
                    v[above] = -np.abs(v[above])
        out[t] = px, py, vx, vy
    positions_out = np.ascontiguousarray(out[:, :2].transpose(3, 0, 2, 1))
    velocities_out = np.ascontiguousarray(out[:, 2:].transpose(3, 0, 2, 1))
    return positions_out, velocities_out


def _contact(px, py, vx, vy, r, m, i, j, q) -> None:
    """Resolve contacts between balls i[c] and j[c] of sequence q[c], in place (arrays (N, S), no repeats).

    Approaching pairs collide elastically; any overlap is then removed by moving both balls apart along the
    normal, the lighter one further, which keeps the centre of mass where it was.
    """
    x_i, x_j = np.stack([px[i, q], py[i, q]], -1), np.stack([px[j, q], py[j, q]], -1)
    v_i, v_j = np.stack([vx[i, q], vy[i, q]], -1), np.stack([vx[j, q], vy[j, q]], -1)
    m_i, m_j = m[i, q], m[j, q]
    d = x_j - x_i
    dist = np.sqrt((d * d).sum(-1))
    approaching = (((v_j - v_i) * d).sum(-1) < 0)[:, None]
    new_i, new_j = elastic_collision(x_i, x_j, v_i, v_j, m_i, m_j)
    v_i, v_j = np.where(approaching, new_i, v_i), np.where(approaching, new_j, v_j)
    depth = np.maximum(r[i, q] + r[j, q] - dist, 0.0) / np.maximum(dist, 1e-12) / (m_i + m_j)
    x_i = x_i - d * (depth * m_j)[:, None]
    x_j = x_j + d * (depth * m_i)[:, None]
    px[i, q], py[i, q], vx[i, q], vy[i, q] = x_i[:, 0], x_i[:, 1], v_i[:, 0], v_i[:, 1]
    px[j, q], py[j, q], vx[j, q], vy[j, q] = x_j[:, 0], x_j[:, 1], v_j[:, 0], v_j[:, 1]


# ----------------------------------------------------------------------------------------------- data sets
@dataclass
class Balls:
    """A set of simulated sequences (numpy, float32). Frames are rendered on demand by :meth:`frames`.

    Attributes:
        positions: (S, T, N, 2) ball centres in [0, 1].
        velocities: (S, T, N, 2) box units per frame.
        radii: (S, N); masses: (S, N) (proportional to area); present: (S, N) bool, True for real balls.
        curtain: None or (x0, x1), the occluding vertical band.
    """

    positions: np.ndarray
    velocities: np.ndarray
    radii: np.ndarray
    masses: np.ndarray
    present: np.ndarray
    curtain: tuple[float, float] | None = None

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def n_frames(self) -> int:
        return self.positions.shape[1]

    def to(self, device: torch.device | str | None = None) -> BallsTensors:
        """The set as torch tensors on ``device`` (what :func:`render` needs), ready for batching."""
        return BallsTensors(
            torch.as_tensor(self.positions, device=device),
            torch.as_tensor(self.radii, device=device),
            torch.as_tensor(self.present, device=device),
            self.curtain,
        )

    def frames(
        self, index: slice | np.ndarray | list[int] | None = None, size: int = 64, device=None
    ) -> Tensor:
        """Render sequences ``index`` (all when None): (B, T, 1, size, size) float32 on ``device``."""
        idx = slice(None) if index is None else index
        return render(
            torch.as_tensor(self.positions[idx], device=device),
            torch.as_tensor(self.radii[idx], device=device),
            size=size,
            present=torch.as_tensor(self.present[idx], device=device),
            curtain=self.curtain,
        )


class BallsTensors:
    """A :class:`Balls` set moved to a torch device; ``batch(index, size)`` renders (B, T, 1, size, size)."""

    def __init__(
        self, positions: Tensor, radii: Tensor, present: Tensor, curtain: tuple[float, float] | None
    ):
        self.positions, self.radii, self.present, self.curtain = positions, radii, present, curtain

    def __len__(self) -> int:
        return self.positions.shape[0]

    def batch(self, index: Tensor | slice, size: int = 64, n_frames: int | None = None) -> Tensor:
        """Frames of sequences ``index`` (first ``n_frames`` frames, all when None): (B, T, 1, size, size)."""
        pos = self.positions[index]
        if n_frames is not None:
            pos = pos[:, :n_frames]
        return render(pos, self.radii[index], size=size, present=self.present[index], curtain=self.curtain)


def make_balls(
    n_sequences: int,
    n_balls: int | tuple[int, int] = 4,
    n_frames: int = 51,
    seed: int | np.random.SeedSequence = 0,
    *,
    radius_range: tuple[float, float] = (0.06, 0.1),
    speed_range: tuple[float, float] = (0.02, 0.05),
    substeps: int = 8,
    burn_in: int = 5,
    curtain: tuple[float, float] | None = None,
) -> Balls:
    """Simulate ``n_sequences`` sequences of bouncing balls.

    Initial state: the box is cut into a g x g grid (g = ceil(sqrt(N))); each ball gets its own random cell
    and a random position inside it, so balls start apart without rejection sampling. Radii are uniform in
    ``radius_range``, masses proportional to r^2, directions uniform, speeds uniform in ``speed_range`` (box
    units per frame). ``burn_in`` frames are simulated and dropped so that the grid start is forgotten.

    Args:
        n_sequences: S.
        n_balls: N, or (lo, hi) for a count drawn uniformly per sequence (arrays padded to hi).
        n_frames: T frames per sequence.
        seed: int or numpy SeedSequence; the same seed gives the same sequences.
        radius_range, speed_range: (min, max).
        substeps: physics steps per frame.
        burn_in: frames simulated before the first recorded frame.
        curtain: None or the occluding band (x0, x1), stored with the set and drawn by the renderer.

    Returns:
        :class:`Balls` with positions/velocities (S, T, N, 2) float32.
    """
    s = _positive_int("n_sequences", n_sequences)
    if isinstance(n_balls, (tuple, list)):
        ok = len(n_balls) == 2 and all(isinstance(c, int) and not isinstance(c, bool) for c in n_balls)
        if not ok or not 1 <= n_balls[0] <= n_balls[1]:
            raise ValueError(
                f"n_balls: expected an int >= 1 or a pair (lo, hi) with 1 <= lo <= hi, got {n_balls!r}"
            )
        lo_n, hi_n = n_balls
    else:
        lo_n = hi_n = _positive_int("n_balls", n_balls)
    n_frames = _positive_int("n_frames", n_frames)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in: expected an int >= 0, got {burn_in!r}")
    g = math.ceil(math.sqrt(hi_n))
    r_lo, r_hi = _range("radius_range", radius_range, 1e-3, 0.5 / g)
    v_lo, v_hi = _range("speed_range", speed_range, 0.0, 0.5)
    curtain = _curtain(curtain)
    if not isinstance(seed, (int, np.integer, np.random.SeedSequence)) or isinstance(seed, bool):
        raise ValueError(f"seed: expected an int or numpy SeedSequence, got {seed!r}")
    rng = np.random.default_rng(seed)

    n = hi_n
    count = rng.integers(lo_n, hi_n + 1, size=s)
    present = np.arange(n)[None, :] < count[:, None]
    radii = rng.uniform(r_lo, r_hi, size=(s, n))
    masses = (radii / r_hi) ** 2
    cells = np.argsort(rng.random((s, g * g)), axis=1)[:, :n]  # distinct random cells per sequence
    cell_xy = np.stack([cells % g, cells // g], axis=-1).astype(np.float64)
    slack = (0.5 / g - radii)[..., None]
    positions = (cell_xy + 0.5) / g + rng.uniform(-1.0, 1.0, size=(s, n, 2)) * slack
    angle = rng.uniform(0.0, 2 * math.pi, size=(s, n))
    speed = rng.uniform(v_lo, v_hi, size=(s, n))
    velocities = np.stack([np.cos(angle), np.sin(angle)], axis=-1) * speed[..., None]
    radii = np.where(present, radii, 0.0)

    if burn_in:
        pos, vel = simulate(positions, velocities, radii, masses, burn_in + 1, substeps, present)
        positions, velocities = pos[:, -1], vel[:, -1]
    pos, vel = simulate(positions, velocities, radii, masses, n_frames, substeps, present)
    return Balls(
        pos,
        vel,
        radii.astype(np.float32),
        masses.astype(np.float32),
        present,
        curtain,
    )


def bounces(balls: Balls) -> dict[str, np.ndarray]:
    """When the balls bounce: per sequence and frame, how many balls hit a wall and how many hit a ball.

    A ball "bounces at frame t" when its velocity changed between frames t-1 and t (a collision happened
    during that frame's physics steps); it counts as a ball-ball bounce when another ball is within touching
    distance (sum of radii plus the distance both travel in a frame) at frame t-1 or t, else as a wall
    bounce (an approximation: a wall hit right next to another ball counts as a ball hit).

    Returns:
        {"wall": (S, T) int, "ball": (S, T) int}; frame 0 is always 0 (no velocity before it).
    """
    if not isinstance(balls, Balls):
        raise ValueError(f"balls: expected a Balls set, got {type(balls).__name__}")
    pos, vel = balls.positions.astype(np.float64), balls.velocities.astype(np.float64)
    s, t, n, _ = pos.shape
    changed = np.zeros((s, t, n), dtype=bool)
    changed[:, 1:] = np.linalg.norm(vel[:, 1:] - vel[:, :-1], axis=-1) > 1e-6
    changed &= balls.present[:, None, :]
    near = np.zeros((s, t, n), dtype=bool)
    if n > 1:
        speed = np.linalg.norm(vel, axis=-1)  # (S, T, N)
        reach = balls.radii[:, None, :, None] + balls.radii[:, None, None, :]  # (S, 1, N, N)
        reach = reach + speed[:, :, :, None] + speed[:, :, None, :]
        dist = np.linalg.norm(pos[:, :, :, None] - pos[:, :, None, :], axis=-1)  # (S, T, N, N)
        pair = (dist <= reach) & ~np.eye(n, dtype=bool)
        pair &= balls.present[:, None, :, None] & balls.present[:, None, None, :]
        touching = pair.any(-1)
        near[:, 1:] = touching[:, 1:] | touching[:, :-1]
    ball = changed & near
    wall = changed & ~near
    return {"wall": wall.sum(-1), "ball": ball.sum(-1)}


def make_sets(
    n_train: int,
    n_test: int,
    n_frames: int = 51,
    seed: int = 0,
    n_val: int = 0,
    test_frames: int | None = None,
    **kwargs,
) -> dict[str, Balls]:
    """The training set, an optional validation set and the three test sets of :data:`SETS`.

    Every set comes from its own child of ``SeedSequence(seed)``, so changing one size changes no other set,
    and a longer video starts with the frames of the shorter one (the simulation draws nothing per frame).

    Args:
        n_frames: frames per training video.
        test_frames: frames per validation and test video (None: ``n_frames``).

    Returns:
        {"train": 4 balls, ["val": 4 balls,] "4 balls": ..., "6-8 balls": ..., "curtain": ...};
        ``kwargs`` go to :func:`make_balls`.
    """
    _positive_int("n_train", n_train)
    _positive_int("n_test", n_test)
    test_frames = n_frames if test_frames is None else _positive_int("test_frames", test_frames)
    if isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 0:
        raise ValueError(f"n_val: expected an int >= 0, got {n_val!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    children = np.random.SeedSequence(int(seed)).spawn(2 + len(SETS))
    sets = {"train": make_balls(n_train, 4, n_frames, children[0], **kwargs)}
    if n_val:
        sets["val"] = make_balls(n_val, 4, test_frames, children[1], **kwargs)
    for child, (name, spec) in zip(children[2:], SETS.items(), strict=False):
        spec_kwargs = dict(curtain=spec["curtain"], **kwargs)
        sets[name] = make_balls(n_test, spec["n_balls"], test_frames, child, **spec_kwargs)
    return sets


# ----------------------------------------------------------------------------------------------- rendering
def render(
    positions: Tensor,
    radii: Tensor,
    size: int = 64,
    present: Tensor | None = None,
    curtain: tuple[float, float] | None = None,
) -> Tensor:
    """Draw white discs on black, on the device of ``positions``.

    Pixel (row, col) has its centre at ((col + 0.5)/size, (row + 0.5)/size). A disc covers a pixel fully when
    the centre lies inside it by half a pixel, with a linear one-pixel ramp at the edge (anti-aliasing); where
    discs overlap the brightest wins. The curtain band x0 <= x < x1 is then painted white (value 1), hiding
    the balls behind it.

    Args:
        positions: (B, T, N, 2) float centres (x, y) in box units.
        radii: (B, N) float radii.
        size: H = W in pixels.
        present: optional (B, N) bool; absent balls are not drawn.
        curtain: None or (x0, x1).

    Returns:
        (B, T, 1, size, size) frames in [0, 1], dtype of ``positions``.
    """
    if not isinstance(positions, Tensor) or positions.dim() != 4 or positions.shape[-1] != 2:
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions: expected a tensor of shape (B, T, N, 2), got {got}")
    if not positions.is_floating_point():
        raise ValueError(f"positions: expected a floating-point tensor, got dtype {positions.dtype}")
    b, t, n, _ = positions.shape
    if not isinstance(radii, Tensor) or tuple(radii.shape) != (b, n):
        got = tuple(radii.shape) if isinstance(radii, Tensor) else type(radii).__name__
        raise ValueError(f"radii: expected shape ({b}, {n}), got {got}")
    size = _positive_int("size", size)
    if present is not None and (not isinstance(present, Tensor) or tuple(present.shape) != (b, n)):
        got = tuple(present.shape) if isinstance(present, Tensor) else type(present).__name__
        raise ValueError(f"present: expected a bool tensor of shape ({b}, {n}), got {got}")
    curtain = _curtain(curtain)

    centres = (torch.arange(size, device=positions.device, dtype=positions.dtype) + 0.5) / size
    dx2 = (positions[..., 0, None] - centres).square()  # (B, T, N, W)
    dy2 = (positions[..., 1, None] - centres).square()  # (B, T, N, H)
    r = radii.to(positions.dtype)
    if present is not None:
        r = torch.where(present, r, torch.full_like(r, -1.0))  # a negative radius draws nothing
    frame = positions.new_zeros(b, t, size, size)
    for i in range(n):  # a few balls: loop, so memory stays (B, T, H, W)
        dist = (dy2[:, :, i, :, None] + dx2[:, :, i, None, :]).sqrt()
        disc = ((r[:, i, None, None, None] - dist) * size + 0.5).clamp(0.0, 1.0)
        frame = torch.maximum(frame, disc)
    if curtain is not None:
        band = (centres >= curtain[0]) & (centres < curtain[1])
        frame = torch.where(band, torch.ones_like(frame), frame)
    return frame.unsqueeze(2)
