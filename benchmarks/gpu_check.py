"""Every GPU measurement of the RIM in one go, offline, written as JSON records to a folder.

GPU time comes in minutes, on a machine that cannot download or install anything, so this script is
prepared and tested on the CPU (``--device cpu --quick``) and run once on a GPU, from the repository root,
with the python that holds torch there (see ``benchmarks/README.md`` for the device tool's exact call)::

    make gpu-data                                                          # here: MNIST into .gpu/data
    python3 -m benchmarks.gpu_check --device cuda --data .gpu/data --out "$OUT/gpu"    # there, ~5-7 min
    python -m benchmarks.gpu_check --device cpu --quick --out /tmp/check   # here: proves it runs (seconds)

``--device`` is always explicit: ``--device cuda`` on a machine without CUDA stops at once with one line
(no silent full-size run on the CPU). A **preflight** comes first and drops what cannot run, saying why:

- CUDA present (else the one-line refusal above);
- ``torch.compile`` works on the device (a tiny function, compiled and compared with eager; run when a
  contender needs it): if not, the ``compiled`` contender is dropped;
- MNIST in the data folder (``--data``, default ``MINIRIMS_DATA``), never downloaded (no network there):
  if it is missing, the MNIST part is dropped. The folder may hold the cache (``mnist.npz`` +
  ``mnist.json``) or only the verified source ``mnist.pkl.gz`` (17 MB, what ``make gpu-data`` copies),
  from which the cache is built there in seconds.

Then it writes, after every part (a run stopped by its time limit keeps what it finished):

- ``bench_cell_<device>_<size>.json`` for the paper size (6 x 100 vs cuDNN LSTM-600) and the cpu-profile
  size (6 x 32 vs LSTM-192): ``benchmarks.bench_cell`` on that device, contenders ``lstm`` (cuDNN), ``plain``,
  ``fast``, ``compiled`` (torch.compile of the fused step) and, on CUDA, ``graphed`` (the whole training
  step, forward + backward + Adam, captured once as a CUDA graph and replayed); a contender that fails is
  recorded with its error and the others are kept;
- ``mnist_epoch_<device>.json``, after each model: training steps of the MNIST ``full`` profile (50k digits
  at 14x14, batch 64) for ``rim-6x100-k4`` and ``lstm-600`` (``--quick``: the smoke profile's models), on
  the path the profile trains (eager: the ``full`` profile does not compile), with bf16 autocast on CUDA as
  ``fit`` trains. The clock starts after the warm-up steps (which hold any compile and cuDNN's first-call
  set-up, reported apart); the epoch time is the mean timed step times the steps of an epoch, and
  ``--mnist-seconds`` caps the timed steps of each model;
- ``balls_steps_<device>.json``, after each model: training steps of each bouncing-balls model at the
  ``full`` profile (rollout loss, bf16 autocast on CUDA), the median step after a warm-up step, and one
  seed's training time extrapolated to the profile's steps (its claim: < 8 min per seed for the three);
- ``gpu_check.json``, after the preflight and after every part: the summary (device, preflight, what was
  dropped and why, what ran, what failed and why, wall time).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.bench_cell import SIZES, BenchConfig, format_table, run_benchmark

__all__ = ["main", "mnist_models", "preflight", "time_balls_steps", "time_mnist_epoch"]

QUICK = dict(batch=4, steps=6)


class Refused(Exception):
    """The run cannot start (e.g. ``--device cuda`` without CUDA): one line for the user, exit status 2."""


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300] if text else ''}"


def mnist_models(quick: bool = False) -> tuple[str, str]:
    """The MNIST models timed: the paper's RIM and LSTM-600 of the ``full`` profile (``quick``: the smoke
    profile's RIM and LSTM)."""
    from minirims.experiments import mnist_resolution as mr

    return tuple(mr.PROFILES["smoke"].models[:2]) if quick else ("rim-6x100-k4", "lstm-600")  # type: ignore


def _tiny_compile(device: torch.device) -> str | None:
    """None if ``torch.compile`` (inductor) compiles and runs a tiny function on ``device`` as eager does,
    else why not, in one line."""
    try:
        fn = torch.compile(lambda x: torch.sin(x) * 2.0 + 1.0, dynamic=False)
        x = torch.linspace(-3.0, 3.0, 64, device=device)
        if not torch.allclose(fn(x), torch.sin(x) * 2.0 + 1.0, atol=1e-5):
            return "a tiny compiled function gave other numbers than eager"
    except Exception as err:
        return _first_line(err)
    return None


def _mnist_in(data: Path) -> tuple[Path | None, str]:
    """(the MNIST cache in ``data``, how it was found) or (None, why not); never downloads."""
    from minirims.experiments.data.mnist import fetch_mnist

    if not data.is_dir():
        return None, f"MNIST is not in {data} (no such folder)"
    try:
        path = fetch_mnist(data, download=False)  # verifies the cache, or builds it from a local source
    except (ValueError, OSError) as err:  # MNISTUnavailableError is a ValueError
        return None, f"MNIST is not in {data} ({_first_line(err)})"
    return path, f"verified cache {path}"


def preflight(
    device: torch.device,
    data: Path,
    impls: Sequence[str],
    mnist: bool,
    tiny_compile: Callable[[torch.device], str | None] | None = None,
) -> dict[str, Any]:
    """What can run here, before any work: CUDA, ``torch.compile`` on the device, MNIST in ``data``.

    Raises :class:`Refused` when ``device`` is CUDA and CUDA is not available. Returns ``{"checks": {...},
    "dropped": {part: why}}``; a dropped part is ``compiled`` (the bench contender) or ``mnist_epoch``.
    ``tiny_compile(device)`` (default :func:`_tiny_compile`) says why compiling fails there, or None.
    """
    checks: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    dropped: dict[str, str] = {}
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Refused(
                f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda}); run this on the GPU machine, or test the script "
                "here with --device cpu --quick"
            )
        checks["cuda"] = {
            "device_name": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    if "compiled" in impls:
        why = (tiny_compile or _tiny_compile)(device)
        checks["compile"] = "ok" if why is None else f"failed: {why}"
        if why is not None:
            dropped["compiled"] = f"torch.compile does not work on {device}: {why}"
    else:
        checks["compile"] = "not needed"
    if mnist:
        path, how = _mnist_in(data)
        checks["mnist"] = how
        if path is None:
            dropped["mnist_epoch"] = (
                f"{how}; prepare it on a machine with a network (make gpu-data copies it to .gpu/data) and "
                "carry that folder"
            )
    else:
        checks["mnist"] = "skipped (--skip-mnist)"
    return {"checks": checks, "dropped": dropped}


def time_mnist_epoch(
    name: str,
    device: torch.device,
    quick: bool = False,
    max_seconds: float = 120.0,
    data: Path | None = None,
    warmup_steps: int | None = None,
) -> dict[str, Any]:
    """Time training steps of ``name`` (an MNIST model name) at the ``full`` profile (``quick``: smoke, 5
    steps), built and stepped as the profile trains it: its ``compile`` setting (the ``full`` profile runs
    eager), Adam, clipping, and bf16 autocast on CUDA as ``fit`` does.

    The first ``warmup_steps`` steps (default 3; 1 with ``quick``) run untimed: they hold any compile and
    the first-call set-up, reported as ``warmup_s``. Then steps are timed one by one until the epoch ends or
    ``max_seconds`` of timed steps have passed (``capped``). ``epoch_seconds_extrapolated`` is the mean timed
    step times the steps of one epoch: no warm-up or compile time enters it.
    """
    from minirims.experiments import mnist_resolution as mr
    from minirims.experiments.data import pixel_sequences
    from minirims.experiments.data.mnist import load_mnist

    settings = mr.settings("smoke" if quick else "full")
    images, labels = load_mnist("train", data_dir=data, download=False)
    n_train = 5 * settings.batch_size if quick else settings.n_train
    tokens = pixel_sequences(images[:n_train], settings.train_size).to(device)
    targets = torch.as_tensor(labels[:n_train]).long().to(device)
    torch.manual_seed(0)
    model = mr.make_model(name, settings).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    bs = settings.batch_size
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(0)).to(device)
    n_steps = n_train // bs
    warmup = (1 if quick else 3) if warmup_steps is None else warmup_steps
    warmup = min(warmup, n_steps - 1)
    use_amp = device.type == "cuda"
    times: list[float] = []
    loss = torch.zeros(())
    _sync(device)
    warm_start = time.perf_counter()
    warmup_s = 0.0
    for step in range(n_steps):
        idx = order[step * bs : (step + 1) * bs]
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(tokens[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        _sync(device)
        if step < warmup:
            warmup_s = time.perf_counter() - warm_start
            continue
        times.append(time.perf_counter() - t0)
        if sum(times) > max_seconds:
            break
    mean = statistics.fmean(times)
    return {
        "model": name,
        "profile": settings.profile,
        "compile_step": bool(getattr(model.core, "compile_step", False)),
        "amp_bf16": use_amp,
        "batch_size": bs,
        "steps_per_epoch": n_steps,
        "warmup_steps": warmup,
        "warmup_s": warmup_s,
        "steps_timed": len(times),
        "capped": warmup + len(times) < n_steps,
        "median_step_s": statistics.median(times),
        "mean_step_s": mean,
        "seconds_timed": sum(times),
        "epoch_seconds_extrapolated": mean * n_steps,
        "epoch_estimate": "mean timed step (after the warm-up) x steps per epoch",
        "last_loss": float(loss.detach()),
    }


def time_balls_steps(
    device: torch.device,
    quick: bool = False,
    n_steps: int = 30,
    on_model: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time ``n_steps`` training steps of every bouncing-balls model at the ``full`` profile (``quick``:
    smoke, 3 steps), as ``fit`` trains (rollout loss, bf16 autocast on CUDA, Adam, clipping).

    Returns, per model: the median step (the first, which warms up, apart), and the training time of one seed
    extrapolated to the profile's steps; plus the sum over the models: the profile's claim is < 8 min.
    ``on_model(result so far)`` is called after each model (to write it before the next one starts).
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
    out["amp_bf16"] = use_amp
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
        if on_model is not None:
            on_model(out)
    out["all_models_seed_seconds_extrapolated"] = sum(
        out[m]["seed_seconds_extrapolated"] for m in settings.models
    )
    return out


def _parse_device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:i], got {text!r}")
    return device


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON records")
    parser.add_argument(
        "--device", type=_parse_device, required=True, help="cuda (the GPU run) or cpu (a test here)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="MNIST folder (the cache, or mnist.pkl.gz from make gpu-data; default MINIRIMS_DATA); "
        "never downloaded",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and the smoke profile (CPU test)")
    parser.add_argument("--impls", default=None, help="bench contenders (default: all for the device)")
    parser.add_argument(
        "--iters", type=int, default=None, help="timed steps per contender (default 10; 1 quick)"
    )
    parser.add_argument(
        "--mnist-seconds", type=float, default=60.0, help="cap on each model's timed MNIST steps (s)"
    )
    parser.add_argument("--skip-bench", action="store_true", help="no bench_cell (e.g. to rerun a part)")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-balls", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the preflight, then every check; returns the summary (also written to ``<out>/gpu_check.json``).

    ``--device cuda`` without CUDA prints one line to stderr and exits with status 2, before any work.
    """
    args = _parse_args(argv)
    device: torch.device = args.device
    from minirims.experiments.data.mnist import data_dir

    data = args.data if args.data is not None else data_dir()
    start = time.perf_counter()
    default_impls = ["lstm", "plain", "fast", "compiled"] + (["graphed"] if device.type == "cuda" else [])
    impls = [s.strip() for s in args.impls.split(",")] if args.impls else default_impls
    try:
        pre = preflight(device, data, impls, mnist=not args.skip_mnist)
    except Refused as err:
        print(f"gpu_check: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    impls = [i for i in impls if i not in pre["dropped"]]
    iters = args.iters if args.iters is not None else (1 if args.quick else 10)
    warmup = 1 if args.quick else 3
    summary: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "quick": args.quick,
        "data": str(data),
        "preflight": pre["checks"],
        "dropped": pre["dropped"],
        "impls": impls,
        "ran": [],
        "failed": {},
    }
    for part, why in pre["dropped"].items():
        print(f"preflight: dropped {part}: {why}", flush=True)
    summary_path = args.out / "gpu_check.json"
    _write(summary_path, summary)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for size in SIZES if impls and not args.skip_bench else ():
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
            for impl, why in report["failed"].items():
                summary["failed"][f"{key}_{impl}"] = why
        except Exception as err:  # keep going: record what broke
            summary["failed"][key] = f"{_first_line(err)}\n{traceback.format_exc(limit=3)}"
            print(f"{key} failed: {_first_line(err)}", flush=True)
        _write(summary_path, summary)
    if not args.skip_mnist and "mnist_epoch" not in pre["dropped"]:
        epochs: dict[str, Any] = {}
        summary["mnist_epoch"] = epochs
        for name in mnist_models(args.quick):
            try:
                epochs[name] = time_mnist_epoch(name, device, args.quick, args.mnist_seconds, data)
                print(f"mnist epoch {name}: {json.dumps(epochs[name])}", flush=True)
            except Exception as err:
                summary["failed"][f"mnist_epoch_{name}"] = _first_line(err)
                print(f"mnist epoch {name} failed: {_first_line(err)}", flush=True)
            _write(args.out / f"mnist_epoch_{device.type}.json", epochs)
            _write(summary_path, summary)
        summary["ran"].append("mnist_epoch")
    if not args.skip_balls:
        balls_path = args.out / f"balls_steps_{device.type}.json"
        try:
            balls = time_balls_steps(device, args.quick, on_model=lambda part: _write(balls_path, part))
            _write(balls_path, balls)
            print(f"balls steps: {json.dumps(balls)}", flush=True)
            summary["ran"].append("balls_steps")
            summary["balls_steps"] = balls
        except Exception as err:
            summary["failed"]["balls_steps"] = _first_line(err)
            print(f"balls steps failed: {_first_line(err)}", flush=True)
    summary["wall_seconds"] = time.perf_counter() - start
    _write(summary_path, summary)
    print(f"wall time {summary['wall_seconds']:.0f} s; failed: {sorted(summary['failed']) or 'none'}")
    return summary


if __name__ == "__main__":
    main()
