"""How long a learner waits: each `cpu` run of the course, end to end, as a learner starts it.

Each run is the command a learner (or a notebook's training cell) runs, started in a fresh process with two
threads, from nothing (an empty runs folder: every compile and data load included), one after the other on
an otherwise quiet machine::

    python -m benchmarks.learner_runs --list                    # what would run
    python -m benchmarks.learner_runs                           # all of them (about an hour)
    python -m benchmarks.learner_runs --only copying ablation --json results/timings/learner_runs_<cpu>.json

The record holds, per run, the command, ``end_to_end_seconds``, the exit status and the run's own record
(its metrics: what the learner saw), beside the CPU (model, flags), the threads and the commit
(:func:`minirims.experiments.common.provenance`). Run it from a fresh clone (``make venv data`` first) for the
numbers a learner meets; the notebooks' time estimates come from these records.

Hosts of one CPU type differ in speed (the same AMD EPYC model has run the same code 1.5-2x slower on some VMs
than on others), so the record also times a fixed workload before and after the runs: one training step of
``nn.LSTM(192)`` at the ``cpu`` size of :mod:`benchmarks.bench_cell` (:data:`PROBE_ARGS`), in ms, to set
beside that step on the host of the other records (:func:`probe_reference`, from :data:`PROBE_RECORD`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from minirims.experiments.common import provenance

#: name -> (the experiment command and its options, the record file it writes)
RUNS: dict[str, tuple[list[str], str]] = {
    "copying": (["copying", "--profile", "cpu", "--seeds", "1"], "copying_cpu.json"),
    "mnist": (["mnist-resolution", "--profile", "cpu", "--seeds", "1"], "mnist_resolution_cpu.json"),
    "balls": (["bouncing-balls", "--profile", "cpu", "--seeds", "1"], "bouncing_balls_cpu.json"),
    "ablation": (
        ["copying", "--profile", "cpu", "--seeds", "1", "--models", "rim-6x48-k4-random"],
        "copying_cpu.json",
    ),
}
# the same runs with their models trained side by side in two processes of one thread each
RUNS.update(
    {
        f"{name}-2proc": ([*args, "--workers", "2"], record)
        for name, (args, record) in RUNS.items()
        if name != "ablation"
    }
)


#: the host probe: bench_cell's nn.LSTM row at the cpu size (its --threads and --json are added)
PROBE_ARGS: list[str] = ["--size", "cpu", "--impls", "lstm", "--iters", "5", "--warmup", "1"]
#: the record of that step on the host of the other records (2 threads), relative to the repository
PROBE_RECORD = Path("results") / "bench_cell_cpu_2threads_cpu.json"


def probe_reference(record: Path | None = None) -> dict[str, Any] | None:
    """The probe's step on the records' host, read from :data:`PROBE_RECORD`: ms_per_step, threads, record.

    None if the record is missing or has no ``nn.LSTM`` row (the probe is still timed and recorded).
    """
    path = record or Path(__file__).resolve().parent.parent / PROBE_RECORD
    try:
        report = json.loads(path.read_text())
        row = next(r for r in report["results"] if r["impl"] == "lstm")
        return {
            "ms_per_step": round(row["ms_per_step"], 1),
            "threads": report["settings"]["threads"],
            "record": str(PROBE_RECORD),
        }
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def probe_host(threads: int = 2) -> float | None:
    """ms of one ``nn.LSTM`` training step (:data:`PROBE_ARGS`) in a fresh process; None if it failed."""
    with tempfile.TemporaryDirectory(prefix="learner-probe-") as tmp:
        out = Path(tmp) / "probe.json"
        command = [sys.executable, "-m", "benchmarks.bench_cell", *PROBE_ARGS, "--threads", str(threads)]
        done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True)
        if done.returncode or not out.exists():
            return None
        results = json.loads(out.read_text())["results"]
    return round(results[0]["ms_per_step"], 1) if results else None


def time_run(name: str, threads: int = 2) -> dict[str, Any]:
    """Run ``name`` of :data:`RUNS` in a fresh process with ``threads`` threads; its time, status, record."""
    args, record_name = RUNS[name]
    with tempfile.TemporaryDirectory(prefix=f"learner-{name}-") as tmp:
        command = [
            sys.executable,
            "-m",
            "minirims",
            *args,
            "--runs-dir",
            tmp,
            "--results",
            tmp,
            "--no-progress",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        env.pop("MINIRIMS_PROFILE", None)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        path = Path(tmp) / record_name
        record = json.loads(path.read_text()) if path.exists() else None
    return {
        "command": "python -m minirims " + " ".join(args),
        "threads": threads,
        "end_to_end_seconds": round(seconds, 1),
        "returncode": done.returncode,
        "stderr_tail": done.stderr[-2000:] if done.returncode else "",
        "metrics": record["metrics"] if record else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=None, help="these runs only")
    parser.add_argument(
        "--threads", type=int, default=2, help="threads per run (default 2, a learner's laptop)"
    )
    parser.add_argument("--json", default=None, help="write the record here")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    names = args.only or list(RUNS)
    if args.list:
        for name in names:
            print(f"{name:14} python -m minirims {' '.join(RUNS[name][0])}")
        return 0
    probe = {
        "what": "ms per nn.LSTM training step, bench_cell " + " ".join(PROBE_ARGS),
        "threads": args.threads,
    }
    probe["before_ms"] = probe_host(args.threads)
    probe["reference"] = reference = probe_reference()
    record: dict[str, Any] = {
        "benchmark": "learner_runs",
        "provenance": provenance(),
        "host_probe": probe,
        "runs": {},
    }
    known = f"{reference['ms_per_step']} ms" if reference else "unknown"
    print(f"host probe: {probe['before_ms']} ms a step (the records' host: {known})")

    def save() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")

    for name in names:
        result = record["runs"][name] = time_run(name, args.threads)
        status = "ok" if result["returncode"] == 0 else f"failed ({result['returncode']})"
        print(f"{name:14} {result['end_to_end_seconds'] / 60:6.1f} min  {status}", flush=True)
        save()  # after every run, so that a stop loses little
    probe["after_ms"] = probe_host(args.threads)
    print(f"host probe after the runs: {probe['after_ms']} ms a step")
    save()
    return 0 if all(r["returncode"] == 0 for r in record["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
