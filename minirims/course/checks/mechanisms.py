"""Checks for notebook 09 (why RIMs work): a random selection of k modules, and foreground shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minirims.course.checks._core import (
    ExerciseFailure,
    _call,
    _expect_tensor,
    _failure,
    _first_match,
    _require_callable,
    passed,
)

__all__ = ["check_foreground_share", "check_random_mask"]


# --------------------------------------------------------------------------------------- 9.1 random_mask
def check_random_mask(fn: Callable[..., Any]) -> None:
    """``fn(batch, n, k, generator) -> (batch, n)`` bool: exactly ``k`` modules per row, chosen uniformly at
    random with ``generator`` (the same generator state gives the same mask)."""
    _require_callable(fn)
    name = "random_mask"
    cases = [(4000, 6, 4, 11), (3000, 5, 1, 12), (500, 3, 3, 13)]
    for b, n, k, seed in cases:
        label = f"batch={b}, n={n}, k={k}"
        prefix = f"{name} ({label})"
        got = _call(name, fn, (b, n, k, torch.Generator().manual_seed(seed)), label)
        _expect_tensor(prefix, got, torch.zeros(b, n, dtype=torch.bool), " (batch, n)", " (True: active)")
        per_row = got.sum(1)
        if not bool((per_row == k).all()):
            lo, hi = int(per_row.min()), int(per_row.max())
            hint = (
                "a threshold on uniform numbers (rand < k / n) activates k modules only on average; take the "
                "k largest of n random scores per row instead"
                if lo != hi
                else ""
            )
            raise _failure(
                f"{prefix}: expected exactly {k} active modules in every row, got {lo} to {hi}", hint
            )
        first = got.numpy().tobytes()  # bytes, not a tensor, while the learner's function runs again
        del got
        got = _call(name, fn, (b, n, k, torch.Generator().manual_seed(seed)), label)
        if not isinstance(got, torch.Tensor) or got.numpy().tobytes() != first:
            raise _failure(
                f"{prefix}: two calls with generators seeded alike gave different masks",
                "draw the random numbers from the generator you are given: torch.rand(..., generator=g)",
            )
        rates = got.double().mean(0)
        if k < n and bool((got == got[0]).all()):
            raise _failure(
                f"{prefix}: every row activates the same modules {got[0].nonzero().flatten().tolist()}",
                "the scores must be random: topk of a constant picks the same modules every time",
            )
        worst = int((rates - k / n).abs().argmax())
        if abs(float(rates[worst]) - k / n) > 0.05:
            raise ExerciseFailure(
                f"{prefix}: module {worst} is active in {float(rates[worst]):.1%} of rows, expected about "
                f"{k / n:.1%} (k / n): every module must be equally likely"
            )
    passed(name, f"{len(cases)} cases")


# ----------------------------------------------------------------------------------- 9.2 foreground_share
def _foreground_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    out = []
    for label, b, t, n, p_stroke, seed in (
        ("3 digits of 49 pixels, 6 modules", 3, 49, 6, 0.3, 21),
        ("5 digits of 16 pixels, 4 modules", 5, 16, 4, 0.5, 22),
    ):
        g = torch.Generator().manual_seed(seed)
        tokens = (torch.rand(b, t, generator=g) < p_stroke).long()
        bias = torch.rand(n, generator=g)  # each module its own preference for strokes
        p_active = torch.where(tokens.unsqueeze(-1) == 1, bias, 1 - bias)
        masks = torch.rand(b, t, n, generator=g) < p_active
        out.append((label, masks, tokens))
    return out


def _foreground_mistakes(masks: torch.Tensor, tokens: torch.Tensor) -> list[tuple[str, Callable[[], Any]]]:
    m, stroke = masks.double(), (tokens == 1).double().unsqueeze(-1)
    on_stroke, on_bg = (m * stroke).sum((0, 1)), (m * (1 - stroke)).sum((0, 1))
    n_stroke, n_bg = stroke.sum(), (1 - stroke).sum()
    return [
        (
            "the columns are swapped: column 0 is the stroke pixels (token 1), column 1 the background",
            lambda: torch.stack([on_bg / n_bg, on_stroke / n_stroke], 1),
        ),
        (
            "you divided by all pixels; divide by the number of pixels of each kind (stroke, background)",
            lambda: torch.stack([on_stroke, on_bg], 1) / tokens.numel(),
        ),
        (
            "you computed which share of a module's active steps fall on strokes; the question is the other "
            "way round: of all stroke pixels, at how many is the module active",
            lambda: torch.stack([on_stroke, on_bg], 1) / m.sum((0, 1)).unsqueeze(1),
        ),
        (
            "these are counts: divide them by the number of stroke pixels and of background pixels",
            lambda: torch.stack([on_stroke, on_bg], 1),
        ),
    ]


def check_foreground_share(fn: Callable[..., Any]) -> None:
    """``fn(masks (B, T, n) bool, tokens (B, T) in {0, 1}) -> (n, 2)`` float: for each module, the share of
    stroke pixels (column 0) and of background pixels (column 1) at which it is active."""
    _require_callable(fn)
    name = "foreground_share"
    cases = _foreground_cases()
    for label, masks, tokens in cases:
        got = _call(name, fn, (masks.clone(), tokens.clone()), label)
        stroke = tokens == 1
        expected = torch.stack([masks[stroke].double().mean(0), masks[~stroke].double().mean(0)], 1)
        prefix = f"{name} ({label})"
        n = masks.shape[-1]
        hint = (
            "one row per module: stack the two columns with dim=1"
            if (isinstance(got, torch.Tensor) and tuple(got.shape) == (2, n))
            else ""
        )
        _expect_tensor(prefix, got, expected, " (n modules, [stroke, background])", None, hint)
        if not got.is_floating_point():
            raise ExerciseFailure(
                f"{prefix}: expected a float tensor of shares in 0..1, got {got.dtype}; "
                "a bool mask needs .float() (or .double()) before a mean or a division"
            )
        got = got.detach().double()
        if not bool(torch.allclose(got, expected, atol=1e-6)):
            i, j = (int(v) for v in torch.nonzero((got - expected).abs() == (got - expected).abs().max())[0])
            kind = ("stroke", "background")[j]
            values = f"expected {float(expected[i, j]):.4f}, got {float(got[i, j]):.4f}"
            raise _failure(
                f"{prefix}: module {i}, {kind} pixels: {values}",
                _first_match(got, _foreground_mistakes(masks, tokens)),
            )
    passed(name, f"{len(cases)} cases")
