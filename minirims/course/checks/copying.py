"""Checks for notebook 06 (the copying task); see :mod:`minirims.course.checks`.

Checks (learner signature):

- :func:`check_copying_sequences` -> ``copying_sequences(digits (N, 10) in 1..8, delay)
  -> (tokens (N, delay + 20), targets (N, delay + 20))``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minirims.course.checks._base import ExerciseFailure, passed
from minirims.course.checks._common import _call, _expect_tuple, _require_callable
from minirims.experiments.copying import copying_sequences

__all__ = ["check_copying_sequences"]

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
