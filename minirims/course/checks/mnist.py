"""Checks for notebook 07: the nearest-neighbour resize that makes MNIST digits of another resolution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minirims.course.checks._core import (
    _call,
    _expect_tensor,
    _failure,
    _first_match,
    _gen,
    _require_callable,
    passed,
)
from minirims.experiments.data.mnist import resize_nearest

__all__ = ["check_resize_nearest"]

SEED = 707


def _with_rows(images: Tensor, size: int, index: Callable[[int, int], Tensor]) -> Tensor:
    rows = index(images.shape[-2], size).clamp(0, images.shape[-2] - 1)
    cols = index(images.shape[-1], size).clamp(0, images.shape[-1] - 1)
    return images.index_select(-2, rows).index_select(-1, cols)


def _mistakes(images: Tensor, size: int) -> list[tuple[str, Callable[[], Tensor]]]:
    i = torch.arange(size)
    return [
        (
            "it matches floor(i * H / S), the top-left rule of F.interpolate(mode='nearest'); take the pixel "
            "under the *centre* of output pixel i: floor((i + 1/2) * H / S) = (2*i + 1) * H // (2*S)",
            lambda: _with_rows(images, size, lambda h, s: (torch.arange(s) * h) // s),
        ),
        (
            "it matches rounding i * H / S to the nearest integer; the rule is floor((i + 1/2) * H / S)",
            lambda: _with_rows(images, size, lambda h, s: torch.round(torch.arange(s) * h / s).long()),
        ),
        (
            "it matches evenly spaced indices from 0 to H - 1 (linspace); the rule is "
            "floor((i + 1/2) * H / S), which never reaches the border pixels exactly",
            lambda: _with_rows(images, size, lambda h, s: torch.linspace(0, h - 1, s).round().long()),
        ),
        (
            "it matches the rows resized but not the columns (or the reverse): index both dims",
            lambda: images.index_select(-2, (2 * i + 1) * images.shape[-2] // (2 * size)),
        ),
        (
            "it is the transpose of the right answer: rows are dim -2, columns dim -1",
            lambda: resize_nearest(images, size).transpose(-2, -1),
        ),
    ]


def check_resize_nearest(fn: Callable[..., Any]) -> None:
    """``fn(images (N, H, W) uint8, size) -> (N, size, size) uint8`` must match the package's resize:
    nearest neighbour with the pixel-centre rule, ``out[i, j] = images[r(i), r(j)]``,
    ``r(i) = floor((i + 1/2) H / S)``."""
    _require_callable(fn)
    name = "resize_nearest"
    gen = _gen(SEED)
    cases = []
    for size in (14, 16, 19, 24, 28):
        images = torch.randint(0, 256, (3, 28, 28), generator=gen, dtype=torch.int64).to(torch.uint8)
        cases.append((f"28x28 -> {size}x{size}", images, size))
    cases.append(("20x20 -> 7x7", torch.randint(0, 256, (2, 20, 20), generator=gen).to(torch.uint8), 7))
    for label, images, size in cases:
        got = _call(name, fn, (images.clone(), size), label)
        expected = resize_nearest(images, size)
        if not isinstance(got, Tensor) and hasattr(got, "shape"):
            got = torch.as_tensor(got)
        hint = _first_match(got, _mistakes(images, size), exact=True)
        why = "; index the image, do not interpolate"
        _expect_tensor(
            f"{name} ({label})",
            got,
            expected,
            " (N, S, S)",
            " (the pixels themselves, copied)",
            hint,
            dtype_why=why,
        )
        if torch.equal(got, expected):
            continue
        n, r, c = torch.nonzero(got != expected)[0].tolist()
        raise _failure(
            f"{name} ({label}): image {n}, output pixel ({r}, {c}): expected {int(expected[n, r, c])}, got "
            f"{int(got[n, r, c])}",
            hint,
        )
    passed(name, f"{len(cases)} cases (28x28 to 14, 16, 19, 24 and 28; 20x20 to 7)")
