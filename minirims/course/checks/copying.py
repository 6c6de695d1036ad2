"""Checks for notebook 06 (the copying task); see :mod:`minirims.course.checks`.

Checks (learner signature):

- :func:`check_copying_sequences` -> ``copying_sequences(digits (N, 10) in 1..8, delay)
  -> (tokens (N, delay + 20), targets (N, delay + 20))``
- :func:`check_copy_accuracy` -> ``copy_accuracy(logits (N, L, 10), targets (N, L)) -> (10,)``: the accuracy
  at each of the 10 answer steps
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minirims.course.checks._base import ExerciseFailure, passed
from minirims.course.checks._common import _call, _expect_tuple, _require_callable
from minirims.experiments.copying import copying_sequences

__all__ = ["check_copying_sequences", "check_copy_accuracy"]

SEED = 606


def _where(got: torch.Tensor, expected: torch.Tensor, what: str, delay: int) -> str:
    """Name the first differing position and what it should hold."""
    b, t = (int(v) for v in torch.nonzero(got != expected)[0])
    if t < 10:
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


def check_copying_sequences(fn: Callable[..., Any]) -> None:
    """``fn(digits, delay) -> (tokens, targets)`` must lay the sequences out like the package's."""
    _require_callable(fn)
    name = "copying_sequences"
    gen = torch.Generator().manual_seed(SEED)
    cases = [(torch.randint(1, 9, (3, 10), generator=gen), delay) for delay in (1, 5, 30)]
    for digits, delay in cases:
        label = f"digits {tuple(digits.shape)}, delay={delay}"
        got = _call(name, fn, (digits.clone(), delay), label)
        tokens, targets = _expect_tuple(name, got, label, ("tokens", "targets"), "pair")
        ref_tokens, ref_targets = copying_sequences(digits, delay)
        for what, g, e in (("tokens", tokens, ref_tokens), ("targets", targets, ref_targets)):
            if not isinstance(g, torch.Tensor):
                raise ExerciseFailure(
                    f"{name} {what} ({label}): expected a torch.Tensor, got {type(g).__name__}"
                )
            if tuple(g.shape) != tuple(e.shape):
                raise ExerciseFailure(
                    f"{name} {what} ({label}): expected shape {tuple(e.shape)} (10 digits + delay + 10), "
                    f"got {tuple(g.shape)}"
                )
            if g.dtype != torch.long:
                raise ExerciseFailure(
                    f"{name} {what} ({label}): expected dtype torch.int64 (tokens for nn.Embedding and "
                    f"cross_entropy), got {g.dtype}"
                )
            if not torch.equal(g, e):
                raise ExerciseFailure(_where(g, e, what, delay))
    passed(name, f"{len(cases)} cases")


def _reference_copy_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits[:, -10:].argmax(-1) == targets[:, -10:]).float().mean(0)


def _accuracy_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(SEED + 1)
    cases = []
    for n, delay, sharp in ((6, 3, 3.0), (20, 12, 1.5), (1, 1, 2.0)):
        _, targets = copying_sequences(torch.randint(1, 9, (n, 10), generator=gen), delay)
        logits = torch.randn(n, delay + 20, 10, generator=gen)
        # make the model right more often than chance, and more often early in the answer than late
        right = torch.rand(n, delay + 20, generator=gen) < torch.linspace(0.9, 0.3, delay + 20)
        logits = logits + sharp * right.unsqueeze(-1) * torch.nn.functional.one_hot(targets, 10)
        cases.append((f"case N={n}, delay={delay}", logits, targets))
    return cases


def check_copy_accuracy(fn: Callable[..., Any]) -> None:
    """``fn(logits (N, L, 10), targets (N, L)) -> (10,)`` float: the fraction of sequences whose digit at
    each of the last 10 steps is predicted right (argmax over the 10 classes)."""
    _require_callable(fn)
    name = "copy_accuracy"
    cases = _accuracy_cases()
    for label, logits, targets in cases:
        got = _call(name, fn, (logits.clone(), targets.clone()), label)
        expected = _reference_copy_accuracy(logits, targets)
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailure(
                f"{name} ({label}): expected a torch.Tensor of shape (10,), got {type(got).__name__}"
            )
        guesses = [
            (
                "it matches the accuracy over all L steps: the blanks are trivial to predict, score only the "
                "last 10 steps, logits[:, -10:] and targets[:, -10:]",
                lambda logits=logits, targets=targets: (logits.argmax(-1) == targets).float().mean(0),
            ),
            (
                "it matches the first 10 steps (where the digits are read); the answer is in the last 10",
                lambda logits=logits, targets=targets: (
                    (logits[:, :10].argmax(-1) == targets[:, -10:]).float().mean(0)
                ),
            ),
            (
                "it matches one accuracy per sequence (mean over the steps); average over the batch, dim 0, "
                "to get one accuracy per answer step",
                lambda expected=expected, logits=logits, targets=targets: (
                    (logits[:, -10:].argmax(-1) == targets[:, -10:]).float().mean(1)
                ),
            ),
            (
                "it is the mean over all answer steps; keep one value per step: .mean(0), not .mean()",
                lambda logits=logits, targets=targets: (
                    (logits[:, -10:].argmax(-1) == targets[:, -10:]).float().mean()
                ),
            ),
        ]
        hint = _first_guess(got, guesses)
        if tuple(got.shape) != (10,):
            raise ExerciseFailure(
                f"{name} ({label}): expected shape (10,), one accuracy per answer step, got "
                f"{tuple(got.shape)}" + (f". Hint: {hint}" if hint else "")
            )
        if not got.is_floating_point():
            raise ExerciseFailure(
                f"{name} ({label}): expected a float tensor (a fraction in 0..1), got {got.dtype}; "
                "(pred == target) is bool: .float() before .mean()"
            )
        got = got.detach().float()
        if bool(torch.allclose(got, 100 * expected, atol=1e-4)) and not bool(torch.allclose(got, expected)):
            raise ExerciseFailure(f"{name} ({label}): your values are percentages; return fractions in 0..1")
        if not bool(torch.allclose(got, expected, atol=1e-5)):
            step = int((got - expected).abs().argmax())
            raise ExerciseFailure(
                f"{name} ({label}): answer step {step}: expected {float(expected[step]):.4f}, got "
                f"{float(got[step]):.4f}" + (f". Hint: {hint}" if hint else "")
            )
    passed(name, f"{len(cases)} cases")


def _first_guess(got: torch.Tensor, guesses: list[tuple[str, Callable[[], torch.Tensor]]]) -> str:
    for hint, make in guesses:
        alternative = make()
        if got.shape == alternative.shape and bool(torch.allclose(got.detach().float(), alternative)):
            return hint
    return ""
