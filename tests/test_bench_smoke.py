"""The cell benchmark runs and reports every contender (structure only: speed is never asserted)."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest
import torch

from benchmarks.bench_cell import (
    IMPLEMENTATIONS,
    BenchConfig,
    DenseBlockLSTMCell,
    LoopRIM,
    format_table,
    main,
    run_benchmark,
)
from minirims.group import GroupLSTMCell
from minirims.model import RIM
from minirims.naive import LoopRIMCell

TINY = dict(batch=2, steps=3, d_hidden=8, d_in=4, input_d_k=4, input_d_v=6, comm_d_k=3, comm_d_v=3)


pytestmark = pytest.mark.usefixtures("one_thread")


EAGER = [
    i for i in IMPLEMENTATIONS if i not in ("compiled", "graphed")
]  # compile: test_fast.py; graphed: CUDA


def test_tiny_benchmark_reports_every_contender():
    config = BenchConfig(**TINY)
    report = run_benchmark(config, EAGER, device="cpu", iters=2, warmup=1, show_progress=False)
    assert report["settings"]["batch"] == 2 and report["settings"]["steps"] == 3
    assert report["settings"]["iters"] == 2 and report["settings"]["threads"] == 1
    assert report["environment"]["torch"] == torch.__version__
    # the record names the code it timed (None only outside a git checkout)
    commit = report["environment"]["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert report["environment"]["git_dirty"] in (True, False, None)
    # which CPU, with which vector units, and whether denormals were flushed (on wherever the CPU can)
    assert report["environment"]["cpu_model"] and isinstance(report["environment"]["cpu_flags"], list)
    assert report["settings"]["flush_denormals"] is torch.set_flush_denormal(False)
    rows = {r["impl"]: r for r in report["results"]}
    assert list(rows) == EAGER
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["params"] > row["core_params"] > 0
        assert len(row["times_ms"]) == 2 and row["peak_mem_mib"] is None  # CPU: no peak memory
        assert row["seq_per_s"] == pytest.approx(1e3 * config.batch / row["ms_per_step"])
        assert math.isfinite(row["loss"]) and row["first_step_s"] > 0 and row["saved_mib"] > 0
    assert rows["plain"]["time_vs_plain"] == pytest.approx(1.0)
    assert rows["lstm"]["time_vs_lstm"] == pytest.approx(1.0)
    # plain and fused paths hold the same model, and from the same seed compute the same loss
    assert rows["fast"]["params"] == rows["plain"]["params"]
    assert rows["fast"]["loss"] == pytest.approx(rows["plain"]["loss"], rel=1e-5)
    # the loop RIM holds the same model (plus nn.LSTMCell's second, zeroed bias: n * 4 * d_h scalars)
    assert rows["loop"]["core_params"] == rows["plain"]["core_params"] + 6 * 4 * 8
    # the dense pitfall keeps n times the recurrent weights of the grouped cell
    assert rows["dense"]["params"] > rows["plain"]["params"]
    table = format_table(report)
    assert "fused loop" in table and "B=2 T=3" in table and "peak MiB" not in table
    json.dumps(report)  # the --json report is plain data
    kept = run_benchmark(config, ["lstm"], iters=1, warmup=0, show_progress=False, flush_denormals=False)
    assert kept["settings"]["flush_denormals"] is False


def test_subset_without_references_has_no_ratios():
    report = run_benchmark(BenchConfig(**TINY), impls=["dense"], iters=1, warmup=0, show_progress=False)
    (row,) = report["results"]
    assert row["time_vs_lstm"] is None and row["time_vs_plain"] is None
    assert "-" in format_table(report).splitlines()[-1]


def test_dense_block_cell_computes_the_group_cell():
    torch.manual_seed(0)
    group = GroupLSTMCell(3, 4, 5)
    dense = DenseBlockLSTMCell.from_group(group)
    x, h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    for got, ref in zip(dense(x, (h, c)), group(x, (h, c)), strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_loop_rim_runs_the_same_model_as_the_package_rim():
    torch.manual_seed(0)
    rim = RIM(4, **BenchConfig(**TINY).cell_kwargs()).double().eval()
    loop = LoopRIM(LoopRIMCell.from_cell(copy.deepcopy(rim.cell)))
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(loop(x), rim(x)[0], atol=1e-10, rtol=0)


def test_command_line_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    args = ["--device", "cpu", "--batch", "2", "--steps", "2", "--iters", "1", "--warmup", "0"]
    main([*args, "--impls", "fast,lstm", "--json", str(path)])
    paper = json.loads((tmp_path / "bench_paper.json").read_text())
    cpu = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert [r["impl"] for r in paper["results"]] == ["fast", "lstm"]
    assert paper["settings"]["d_hidden"] == 100 and paper["settings"]["input_d_v"] == 400  # paper sizes
    assert cpu["settings"]["d_hidden"] == 32 and cpu["settings"]["size"] == "cpu"
    out = capsys.readouterr().out
    assert "== size: paper ==" in out and "== size: cpu ==" in out and "nn.LSTM" in out
    main([*args, "--size", "cpu", "--impls", "lstm", "--json", str(path)])
    assert json.loads(path.read_text())["settings"]["size"] == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(impls=["gru"]), r"impls: expected distinct names"),
        (dict(impls=["fast", "fast"]), r"impls: expected distinct names"),
        (dict(iters=0), r"iters: expected a positive int, got 0"),
        (dict(warmup=-1), r"warmup: expected a non-negative int, got -1"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_benchmark(BenchConfig(batch=1, steps=1), **{"show_progress": False, **kwargs})


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match=r"k_active: expected an int in \[1, n_modules=6\], got 7"):
        BenchConfig(k_active=7)
    with pytest.raises(ValueError, match=r"batch: expected a positive int, got 0"):
        BenchConfig(batch=0)


def test_a_contender_that_raises_is_recorded_and_the_others_are_still_timed(monkeypatch):
    """A compile or a CUDA-graph capture that fails must not discard the rows measured at that size."""
    import benchmarks.bench_cell as bench_cell

    real = bench_cell.build_model
    calls = {"plain": 0}

    def build(impl, config):
        model = real(impl, config)
        forward = model.core.forward
        if impl == "fast":  # fails at its first step, as a refused compile or capture does

            def refuse(*args, **kwargs):
                raise RuntimeError("compile refused by this build\n(details)")

            model.core.forward = refuse
        elif impl == "plain":  # fails later, in a timed round

            def late(*args, **kwargs):
                calls["plain"] += 1
                if calls["plain"] > 2:  # the saved-activation count and the warm-up step ran
                    raise RuntimeError("device lost")
                return forward(*args, **kwargs)

            model.core.forward = late
        return model

    monkeypatch.setattr(bench_cell, "build_model", build)
    report = run_benchmark(
        BenchConfig(**TINY), ["lstm", "fast", "plain", "dense"], "cpu", iters=2, warmup=1, show_progress=False
    )
    assert [r["impl"] for r in report["results"]] == ["lstm", "dense"]
    assert report["failed"] == {
        "fast": "RuntimeError: compile refused by this build (build and warm-up)",
        "plain": "RuntimeError: device lost (timed step 1)",
    }
    rows = {r["impl"]: r for r in report["results"]}
    assert len(rows["lstm"]["times_ms"]) == 2 and rows["dense"]["time_vs_lstm"] > 0
    assert rows["dense"]["time_vs_plain"] is None  # the reference failed: no ratio to it
    table = format_table(report)
    assert "RIM, fused loop (default): failed, RuntimeError: compile refused" in table
    json.dumps(report)


def test_denormal_benchmark_times_both_settings_and_names_the_cpu():
    from benchmarks import bench_denormals

    report = bench_denormals.run(["copying"], rounds=1, show_progress=False, profile="smoke")
    assert report["environment"]["cpu_model"] and report["profile"] == "smoke"
    rows = report["results"]
    assert {r["model"] for r in rows} == set(bench_denormals.cp.settings("smoke").models)
    for r in rows:
        assert r["weights"] == "fresh" and r["ms_flushed"] > 0 and r["ms_kept"] > 0
        assert r["kept_over_flushed"] == pytest.approx(r["ms_kept"] / r["ms_flushed"])
    assert "kept/flushed" in bench_denormals.format_table(report)
    with pytest.raises(ValueError, match=r"experiments: expected names among .*, got \['atari'\]"):
        bench_denormals.run(["atari"])


def test_denormal_benchmark_times_trained_weights_in_the_fresh_models_build():
    from benchmarks import bench_denormals
    from minirims.experiments.references import load_reference_model

    settings = bench_denormals.cp.settings("cpu")
    name = next(n for n in settings.models if n.startswith("rim"))
    trained = bench_denormals.trained_model(bench_denormals.cp, name, "cpu")
    fresh = bench_denormals.cp.make_model(name, settings)
    assert trained.training and settings.compile
    assert trained.core.compile_step == fresh.core.compile_step is True  # the reference loader's is False
    reference, _ = load_reference_model(bench_denormals.cp, name, "cpu")
    assert reference.core.compile_step is False
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[key], value.float(), atol=0, rtol=0)
    assert bench_denormals.trained_model(bench_denormals.cp, "lstm-48", "smoke") is None


def test_learner_runs_times_each_command_end_to_end_and_keeps_its_metrics(tmp_path, monkeypatch, capsys):
    from benchmarks import learner_runs

    assert learner_runs.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "copying_cpu" not in listed and "rim-6x48-k4-random" in listed and "--profile cpu" in listed
    smoke = (["copying", "--profile", "smoke", "--seeds", "1", "--models", "lstm-48"], "copying_smoke.json")
    broken = (["copying", "--profile", "nope"], "copying_nope.json")
    monkeypatch.setattr(learner_runs, "RUNS", {"smoke": smoke, "broken": broken})
    monkeypatch.setattr(
        learner_runs,
        "PROBE_ARGS",
        ["--size", "cpu", "--impls", "lstm", "--batch", "4", "--steps", "8", "--iters", "2", "--warmup", "1"],
    )
    out = tmp_path / "timings.json"
    assert learner_runs.main(["--json", str(out), "--threads", "1"]) == 1  # one run failed
    record = json.loads(out.read_text())
    ok, failed = record["runs"]["smoke"], record["runs"]["broken"]
    assert ok["returncode"] == 0 and ok["end_to_end_seconds"] > 0 and ok["threads"] == 1
    assert set(ok["metrics"]) == {"lstm-48", "chance"}
    assert failed["returncode"] == 2 and "profile: expected one of" in failed["stderr_tail"]
    assert record["provenance"]["cpu_model"] and record["benchmark"] == "learner_runs"
    probe = record["host_probe"]
    assert probe["before_ms"] > 0 and probe["after_ms"] > 0 and probe["threads"] == 1
    assert probe["reference"]["ms_per_step"] > 0 and "--impls lstm" in probe["what"]
    monkeypatch.setattr(learner_runs, "PROBE_ARGS", ["--size", "nope"])
    assert learner_runs.probe_host(1) is None  # a failed probe is recorded as None, not a crash
    source = Path(learner_runs.__file__).resolve().parent.parent / learner_runs.PROBE_RECORD
    row = next(r for r in json.loads(source.read_text())["results"] if r["impl"] == "lstm")
    assert (
        probe["reference"]["ms_per_step"] == round(row["ms_per_step"], 1)
        and probe["reference"]["threads"] == 2
    )
    assert learner_runs.probe_reference(tmp_path / "missing.json") is None
