"""Scores of a predicted video that match what its picture shows: sharp balls, in the right places.

Per-pixel BCE is a likelihood: under doubt its best guess is the blurred average of every future the model
thinks possible, a grey smear. A learner looks at the frames and sees balls, or none. Two scores say that::

    foreground_f1(pred, truth, threshold=0.5, ignore=None) -> (...,)   # pixels > threshold, as F1
    blob_centres(mask, min_pixels=2) -> list of (k, 2) arrays          # connected components' centres
    assignment(cost) -> (rows, cols)                                   # optimal matching (Hungarian)
    tracking_error(found, true, penalty) -> float                      # matched distance, misses, extras
    score_frames(pred, truth, positions, present, curtain=None, ...) -> {"f1": (B, F), "track": (B, F)}

*Foreground F1*: threshold prediction and truth at 0.5; F1 of the predicted foreground pixels against the
true ones (1 when both are empty, 0 when only one is). A grey blur has no pixel above 0.5: F1 0.

*Tracking error*: the predicted foreground falls into blobs (8-connected components of at least
``min_pixels`` pixels); each blob's centre is matched one-to-one to the simulator's true ball centres so that
the summed distance is smallest, every distance capped at ``penalty``; every ball without a blob and every
blob without a ball costs ``penalty``. The total is divided by the number of true balls: the mean distance,
in pixels, from a ball to where the prediction draws it (``penalty`` when it draws nothing near it). Touching
balls form one blob, in the truth as in a prediction, so even a perfect prediction scores above 0 then.

Behind a curtain (the occluding band of the curtain test set) nothing is scored: its pixels, and one column
on each side of it (where a model's drawing of the curtain's edge bleeds), are left out of F1 and of the
blobs, in the prediction and in the truth alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PENALTY",
    "assignment",
    "blob_centres",
    "curtain_band",
    "foreground_f1",
    "score_frames",
    "tracking_error",
]

#: the tracking error of a missed or an extra ball, as a fraction of the frame's width (6.4 pixels at 32x32:
#: about two ball radii)
PENALTY = 0.2


def _frames(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 2 or not (x.is_floating_point() or x.dtype == torch.bool):
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a float or bool tensor of shape (..., H, W), got {got}")
    return x


def curtain_band(size: int, curtain: tuple[float, float] | None, device=None) -> Tensor | None:
    """The pixel columns the curtain covers, as a (size,) bool mask (None without a curtain); the same
    columns :func:`~minirims.experiments.data.balls.render` paints over."""
    if curtain is None:
        return None
    centres = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) / size
    return (centres >= curtain[0]) & (centres < curtain[1])


def foreground_f1(
    pred: Tensor, truth: Tensor, threshold: float = 0.5, ignore: Tensor | None = None
) -> Tensor:
    """F1 of the pixels above ``threshold`` in ``pred`` against those in ``truth``, per frame.

    Args:
        pred, truth: (..., H, W) probabilities (or bool masks), the same shape.
        threshold: in (0, 1).
        ignore: None, or a bool mask broadcastable to (H, W) of pixels left out (e.g. a curtain band).

    Returns:
        (...,) float32: 2 TP / (2 TP + FP + FN); 1 where both have no foreground, 0 where only one has.
    """
    pred, truth = _frames("pred", pred), _frames("truth", truth)
    if pred.shape != truth.shape:
        raise ValueError(f"truth: expected the shape of pred {tuple(pred.shape)}, got {tuple(truth.shape)}")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
        raise ValueError(f"threshold: expected a number in (0, 1), got {threshold!r}")
    p, t = pred > threshold, truth > threshold
    if ignore is not None:
        p, t = p & ~ignore, t & ~ignore
    tp = (p & t).sum(dim=(-2, -1)).float()
    wrong = (p ^ t).sum(dim=(-2, -1)).float()
    both = 2 * tp + wrong
    return torch.where(both > 0, 2 * tp / both.clamp(min=1), torch.ones_like(tp))


def _labels(mask: Tensor) -> Tensor:
    """8-connected components of a (N, H, W) bool mask: (N, H, W) int64, 0 off the mask, else the largest
    flat pixel index (+1) of the component (unique within each image)."""
    n, h, w = mask.shape
    dtype = torch.int16 if h * w < 2**15 else torch.int32
    index = torch.arange(1, h * w + 1, device=mask.device, dtype=dtype).view(1, h, w)
    labels = torch.where(mask, index, torch.zeros((), device=mask.device, dtype=dtype))
    while True:  # spread the largest label over each component: as many rounds as its diameter in pixels
        p = F.pad(labels, (1, 1, 1, 1))
        rows = torch.maximum(torch.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])  # 3x3 max, separably
        grown = torch.where(
            mask, torch.maximum(torch.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:]), labels
        )
        if torch.equal(grown, labels):
            return labels.long()
        labels = grown


def blob_centres(mask: Tensor, min_pixels: int = 2) -> list[np.ndarray]:
    """Centres of the blobs (8-connected components of at least ``min_pixels`` pixels) of each image.

    Args:
        mask: (N, H, W) bool.
        min_pixels: positive int; smaller blobs (a stray pixel) are not counted.

    Returns:
        N float64 arrays of shape (k, 2): the blobs' centres (x, y) in box units ([0, 1], as the simulator's
        positions: pixel j's centre is at (j + 0.5) / W).
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 3:
        got = f"shape {tuple(mask.shape)}, dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask)
        raise ValueError(f"mask: expected a bool tensor of shape (N, H, W), got {got}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
        raise ValueError(f"min_pixels: expected a positive int, got {min_pixels!r}")
    n, h, w = mask.shape
    labels = _labels(mask).view(n, -1)
    image, flat = torch.nonzero(labels, as_tuple=True)
    out = [np.zeros((0, 2)) for _ in range(n)]
    if len(image) == 0:
        return out
    key = image * (h * w + 1) + labels[image, flat]
    uniq, inverse = torch.unique(key, return_inverse=True)
    count = torch.zeros(len(uniq), device=mask.device).index_add_(0, inverse, torch.ones_like(flat).float())
    xs = torch.zeros(len(uniq), device=mask.device).index_add_(0, inverse, (flat % w).float() + 0.5)
    ys = torch.zeros(len(uniq), device=mask.device).index_add_(0, inverse, (flat // w).float() + 0.5)
    keep = count >= min_pixels
    owner = (uniq // (h * w + 1))[keep].cpu().numpy()
    centres = torch.stack([xs[keep] / (count[keep] * w), ys[keep] / (count[keep] * h)], dim=1)
    centres = centres.double().cpu().numpy()
    for i in np.unique(owner):
        out[i] = centres[owner == i]
    return out


def assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matching of rows to columns with the smallest summed cost (Hungarian method).

    Args:
        cost: (n, m) finite floats; min(n, m) pairs are matched.

    Returns:
        (rows, cols), int arrays of length min(n, m), rows ascending: row ``rows[i]`` goes to ``cols[i]``.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or not np.all(np.isfinite(cost)):
        raise ValueError(f"cost: expected a 2-d array of finite numbers, got shape {cost.shape}")
    if cost.shape[0] > cost.shape[1]:
        cols, rows = assignment(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)  # potentials of rows and columns (index 0: a dummy)
    owner = np.zeros(m + 1, dtype=int)  # owner[j]: the row (1-based) column j is matched to; 0 if none
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):  # add row i, then repair along the shortest augmenting path
        owner[0], j0 = i, 0
        best = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (reduced < best[1:])
            best[1:][better] = reduced[better]
            way[1:][better] = j0
            masked = np.where(free, best[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            best[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:]) + 1
    rows = owner[cols] - 1
    order = np.argsort(rows)
    return rows[order], cols[order] - 1


def tracking_error(found: np.ndarray, true: np.ndarray, penalty: float) -> float:
    """Mean distance from each true ball to the blob matched to it, with misses and extras at ``penalty``.

    Args:
        found: (k, 2) blob centres; true: (m, 2) ball centres (same units as ``penalty``).
        penalty: > 0, the cost of a missed or an extra ball and the cap of a matched distance.

    Returns:
        (sum of capped matched distances + penalty * |k - m|) / max(m, 1).
    """
    found, true = np.asarray(found, dtype=np.float64), np.asarray(true, dtype=np.float64)
    for name, x in (("found", found), ("true", true)):
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"{name}: expected an array of shape (k, 2), got shape {x.shape}")
    if not (isinstance(penalty, (int, float)) and not isinstance(penalty, bool) and penalty > 0):
        raise ValueError(f"penalty: expected a number > 0, got {penalty!r}")
    k, m = len(found), len(true)
    total = penalty * abs(k - m)
    if k and m:  # capped costs: matching a pair never costs more than leaving both out, so match min(k, m)
        dist = np.minimum(np.linalg.norm(found[:, None] - true[None], axis=-1), penalty)
        rows, cols = assignment(dist)
        total += float(dist[rows, cols].sum())
    return total / max(m, 1)


def score_frames(
    pred: Tensor,
    truth: Tensor,
    curtain: Sequence[float] | None = None,
    threshold: float = 0.5,
    penalty: float = PENALTY,
    min_pixels: int = 2,
) -> dict[str, np.ndarray]:
    """Foreground F1 and tracking error of every predicted frame of a batch of videos.

    The true balls are the blobs of the true frame (so a perfect prediction scores F1 1 and error 0, and
    touching balls are one ball in both); the predicted ones, the blobs of the prediction.

    Args:
        pred: (B, F, 1, H, W) predicted probabilities; truth: the true frames, same shape.
        curtain: None or (x0, x1), the occluding band in box units (left out of both scores, with one
            column on each side).
        threshold: foreground above it; penalty: fraction of the frame width (:data:`PENALTY`);
        min_pixels: the smallest blob counted.

    Returns:
        {"f1": (B, F), "track": (B, F) in pixels of the frame} float64 arrays.
    """
    pred, truth = _frames("pred", pred), _frames("truth", truth)
    if pred.dim() != 5 or pred.shape[2] != 1 or pred.shape != truth.shape:
        raise ValueError(
            f"pred, truth: expected two tensors of shape (B, F, 1, H, W), got {tuple(pred.shape)} and "
            f"{tuple(truth.shape)}"
        )
    if not (isinstance(penalty, (int, float)) and not isinstance(penalty, bool) and 0 < penalty <= 1):
        raise ValueError(f"penalty: expected a fraction of the frame width in (0, 1], got {penalty!r}")
    b, f, _, h, w = pred.shape
    band = curtain_band(w, tuple(curtain) if curtain is not None else None, pred.device)
    if band is not None:  # and one column on each side: a model's curtain edge may bleed into it
        band = band | F.pad(band[1:], (0, 1)) | F.pad(band[:-1], (1, 0))
    ignore = None if band is None else band.view(1, w).expand(h, w)
    f1 = foreground_f1(pred[:, :, 0], truth[:, :, 0], threshold, ignore)
    masks = [x[:, :, 0] > threshold for x in (pred, truth)]
    if ignore is not None:
        masks = [m & ~ignore for m in masks]
    found, true = (blob_centres(m.reshape(b * f, h, w), min_pixels) for m in masks)
    track = np.array([tracking_error(p, t, penalty) for p, t in zip(found, true, strict=True)]) * w
    return {"f1": f1.double().cpu().numpy(), "track": track.reshape(b, f)}
