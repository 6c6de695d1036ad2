"""Every GPU measurement of the RIM in one go, written as JSON records to a folder.

GPU time comes in minutes, so this script is prepared and tested on the CPU
(``--device cpu --quick``) and run once on a GPU::

    python -m benchmarks.gpu_check --out results/gpu                       # on the GPU machine, < 8 minutes
    python -m benchmarks.gpu_check --device cpu --quick --out /tmp/check   # here: proves it runs (seconds)
    make gpu-check OUT=...                                                 # the first line, inside .venv

It writes, as it goes (a run stopped by its time limit keeps what it finished):

- ``bench_cell_<device>_<size>.json`` for the paper size (6 x 100 vs cuDNN LSTM-600) and the cpu-profile
  size (6 x 32 vs LSTM-192): ``benchmarks.bench_cell`` on that device, contenders ``lstm`` (cuDNN), ``plain``,
  ``fast``, ``compiled`` (torch.compile of the fused step) and, on CUDA, ``graphed`` (the whole training
  step, forward + backward + Adam, captured once as a CUDA graph and replayed);
- ``mnist_epoch_<device>.json``: one epoch of the MNIST ``full`` profile (50k digits at 14x14, batch 64) for
  ``rim-6x100-k4`` and ``lstm-600`` (``--quick``: the smoke profile's models), timed step by step with bf16
  autocast as ``fit`` trains; ``--mnist-seconds`` caps each model's epoch, and a capped epoch is recorded as
  such with the measured steps per second and the extrapolated epoch time (never reported as a full epoch);
- ``balls_steps_<device>.json``: 30 training steps of each bouncing-balls model at the ``full`` profile
  (rollout loss, bf16 autocast), the median step and one seed's training time extrapolated to the profile's
  steps, to check the profile's "< 8 min per seed for the three models" before running it;
- ``gpu_check.json``: the summary (settings, device, what ran, what failed and why, wall time).

A contender that fails (e.g. a capture that this PyTorch build refuses) is recorded with its error and the
rest goes on. MNIST comes from ``MINIRIMS_DATA``: the GPU machine cannot download, so carry a cache folder
(``make gpu-data`` copies it to ``.gpu/data``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.bench_cell import SIZES, BenchConfig, format_table, run_benchmark

__all__ = ["main", "mnist_models", "time_balls_steps", "time_mnist_epoch"]

QUICK = dict(batch=4, steps=6)


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist_models(quick: bool = False) -> tuple[str, str]:
    """The MNIST models timed: the paper's RIM and LSTM-600 of the ``full`` profile (``quick``: the smoke
    profile's RIM and LSTM)."""
    from minirims.experiments import mnist_resolution as mr

    return tuple(mr.PROFILES["smoke"].models[:2]) if quick else ("rim-6x100-k4", "lstm-600")  # type: ignore


def time_mnist_epoch(
    name: str,
    device: torch.device,
    quick: bool = False,
    max_seconds: float = 120.0,
    compile_step: bool = True,
) -> dict[str, Any]:
    """Train ``name`` (an MNIST model name) for one epoch of the full profile (``quick``: 5 smoke steps).

    Returns steps done, steps in the epoch, seconds (first step, which compiles, separately), steps per
    second over the rest, the extrapolated epoch time, whether the epoch was capped, and the last loss.
    """
    from minirims.experiments import mnist_resolution as mr
    from minirims.experiments.data import load_mnist, pixel_sequences

    settings = mr.settings("smoke" if quick else "full")
    images, labels = load_mnist("train")
    n_train = 5 * settings.batch_size if quick else settings.n_train
    tokens = pixel_sequences(images[:n_train], settings.train_size).to(device)
    targets = torch.as_tensor(labels[:n_train]).long().to(device)
    torch.manual_seed(0)
    model = mr.make_model(name, settings).to(device).train()
    if compile_step and hasattr(model.core, "compile_step"):
        model.core.compile_step = True
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    bs = settings.batch_size
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(0)).to(device)
    n_steps = n_train // bs
    use_amp = device.type == "cuda"
    times: list[float] = []
    loss = torch.zeros(())
    start = time.perf_counter()
    for step in range(n_steps):
        idx = order[step * bs : (step + 1) * bs]
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(tokens[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    rest = times[1:] or times
    per_step = statistics.median(rest)
    return {
        "model": name,
        "compile_step": bool(compile_step and hasattr(model.core, "compile_step")),
        "amp_bf16": use_amp,
        "batch_size": bs,
        "steps_done": len(times),
        "steps_per_epoch": n_steps,
        "capped": len(times) < n_steps,
        "first_step_s": times[0],
        "median_step_s": per_step,
        "seconds_measured": sum(times),
        "epoch_seconds": sum(times) if len(times) == n_steps else None,
        "epoch_seconds_extrapolated": times[0] + per_step * (n_steps - 1),
        "last_loss": float(loss.detach()),
    }


def time_balls_steps(device: torch.device, quick: bool = False, n_steps: int = 30) -> dict[str, Any]:
    """Time ``n_steps`` training steps of every bouncing-balls model at the ``full`` profile (``quick``:
    smoke, 3 steps), as ``fit`` trains (rollout loss, bf16 autocast on CUDA, Adam, clipping).

    Returns, per model: the median step (the first, which warms up, apart), and the training time of one seed
    extrapolated to the profile's steps; plus the sum over the models: the profile's claim is < 8 min.
    """
    from minirims.experiments import bouncing_balls as bb
    from minirims.experiments.video import rollout_loss

    settings = bb.settings("smoke" if quick else "full")
    n_steps = 3 if quick else n_steps
    data = bb.make_data(settings.replace(n_train=settings.batch_size, n_val=1, n_test=1))
    frames = (
        data["train"].to(device).batch(torch.arange(settings.batch_size, device=device), settings.frame_size)
    )
    profile_steps = bb.training_steps(settings)
    use_amp = device.type == "cuda"
    out: dict[str, Any] = {"profile": settings.profile, "batch_size": settings.batch_size}
    for name in settings.models:
        torch.manual_seed(0)
        model = bb.make_model(name, settings).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        times = []
        for _ in range(n_steps):
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss, _ = rollout_loss(model, frames, settings.train_given, settings.feedback_grad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        per_step = statistics.median(times[1:] or times)
        out[name] = {
            "first_step_s": times[0],
            "median_step_s": per_step,
            "profile_steps": profile_steps,
            "seed_seconds_extrapolated": per_step * profile_steps,
            "last_loss": float(loss.detach()),
        }
    out["all_models_seed_seconds_extrapolated"] = sum(
        out[m]["seed_seconds_extrapolated"] for m in settings.models
    )
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every check; returns the summary (also written to ``<out>/gpu_check.json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON records")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and the smoke profile (CPU test)")
    parser.add_argument("--impls", default=None, help="bench contenders (default: all for the device)")
    parser.add_argument(
        "--iters", type=int, default=None, help="timed steps per contender (default 20; 1 quick)"
    )
    parser.add_argument("--mnist-seconds", type=float, default=120.0, help="cap per model's MNIST epoch (s)")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-balls", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device: CUDA is not available, got {args.device!r}")
    start = time.perf_counter()
    default_impls = ["lstm", "plain", "fast", "compiled"] + (["graphed"] if device.type == "cuda" else [])
    impls = [s.strip() for s in args.impls.split(",")] if args.impls else default_impls
    iters = args.iters if args.iters is not None else (1 if args.quick else 10)
    warmup = 1 if args.quick else 3
    summary: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "quick": args.quick,
        "impls": impls,
        "ran": [],
        "failed": {},
    }
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for size in SIZES:
        config = BenchConfig.preset(size, **(QUICK if args.quick else {}))
        key = f"bench_cell_{size}"
        try:
            report = run_benchmark(config, impls, device, iters, warmup, show_progress=False)
            report["settings"]["size"] = size
            _write(args.out / f"bench_cell_{device.type}_{size}.json", report)
            print(f"== {size} ==\n{format_table(report)}\n", flush=True)
            summary["ran"].append(key)
            summary[key] = {
                r["impl"]: {"ms": r["ms_per_step"], "vs_lstm": r["time_vs_lstm"]} for r in report["results"]
            }
        except Exception as err:  # keep going: record what broke
            summary["failed"][key] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
            print(f"{key} failed: {type(err).__name__}: {err}", flush=True)
        _write(args.out / "gpu_check.json", summary)
    if not args.skip_mnist:
        epochs = {}
        for name in mnist_models(args.quick):
            try:
                epochs[name] = time_mnist_epoch(
                    name, device, args.quick, args.mnist_seconds, compile_step=not args.quick
                )
                print(f"mnist epoch {name}: {json.dumps(epochs[name])}", flush=True)
            except Exception as err:
                summary["failed"][f"mnist_epoch_{name}"] = f"{type(err).__name__}: {err}"
                print(f"mnist epoch {name} failed: {type(err).__name__}: {err}", flush=True)
            _write(args.out / f"mnist_epoch_{device.type}.json", epochs)
        summary["ran"].append("mnist_epoch")
        summary["mnist_epoch"] = epochs
    if not args.skip_balls:
        try:
            balls = time_balls_steps(device, args.quick)
            _write(args.out / f"balls_steps_{device.type}.json", balls)
            print(f"balls steps: {json.dumps(balls)}", flush=True)
            summary["ran"].append("balls_steps")
            summary["balls_steps"] = balls
        except Exception as err:
            summary["failed"]["balls_steps"] = f"{type(err).__name__}: {err}"
            print(f"balls steps failed: {type(err).__name__}: {err}", flush=True)
    summary["wall_seconds"] = time.perf_counter() - start
    _write(args.out / "gpu_check.json", summary)
    print(f"wall time {summary['wall_seconds']:.0f} s; failed: {sorted(summary['failed']) or 'none'}")
    return summary


if __name__ == "__main__":
    main()
