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


def test_copying_sequences_check_explains_wrong_targets_by_the_targets():
    def digits_first(digits, delay):  # the targets hold the digits where they are read
        tokens, _ = copying_sequences(digits, delay)
        targets = torch.zeros_like(tokens)
        targets[:, :10] = digits
        return tokens, targets

    def targets_are_tokens(digits, delay):
        tokens, _ = copying_sequences(digits, delay)
        return tokens, tokens.clone()

    def one_step_early(digits, delay):
        tokens, _ = copying_sequences(digits, delay)
        targets = torch.zeros_like(tokens)
        targets[:, -11:-1] = digits
        return tokens, targets

    start = "copying_sequences targets (delay=1): example 0, step"
    before = "is before the last 10 steps: the targets are blank (0) there"
    assert fails(checks.check_copying_sequences, digits_first) == (
        f"{start} 0: expected 0, got 6 (step 0 {before}). Hint: your targets hold the digits at steps 0-9, "
        "where the model reads them; it must repeat them at the end: targets[:, -10:] = digits"
    )
    assert fails(checks.check_copying_sequences, targets_are_tokens) == (
        f"{start} 0: expected 0, got 6 (step 0 {before}). Hint: your targets are the tokens; the targets are "
        "what the model must output at each step: blanks, then the 10 digits in the last 10 steps"
    )
    assert fails(checks.check_copying_sequences, one_step_early) == (
        f"{start} 10: expected 0, got 6 (step 10 {before}). Hint: targets are blank (0) everywhere but the "
        "last 10 steps, which hold the digits: targets[:, -10:]"
    )

    def last_digit_wrong(digits, delay):
        tokens, targets = copying_sequences(digits, delay)
        targets[:, -1] = 0
        return tokens, targets

    assert fails(checks.check_copying_sequences, last_digit_wrong).startswith(
        f"{start} 20: expected 4, got 0 (step 20 is answer step 9 of the last 10: its target is digit 10 of "
        "the 10 read)"
    )


def test_copy_accuracy_without_float_gets_the_hint_not_only_pytorchs_error():
    def no_float(logits, targets):
        return (logits[:, -10:].argmax(-1) == targets[:, -10:]).mean(0)

    assert fails(checks.check_copy_accuracy, no_float) == (
        "copy_accuracy: your function raised RuntimeError on case N=6, delay=3: mean(): could not infer "
        "output dtype. Input dtype must be either a floating point or complex dtype. Got: Bool. Hint: "
        "mean of a bool tensor: convert with .float() first, e.g. (a == b).float().mean(0)"
    )


@pytest.mark.parametrize(
    ("fn", "got"),
    [
        (lambda lg, tg: (lg[:, -10:].argmax(1) == tg[:, -10:]).float().mean(0), "0.3333"),
        (lambda lg, tg: (lg[:, -10:].argmax(-2) == tg[:, -10:]).float().mean(0), "0.3333"),
        (lambda lg, tg: (lg.argmax(1) == tg[:, -10:]).float().mean(0), "0.0000"),
    ],
)
def test_copy_accuracy_names_an_argmax_over_the_steps(fn, got):
    assert fails(checks.check_copy_accuracy, fn) == (
        f"copy_accuracy (case N=6, delay=3): answer step 0: expected 0.6667, got {got}. Hint: the argmax "
        "runs over dim 1, the steps; take it over the 10 classes, the last dim: logits[:, -10:].argmax(-1)"
    )
