"""What flushing denormal floats to zero saves on this CPU: training steps of fresh and of trained models.

Denormals (magnitudes below 1.2e-38 in float32) appear in a recurrent net as its states decay and its
gradients shrink; many x86 CPUs compute on them far slower than on normal floats. Training in the package
flushes them (:func:`minirims.experiments.train.denormals_flushed`). This times one training step (forward,
loss, backward) of each experiment's `cpu` models, freshly initialised and with the trained weights of the
reference models in ``results/models`` (training can make denormals that a fresh model lacks), with the
switch on and off, interleaved round by round; the median per case and the ratio off/on::

    python -m benchmarks.bench_denormals                        # 1 thread, 5 rounds
    python -m benchmarks.bench_denormals --json results/bench_denormals_<cpu>.json

A ratio near 1 means this CPU handles denormals at full speed (or none occur); the report names the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from minirims.experiments import bouncing_balls as bb
from minirims.experiments import copying as cp
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.common import provenance
from minirims.experiments.data.mnist import load_mnist, pixel_sequences
from minirims.experiments.references import load_reference_model
from minirims.experiments.train import denormals_flushed
from minirims.experiments.video import rollout_loss


def _copying_step(settings: Any) -> Callable[[nn.Module], torch.Tensor]:
    tokens, targets = cp.copying_batch(
        settings.batch_size, settings.train_delay, torch.Generator().manual_seed(0)
    )
    return lambda m: cp._copy_loss(m(tokens), targets)[0]


def _mnist_step(settings: Any) -> Callable[[nn.Module], torch.Tensor]:
    images, labels = load_mnist("train")
    x = pixel_sequences(images[: settings.batch_size], settings.train_size)
    y = torch.as_tensor(labels[: settings.batch_size]).long()
    return lambda m: F.cross_entropy(m(x), y)


def _balls_step(settings: Any) -> Callable[[nn.Module], torch.Tensor]:
    data = bb.make_data(settings.replace(n_train=settings.batch_size, n_val=0, n_test=1))["train"].to("cpu")
    frames = data.batch(torch.arange(settings.batch_size), settings.frame_size)
    return lambda m: rollout_loss(m, frames, settings.train_given, settings.feedback_grad)[0]


EXPERIMENTS = {
    "copying": (cp, _copying_step),
    "mnist_resolution": (mr, _mnist_step),
    "bouncing_balls": (bb, _balls_step),
}


def _time(model: nn.Module, step: Callable[[nn.Module], torch.Tensor], flush: bool) -> float:
    with denormals_flushed("cpu", flush):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        step(model).backward()
        return time.perf_counter() - t0


def trained_model(module: Any, name: str, profile: str) -> nn.Module | None:
    """The reference weights of ``name`` (None when there are none) in a model built as the fresh one is,
    in train mode: compiled where the profile compiles (the reference loader builds it uncompiled, which
    would time compilation, not weights)."""
    try:
        reference, _ = load_reference_model(module, name, profile)
    except (FileNotFoundError, ValueError):
        return None
    model = module.make_model(name, module.settings(profile))
    model.load_state_dict(reference.float().state_dict())
    return model.train()


def run(
    experiments: Sequence[str], rounds: int = 5, show_progress: bool = True, profile: str = "cpu"
) -> dict[str, Any]:
    """Time every case of ``experiments`` (models of ``profile``; trained ones where a reference exists);
    returns the report (environment, and one row per case)."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if not experiments or unknown:
        raise ValueError(f"experiments: expected names among {list(EXPERIMENTS)}, got {list(experiments)!r}")
    cases = []
    for exp in experiments:
        module, make_step = EXPERIMENTS[exp]
        settings = module.settings(profile)
        step = make_step(settings)
        for name in settings.models:
            torch.manual_seed(0)
            cases.append((exp, name, "fresh", module.make_model(name, settings).train(), step))
            trained = trained_model(module, name, profile)
            if trained is not None:  # else no trained weights of this model: only the fresh one is timed
                cases.append((exp, name, "trained", trained, step))
    times: dict[int, dict[bool, list[float]]] = {i: {True: [], False: []} for i in range(len(cases))}
    with tqdm(total=len(cases) * (rounds + 1) * 2, desc="bench_denormals", disable=not show_progress) as bar:
        for round_ in range(rounds + 1):  # round 0 warms up
            for i, (_, _, _, model, step) in enumerate(cases):
                for flush in (True, False):
                    seconds = _time(model, step, flush)
                    if round_:
                        times[i][flush].append(seconds)
                    bar.update(1)
    rows = []
    for i, (exp, name, weights, _, _) in enumerate(cases):
        on, off = (statistics.median(times[i][f]) for f in (True, False))
        rows.append(
            {
                "experiment": exp,
                "model": name,
                "weights": weights,
                "ms_flushed": 1e3 * on,
                "ms_kept": 1e3 * off,
                "kept_over_flushed": off / on,
                "times_ms": {
                    "flushed": [1e3 * t for t in times[i][True]],
                    "kept": [1e3 * t for t in times[i][False]],
                },
            }
        )
    return {
        "environment": provenance("cpu"),
        "profile": profile,
        "rounds": rounds,
        "step": "forward + loss + backward",
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"{env['cpu_model']} ({', '.join(env['cpu_flags'])}), {env['threads']} thread(s), "
        f"median of {report['rounds']} rounds",
        f"{'experiment':18s}{'model':14s}{'weights':9s}{'flushed ms':>11s}{'kept ms':>10s}"
        f"{'kept/flushed':>13s}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['experiment']:18s}{r['model']:14s}{r['weights']:9s}{r['ms_flushed']:11.1f}{r['ms_kept']:10.1f}"
            f"{r['kept_over_flushed']:13.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds after one warm-up round (default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads: expected positive ints, got {args.rounds} and {args.threads}")
    torch.set_num_threads(args.threads)
    report = run(args.experiments, args.rounds)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
