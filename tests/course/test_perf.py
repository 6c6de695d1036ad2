"""minirims.course.perf: operation counts are exact and repeatable; timing helpers validate and restore."""

from __future__ import annotations

import pytest
import torch

from minirims.course.perf import best_seconds, count_aten_ops
from minirims.model import RIM


def test_count_aten_ops_counts_forward_and_backward_and_is_repeatable():
    x = torch.randn(3, 4, requires_grad=True)
    assert count_aten_ops(lambda: x + 1) == 1
    assert count_aten_ops(lambda: (x * 2).sum()) == 2
    both = count_aten_ops(lambda: (x * 2).sum().backward())
    assert both > 2


def test_fused_rim_runs_fewer_ops_than_the_plain_path():
    torch.manual_seed(0)
    rim = RIM(5, n_modules=4, k_active=2, d_hidden=6, input_d_k=4, input_d_v=6, comm_d_k=3, comm_d_v=3)
    x = torch.randn(2, 10, 5)
    counts = {}
    for fast in (False, True):
        rim.fast = fast
        counts[fast] = count_aten_ops(lambda: rim(x)[0].sum().backward())
        assert counts[fast] == count_aten_ops(lambda: rim(x)[0].sum().backward())  # exact, repeatable
    assert counts[True] < 0.6 * counts[False]


def test_best_seconds_pins_and_restores_threads():
    before = torch.get_num_threads()
    seen = []
    t = best_seconds(lambda: seen.append(torch.get_num_threads()), repeats=3, threads=1)
    assert t >= 0 and seen == [1, 1, 1] and torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(repeats=0), r"repeats: expected a positive int, got 0"),
        (dict(threads=0), r"threads: expected a positive int or None, got 0"),
        (dict(fn=3), r"fn: expected a callable"),
    ],
)
def test_best_seconds_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_seconds(**{"fn": lambda: None, **kwargs})
