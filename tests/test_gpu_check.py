"""The GPU check runs end to end on the CPU (--quick), offline, and writes its records as it goes; its
preflight refuses a machine without CUDA in one line and drops what cannot run; failures are recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import benchmarks.gpu_check as gpu_check
from benchmarks.gpu_check import main, mnist_models
from minirims.experiments import bouncing_balls as bb
from minirims.experiments.data.mnist import data_dir

pytestmark = pytest.mark.usefixtures("one_thread")


def _mnist_folder() -> Path:
    """This machine's MNIST folder (the tests that time MNIST need it, as the experiments' tests do)."""
    folder = data_dir()
    if not ((folder / "mnist.npz").is_file() or (folder / "mnist.pkl.gz").is_file()):
        pytest.skip(f"no MNIST in {folder} (python -m minirims data fetch)")
    return folder


def _no_download(monkeypatch):
    """Any attempt to download MNIST fails the test (the GPU machine has no network)."""
    import minirims.experiments.data.mnist as mnist

    monkeypatch.setattr(mnist, "_download_wheel", lambda *a, **k: pytest.fail("tried to download MNIST"))


def test_quick_cpu_run_writes_every_record(tmp_path, monkeypatch):
    _no_download(monkeypatch)
    out = tmp_path / "out"
    # no time cap on the epoch: on a starved machine (nice 19 beside two trainings) 5 steps have taken > 120 s
    args = ["--device", "cpu", "--quick", "--out", str(out), "--impls", "lstm,plain,fast"]
    summary = main([*args, "--data", str(_mnist_folder()), "--mnist-seconds", "100000"])
    assert summary["failed"] == {} and summary["dropped"] == {}
    assert summary["preflight"]["compile"] == "not needed"
    assert summary["preflight"]["mnist"].startswith("verified cache")
    assert set(summary["ran"]) == {"bench_cell_paper", "bench_cell_cpu", "mnist_epoch", "balls_steps"}
    balls = json.loads((out / "balls_steps_cpu.json").read_text())
    rim = bb.PROFILES["smoke"].models[0]  # the smoke profile's models, named by their size
    assert balls["profile"] == "smoke" and balls[rim]["median_step_s"] > 0
    assert set(bb.PROFILES["smoke"].models) <= set(balls)
    assert balls["all_models_seed_seconds_extrapolated"] > balls["lstm-256"]["seed_seconds_extrapolated"]
    for size in ("paper", "cpu"):
        report = json.loads((out / f"bench_cell_cpu_{size}.json").read_text())
        assert [r["impl"] for r in report["results"]] == ["lstm", "plain", "fast"]
        assert report["settings"]["size"] == size and report["settings"]["batch"] == 4
    epochs = json.loads((out / "mnist_epoch_cpu.json").read_text())
    assert mnist_models(quick=True) == ("rim-6x12-k4", "lstm-72")
    assert mnist_models() == ("rim-6x100-k4", "lstm-600")  # on the GPU: the paper's RIM and LSTM-600
    assert set(epochs) == set(mnist_models(quick=True))
    for name in mnist_models(quick=True):
        e = epochs[name]
        # 5 smoke steps: 1 warm-up, untimed, then 4 timed; the epoch is extrapolated from the timed ones only
        assert e["steps_per_epoch"] == 5 and e["warmup_steps"] == 1 and e["steps_timed"] == 4
        assert not e["capped"] and not e["compile_step"] and e["warmup_s"] > 0
        assert e["epoch_seconds_extrapolated"] == pytest.approx(e["mean_step_s"] * 5)
        assert e["seconds_timed"] == pytest.approx(e["mean_step_s"] * 4)
    assert json.loads((out / "gpu_check.json").read_text())["wall_seconds"] > 0


def test_the_mnist_clock_starts_after_the_warm_up_and_follows_the_profiles_path(monkeypatch):
    """A compile in the first step must not enter the epoch estimate; the model is built as the profile
    trains it (the full profile: eager)."""
    folder = _mnist_folder()
    _no_download(monkeypatch)
    from minirims.experiments import mnist_resolution as mr

    assert mr.PROFILES["full"].compile is False  # so the full profile's epoch is timed eager
    real = mr.make_model
    slow_first = {"left": 1}

    def make_model(name, settings):
        model = real(name, settings)
        forward = model.forward

        def first_call_compiles(*args, **kwargs):
            if slow_first["left"]:
                slow_first["left"] -= 1
                import time

                time.sleep(1.0)  # a "compile"
            return forward(*args, **kwargs)

        model.forward = first_call_compiles
        return model

    monkeypatch.setattr(mr, "make_model", make_model)
    e = gpu_check.time_mnist_epoch("lstm-72", torch.device("cpu"), quick=True, data=folder)
    assert e["warmup_s"] >= 1.0 and e["seconds_timed"] < 1.0
    assert e["epoch_seconds_extrapolated"] < 1.0  # the "compile" second is not in it
    capped = gpu_check.time_mnist_epoch("lstm-72", torch.device("cpu"), True, max_seconds=0.0, data=folder)
    assert capped["capped"] and capped["steps_timed"] == 1


def test_without_cuda_the_gpu_run_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "run_benchmark", lambda *a, **k: pytest.fail("benchmarked without CUDA"))
    monkeypatch.setattr(gpu_check, "_mnist_in", lambda *a: pytest.fail("looked for MNIST without CUDA"))
    with pytest.raises(SystemExit) as stop:
        main(["--device", "cuda", "--out", str(tmp_path / "out"), "--data", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpu_check: --device cuda: CUDA is not available")
    assert "--device cpu --quick" in err
    assert not (tmp_path / "out").exists()


def test_the_device_is_always_explicit(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert "--device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--device", "tpu", "--out", str(tmp_path)])
    assert "expected cpu or cuda[:i], got 'tpu'" in capsys.readouterr().err


def _top_level_env() -> dict[str, str]:
    """The environment without a calling make's flags (``make test`` runs this test inside make)."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_gpu_check_installs_nothing_and_refuses_a_cpu_machine(repo_root, tmp_path):
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "gpu-check", f"OUT={tmp_path}/out"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=_top_level_env(),
    )
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if line.strip()]
    assert len(commands) == 1 and "pip" not in dry.stdout  # no venv stamp, no install
    assert commands[0].endswith(
        f"-m benchmarks.gpu_check --device cuda --data .gpu/data --out {tmp_path}/out"
    )
    run = subprocess.run(
        ["make", "--no-print-directory", "gpu-check", f"OUT={tmp_path}/out"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        env=_top_level_env(),
    )
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.startswith("gpu_check:")]
    assert len(lines) == 1 and "CUDA is not available" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_preflight_drops_what_cannot_run_and_says_so(tmp_path, monkeypatch, capsys):
    """A compile that fails drops the compiled contender; MNIST missing from the data folder drops the MNIST
    part at once (no download: no network there); the rest runs."""
    _no_download(monkeypatch)
    monkeypatch.setattr(gpu_check, "_tiny_compile", lambda device: "BackendCompilerFailed: no compiler")
    out = tmp_path / "out"
    summary = main(
        [
            *("--device", "cpu", "--quick", "--out", str(out), "--skip-balls"),
            *("--impls", "lstm,compiled", "--data", str(tmp_path / "empty")),
        ]
    )
    assert set(summary["dropped"]) == {"compiled", "mnist_epoch"}
    assert "no compiler" in summary["dropped"]["compiled"]
    assert (
        "MNIST is not in" in summary["dropped"]["mnist_epoch"]
        and "make gpu-data" in summary["dropped"]["mnist_epoch"]
    )
    assert summary["impls"] == ["lstm"] and "mnist_epoch" not in summary["ran"]
    assert summary["failed"] == {}
    report = json.loads((out / "bench_cell_cpu_paper.json").read_text())
    assert [r["impl"] for r in report["results"]] == ["lstm"]
    printed = capsys.readouterr().out
    assert "preflight: dropped compiled: torch.compile does not work on cpu" in printed
    assert "preflight: dropped mnist_epoch: MNIST is not in" in printed
    written = json.loads((out / "gpu_check.json").read_text())
    assert written["dropped"] == summary["dropped"] and written["preflight"]["compile"].startswith("failed")


def test_the_tiny_compile_check_reports_a_failure_in_one_line(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor needs a C compiler\nlong details")

    monkeypatch.setattr(torch, "compile", broken)
    assert gpu_check._tiny_compile(torch.device("cpu")) == "RuntimeError: inductor needs a C compiler"


def test_every_part_is_written_as_it_finishes(tmp_path, monkeypatch):
    """A run stopped by its time limit keeps what it measured: the summary after the preflight and after
    each part, the balls record after each model."""
    out = tmp_path / "out"
    seen = []

    def stop_after_first_model(device, quick, on_model=None, **kwargs):
        on_model({"profile": "smoke", "rim-6x16-k4": {"median_step_s": 0.1}})
        seen.append(json.loads((out / "balls_steps_cpu.json").read_text()))
        seen.append(json.loads((out / "gpu_check.json").read_text()))
        raise KeyboardInterrupt  # the time limit

    monkeypatch.setattr(gpu_check, "time_balls_steps", stop_after_first_model)
    with pytest.raises(KeyboardInterrupt):
        main(["--device", "cpu", "--quick", "--out", str(out), "--impls", "lstm", "--skip-mnist"])
    balls, summary = seen
    assert balls["rim-6x16-k4"]["median_step_s"] == 0.1
    assert {"bench_cell_paper", "bench_cell_cpu"} <= set(summary["ran"])
    assert (out / "bench_cell_cpu_cpu.json").is_file()


def test_a_failing_contender_is_recorded_and_the_rest_goes_on(tmp_path, monkeypatch):
    import benchmarks.bench_cell as bench_cell

    real = bench_cell.build_model

    def build(impl, config):
        model = real(impl, config)
        if impl == "fast":

            def refuse(*args, **kwargs):
                raise RuntimeError("capture refused")

            model.core.forward = refuse
        return model

    monkeypatch.setattr(bench_cell, "build_model", build)
    out = tmp_path / "out"
    args = ["--device", "cpu", "--quick", "--out", str(out), "--impls", "lstm,fast"]
    summary = main([*args, "--skip-mnist", "--skip-balls"])
    assert set(summary["failed"]) == {"bench_cell_paper_fast", "bench_cell_cpu_fast"}
    assert summary["failed"]["bench_cell_cpu_fast"].startswith("RuntimeError: capture refused")
    assert {"bench_cell_paper", "bench_cell_cpu"} <= set(summary["ran"])  # the lstm rows are kept
    assert list(summary["bench_cell_cpu"]) == ["lstm"]
    report = json.loads((out / "bench_cell_cpu_cpu.json").read_text())
    assert [r["impl"] for r in report["results"]] == ["lstm"] and "fast" in report["failed"]


def test_gpu_data_copies_the_small_verified_source(tmp_path, capsys):
    from benchmarks.gpu_data import main as gpu_data

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "mnist.pkl.gz").write_bytes(b"not mnist")
    with pytest.raises(SystemExit) as stop:
        gpu_data(["--source", str(fake), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "not the known MNIST pickle" in capsys.readouterr().err
    source = _mnist_folder()
    if not (source / "mnist.pkl.gz").is_file():
        pytest.skip("no mnist.pkl.gz here to copy")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mnist.npz").write_bytes(b"stale cache")
    files = gpu_data(["--source", str(source), "--out", str(out)])
    assert [p.name for p in files] == ["mnist.pkl.gz"] and not (out / "mnist.npz").exists()
    assert sum(p.stat().st_size for p in out.iterdir()) < 20 * 2**20  # carried with the tree (< 64 MiB)
    assert "--data" in capsys.readouterr().out


def test_a_part_can_be_rerun_alone(tmp_path, monkeypatch):
    """A rerun after a timeout repeats only what is missing."""
    monkeypatch.setattr(gpu_check, "run_benchmark", lambda *a, **k: pytest.fail("benchmarked"))
    summary = main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--skip-bench", "--skip-mnist"])
    assert summary["ran"] == ["balls_steps"] and summary["failed"] == {}
