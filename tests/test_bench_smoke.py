"""The cell benchmark runs and reports every contender (structure only: speed is never asserted)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_cell import (
    IMPLEMENTATIONS,
    BenchConfig,
    DenseBlockLSTMCell,
    format_table,
    run_benchmark,
)
from minirims.group import GroupLSTMCell


def test_tiny_benchmark_reports_every_contender():
    config = BenchConfig(
        batch=2, steps=3, d_hidden=8, d_in=4, input_d_k=4, input_d_v=6, comm_d_k=3, comm_d_v=3
    )
    report = run_benchmark(config, device="cpu", iters=1, warmup=0, show_progress=False)
    rows = {r["impl"]: r for r in report["results"]}
    assert set(rows) == set(IMPLEMENTATIONS)
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["params"] > 0
    assert rows["rim"]["time_vs_rim"] == pytest.approx(1.0)
    assert rows["lstm"]["time_vs_lstm"] == pytest.approx(1.0)
    # the dense pitfall keeps n times the recurrent weights of the grouped cell
    assert rows["dense"]["params"] > rows["rim"]["params"]
    assert "minirims.RIM" in format_table(report)


def test_dense_block_cell_computes_the_group_cell():
    torch.manual_seed(0)
    group = GroupLSTMCell(3, 4, 5)
    dense = DenseBlockLSTMCell.from_group(group)
    x, h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    for got, ref in zip(dense(x, (h, c)), group(x, (h, c)), strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_unknown_contender_is_rejected():
    with pytest.raises(ValueError, match=r"impls: expected distinct names"):
        run_benchmark(BenchConfig(batch=1, steps=1), impls=["gru"], show_progress=False)
