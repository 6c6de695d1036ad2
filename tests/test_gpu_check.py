"""The GPU check script runs end to end on the CPU (--quick) and writes its records; failures are recorded."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_cell import BenchConfig, run_benchmark
from benchmarks.gpu_check import main, mnist_models
from minirims.experiments import bouncing_balls as bb

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_cpu_run_writes_every_record(tmp_path):
    # no time cap on the epoch: on a starved machine (nice 19 beside two trainings) 5 steps have taken > 120 s
    args = ["--device", "cpu", "--quick", "--out", str(tmp_path), "--impls", "lstm,plain,fast"]
    summary = main([*args, "--mnist-seconds", "100000"])
    assert summary["failed"] == {}
    assert set(summary["ran"]) == {"bench_cell_paper", "bench_cell_cpu", "mnist_epoch", "balls_steps"}
    balls = json.loads((tmp_path / "balls_steps_cpu.json").read_text())
    rim = bb.PROFILES["smoke"].models[0]  # the smoke profile's models, named by their size
    assert balls["profile"] == "smoke" and balls[rim]["median_step_s"] > 0
    assert set(bb.PROFILES["smoke"].models) <= set(balls)
    assert balls["all_models_seed_seconds_extrapolated"] > balls["lstm-256"]["seed_seconds_extrapolated"]
    for size in ("paper", "cpu"):
        report = json.loads((tmp_path / f"bench_cell_cpu_{size}.json").read_text())
        assert [r["impl"] for r in report["results"]] == ["lstm", "plain", "fast"]
        assert report["settings"]["size"] == size and report["settings"]["batch"] == 4
    epochs = json.loads((tmp_path / "mnist_epoch_cpu.json").read_text())
    assert mnist_models(quick=True) == ("rim-6x12-k4", "lstm-72")
    assert mnist_models() == ("rim-6x100-k4", "lstm-600")  # on the GPU: the paper's RIM and LSTM-600
    assert set(epochs) == set(mnist_models(quick=True))
    for name in mnist_models(quick=True):
        e = epochs[name]
        assert e["steps_done"] == e["steps_per_epoch"] == 5 and not e["capped"]
        assert e["epoch_seconds"] > 0 and e["median_step_s"] > 0
    assert json.loads((tmp_path / "gpu_check.json").read_text())["wall_seconds"] > 0


def test_a_failing_contender_is_recorded_and_the_rest_goes_on(tmp_path):
    summary = main(
        [
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(tmp_path),
            "--impls",
            "graphed",
            "--skip-mnist",
            "--skip-balls",
        ]
    )
    assert set(summary["failed"]) == {"bench_cell_paper", "bench_cell_cpu"}
    assert "needs a CUDA device" in summary["failed"]["bench_cell_cpu"]
    assert "mnist_epoch" not in summary["ran"]


def test_cuda_only_contenders_are_left_out_on_cpu_by_default():
    report = run_benchmark(
        BenchConfig(batch=1, steps=1, d_hidden=4, input_d_k=2, input_d_v=2, comm_d_k=2, comm_d_v=2),
        ["lstm"],
        "cpu",
        iters=1,
        warmup=0,
        show_progress=False,
    )
    assert [r["impl"] for r in report["results"]] == ["lstm"]
    with pytest.raises(ValueError, match=r"impls: 'graphed' needs a CUDA device, got cpu"):
        run_benchmark(
            BenchConfig(batch=1, steps=1), ["graphed"], "cpu", iters=1, warmup=0, show_progress=False
        )
