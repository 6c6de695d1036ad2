"""The checks of notebook 06 (the copying task's sequences and its accuracy per answer step)."""

from __future__ import annotations

import pytest
import torch
from helpers import load_fixture

from minirims.course import checks
from minirims.course.checks import copying
from minirims.experiments.copying import copying_sequences

answers = load_fixture("check_answers")
fails, accuracy = answers.fails, answers.copy_accuracy


@pytest.mark.parametrize(
    ("fn", "fragments"),
    [
        (lambda lg, tg: (lg.argmax(-1) == tg).float().mean(0), ("expected shape \\(10,\\)", "all L steps")),
        (lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).float().mean(), ("not .mean\\(\\)",)),
        (
            lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).float().mean(1),
            ("one accuracy per sequence",),
        ),
        (lambda lg, tg: (lg[:, :10].argmax(-1) == tg[:, -10:]).float().mean(0), ("answer step", "first 10")),
        (lambda lg, tg: 100 * accuracy(lg, tg), ("percentages",)),
        (lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).sum(0), ("float tensor",)),
        (lambda lg, tg: accuracy(lg, tg).tolist(), ("expected a torch.Tensor",)),
    ],
)
def test_copy_accuracy_check_rejects_typical_mistakes(fn, fragments):
    fails(checks.check_copy_accuracy, fn, *fragments)


def test_copy_accuracy_cases_are_not_degenerate():
    for _, logits, targets in copying._accuracy_cases():
        acc = accuracy(logits, targets)
        assert 0 < float(acc.mean()) < 1  # right sometimes, wrong sometimes


def test_copying_sequences_check_names_the_position_shape_and_dtype():
    def no_marker(digits, delay):
        tokens, targets = copying_sequences(digits, delay)
        return torch.where(tokens == 9, 0, tokens), targets

    fails(
        checks.check_copying_sequences,
        no_marker,
        r"copying_sequences tokens \(delay=",
        r"is the marker \(9\)",
    )
    fails(
        checks.check_copying_sequences,
        lambda digits, delay: tuple(t[:, 1:] for t in copying_sequences(digits, delay)),
        r"tokens \(digits \(3, 10\), delay=1\): expected shape \(3, 21\) \(10 digits \+ delay \+ 10\)",
    )
    fails(
        checks.check_copying_sequences,
        lambda digits, delay: tuple(t.float() for t in copying_sequences(digits, delay)),
        r"expected dtype torch\.int64 \(tokens for nn\.Embedding and cross_entropy\), got torch\.float32",
    )
