"""Checks for notebook 06 (the copying task): laying out the sequences, and the accuracy per answer step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minirims.course.checks._core import (
    ExerciseFailure,
    _call,
    _expect_tensor,
    _expect_tuple,
    _failure,
    _first_match,
    _gen,
    _require_callable,
    passed,
)
from minirims.experiments.copying import copying_sequences

__all__ = ["check_copying_sequences", "check_copy_accuracy"]

SEED = 606


def _where(got: torch.Tensor, expected: torch.Tensor, what: str, delay: int) -> str:
    """Name the first differing position and what it should hold: in the tokens (what the model reads) or
    in the targets (what it must output)."""
    b, t = (int(v) for v in torch.nonzero(got != expected)[0])
    answer = 10 + delay  # the first of the last 10 steps
    if what == "targets":
        if t < answer:
            part = f"step {t} is before the last 10 steps: the targets are blank (0) there"
        else:
            j = t - answer
            part = f"step {t} is answer step {j} of the last 10: its target is digit {j + 1} of the 10 read"
    elif t < 10:
        part = f"step {t} is the digit {t + 1} of 10"
    elif t < 10 + delay - 1:
        part = f"step {t} is in the stretch of {delay - 1} blanks (0) after the digits"
    elif t == 10 + delay - 1:
        part = f"step {t} is the marker (9): the blanks after the digits number delay - 1 = {delay - 1}"
    else:
        part = f"step {t} is one of the last 10 steps"
    return (
        f"copying_sequences {what} (delay={delay}): example {b}, step {t}: expected {int(expected[b, t])}, "
        f"got {int(got[b, t])} ({part})"
    )


def _targets_hint(targets: torch.Tensor, digits: torch.Tensor, tokens: torch.Tensor) -> str:
    """The likely mistake behind wrong targets ('' if none recognised)."""
    at_start = torch.zeros_like(tokens)
    at_start[:, :10] = digits
    if torch.equal(targets, tokens):
        return (
            "your targets are the tokens; the targets are what the model must output at each step: blanks, "
            "then the 10 digits in the last 10 steps"
        )
    if torch.equal(targets, at_start):
        return (
            "your targets hold the digits at steps 0-9, where the model reads them; it must repeat them at "
            "the end: targets[:, -10:] = digits"
        )
    return "targets are blank (0) everywhere but the last 10 steps, which hold the digits: targets[:, -10:]"


def check_copying_sequences(fn: Callable[..., Any]) -> None:
    """``fn(digits (N, 10) in 1..8, delay) -> (tokens (N, delay + 20), targets (N, delay + 20))`` must lay the
    sequences out like the package's."""
    _require_callable(fn)
    name = "copying_sequences"
    gen = _gen(SEED)
    cases = [(torch.randint(1, 9, (3, 10), generator=gen), delay) for delay in (1, 5, 30)]
    for digits, delay in cases:
        label = f"digits {tuple(digits.shape)}, delay={delay}"
        got = _call(name, fn, (digits.clone(), delay), label)
        tokens, targets = _expect_tuple(name, got, label, ("tokens", "targets"), "pair")
        ref_tokens, ref_targets = copying_sequences(digits, delay)
        for what, g, e in (("tokens", tokens, ref_tokens), ("targets", targets, ref_targets)):
            note = " (tokens for nn.Embedding and cross_entropy)"
            _expect_tensor(f"{name} {what} ({label})", g, e, " (10 digits + delay + 10)", note)
            if not torch.equal(g, e):
                hint = _targets_hint(g, digits, ref_tokens) if what == "targets" else ""
                raise _failure(_where(g, e, what, delay), hint)
    passed(name, f"{len(cases)} cases")


def _accuracy_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = _gen(SEED + 1)
    cases = []
    for n, delay, sharp in ((6, 3, 3.0), (20, 12, 1.5), (1, 1, 2.0)):
        _, targets = copying_sequences(torch.randint(1, 9, (n, 10), generator=gen), delay)
        logits = torch.randn(n, delay + 20, 10, generator=gen)
        # make the model right more often than chance, and more often early in the answer than late
        right = torch.rand(n, delay + 20, generator=gen) < torch.linspace(0.9, 0.3, delay + 20)
        logits = logits + sharp * right.unsqueeze(-1) * torch.nn.functional.one_hot(targets, 10)
        cases.append((f"case N={n}, delay={delay}", logits, targets))
    return cases


def _accuracy_hint(got: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> str:
    def right(lg: torch.Tensor, tg: torch.Tensor) -> torch.Tensor:
        return (lg.argmax(-1) == tg).float()

    return _first_match(
        got.detach().float(),
        [
            (
                "it matches the accuracy over all L steps: the blanks are trivial to predict, score only the "
                "last 10 steps, logits[:, -10:] and targets[:, -10:]",
                lambda: right(logits, targets).mean(0),
            ),
            (
                "it matches the first 10 steps (where the digits are read); the answer is in the last 10",
                lambda: right(logits[:, :10], targets[:, -10:]).mean(0),
            ),
            (
                "it matches one accuracy per sequence (mean over the steps); average over the batch, dim 0, "
                "to get one accuracy per answer step",
                lambda: right(logits[:, -10:], targets[:, -10:]).mean(1),
            ),
            (
                "it is the mean over all answer steps; keep one value per step: .mean(0), not .mean()",
                lambda: right(logits[:, -10:], targets[:, -10:]).mean(),
            ),
            (
                "the argmax runs over dim 1, the steps; take it over the 10 classes, the last dim: "
                "logits[:, -10:].argmax(-1)",
                lambda: (logits[:, -10:].argmax(1) == targets[:, -10:]).float().mean(0),
            ),
            (
                "the argmax runs over dim 1, the steps; take it over the 10 classes, the last dim: "
                "logits[:, -10:].argmax(-1)",
                lambda: (logits.argmax(1) == targets[:, -10:]).float().mean(0),
            ),
        ],
    )


def check_copy_accuracy(fn: Callable[..., Any]) -> None:
    """``fn(logits (N, L, 10), targets (N, L)) -> (10,)`` float: the fraction of sequences whose digit at
    each of the last 10 steps is predicted right (argmax over the 10 classes)."""
    _require_callable(fn)
    name = "copy_accuracy"
    cases = _accuracy_cases()
    for label, logits, targets in cases:
        got = _call(name, fn, (logits.clone(), targets.clone()), label)
        expected = (logits[:, -10:].argmax(-1) == targets[:, -10:]).float().mean(0)
        prefix = f"{name} ({label})"
        hint = _accuracy_hint(got, logits, targets) if isinstance(got, torch.Tensor) else ""
        shape_note, type_note = ", one accuracy per answer step", " of shape (10,)"
        _expect_tensor(prefix, got, expected, shape_note, None, hint, type_note)
        if not got.is_floating_point():
            raise ExerciseFailure(
                f"{prefix}: expected a float tensor (a fraction in 0..1), got {got.dtype}; "
                "(pred == target) is bool: .float() before .mean()"
            )
        got = got.detach().float()
        if bool(torch.allclose(got, 100 * expected, atol=1e-4)) and not bool(torch.allclose(got, expected)):
            raise ExerciseFailure(f"{prefix}: your values are percentages; return fractions in 0..1")
        if not bool(torch.allclose(got, expected, atol=1e-5)):
            step = int((got - expected).abs().argmax())
            values = f"expected {float(expected[step]):.4f}, got {float(got[step]):.4f}"
            raise _failure(f"{prefix}: answer step {step}: {values}", hint)
    passed(name, f"{len(cases)} cases")
