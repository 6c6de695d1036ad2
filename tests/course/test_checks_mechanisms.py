"""The checks of notebook 09 (why RIMs work): typical mistakes get their hint."""

from __future__ import annotations

import pytest
import torch
from helpers import load_fixture

from minirims.course.checks import check_foreground_share, check_random_mask

answers = load_fixture("check_answers")
fails = answers.fails

pytestmark = pytest.mark.usefixtures("one_thread")


def threshold(batch, n, k, generator):
    return torch.rand(batch, n, generator=generator) < k / n


def same_modules(batch, n, k, generator):
    return torch.zeros(batch, n, dtype=torch.bool).scatter_(
        1, torch.ones(batch, n).topk(k, dim=1).indices, True
    )


def global_rng(batch, n, k, generator):
    return answers.random_mask(batch, n, k, None)


def first_modules_likelier(batch, n, k, generator):
    scores = torch.rand(batch, n, generator=generator) + torch.linspace(0.3, 0, n)
    return torch.zeros(batch, n, dtype=torch.bool).scatter_(1, scores.topk(k, dim=1).indices, True)


@pytest.mark.parametrize(
    ("fn", "patterns"),
    [
        (
            threshold,
            [r"expected exactly 4 active modules in every row, got \d to \d", "k largest of n random"],
        ),
        (same_modules, ["every row activates the same modules", "topk of a constant"]),
        (global_rng, ["generators seeded alike gave different masks", "generator you are given"]),
        (first_modules_likelier, [r"module \d is active in \d+\.\d% of rows, expected about 66\.7%"]),
        (lambda b, n, k, g: answers.random_mask(b, n, k, g).float(), [r"expected dtype torch.bool"]),
        (lambda b, n, k, g: answers.random_mask(b, n, k, g).t(), [r"expected shape \(4000, 6\)"]),
    ],
)
def test_random_mask_mistakes_are_named(fn, patterns):
    fails(check_random_mask, fn, *patterns)


def share(masks, tokens):
    return answers.foreground_share(masks, tokens)


@pytest.mark.parametrize(
    ("fn", "patterns"),
    [
        (lambda m, t: share(m, t).flip(1), [r"module \d, (stroke|background) pixels", "columns are swapped"]),
        (
            lambda m, t: (
                torch.stack(
                    [(m & (t == 1).unsqueeze(-1)).sum((0, 1)), (m & (t == 0).unsqueeze(-1)).sum((0, 1))], 1
                )
                / t.numel()
            ),
            ["divided by all pixels"],
        ),
        (
            lambda m, t: (
                torch.stack(
                    [(m & (t == 1).unsqueeze(-1)).sum((0, 1)), (m & (t == 0).unsqueeze(-1)).sum((0, 1))], 1
                ).float()
                / m.sum((0, 1)).unsqueeze(1)
            ),
            ["share of a module's active steps"],
        ),
        (
            lambda m, t: torch.stack(
                [(m & (t == 1).unsqueeze(-1)).sum((0, 1)), (m & (t == 0).unsqueeze(-1)).sum((0, 1))], 1
            ).float(),
            ["these are counts"],
        ),
        (lambda m, t: share(m, t).t(), [r"expected shape \(6, 2\)", "stack the two columns with dim=1"]),
        (lambda m, t: share(m, t).bool(), ["expected a float tensor of shares", r"\.float\(\)"]),
    ],
)
def test_foreground_share_mistakes_are_named(fn, patterns):
    fails(check_foreground_share, fn, *patterns)
