"""Measuring speed in a notebook: count the operations PyTorch runs, time the best of a few repeats.

Both exist because timings on a laptop or a shared machine are noisy: an operation count does not depend on
the load at all, and the minimum of several repeats with pinned threads is far steadier than one run.
Compare implementations by the *ratio* of two measurements made in one go, never by absolute times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["count_aten_ops", "best_seconds"]


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(fn: Callable[[], Any]) -> int:
    """How many ATen operations (the kernels PyTorch dispatches, views included) ``fn()`` runs.

    Operations autograd runs in the backward pass count too when ``fn`` calls ``.backward()`` (on the CPU the
    backward runs on the calling thread).
    """
    if not callable(fn):
        raise ValueError(f"fn: expected a callable taking no arguments, got {type(fn).__name__}")
    with _Counter() as counter:
        fn()
    return counter.count


def best_seconds(fn: Callable[[], Any], repeats: int = 5, threads: int | None = 1) -> float:
    """The fastest of ``repeats`` calls of ``fn()``, in seconds, with ``threads`` intra-op threads (restored).

    One thread by default: on a busy machine a second thread makes every parallel op wait for a free core.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: expected a positive int or None, got {threads!r}")
    if not callable(fn):
        raise ValueError(f"fn: expected a callable taking no arguments, got {type(fn).__name__}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return min(times)
