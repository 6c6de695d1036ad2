"""Where a RIM training step spends its time: torch.profiler by op (and by input shape), plain vs fused path.

Run from the repository root (one thread by default: the breakdown is steadier, see ``README.md``)::

    python -m benchmarks.profile_cell --size cpu            # 6 x 32 modules, B=64, T=196
    python -m benchmarks.profile_cell --size paper --impl fast --rows 15 --shapes

Prints, for one training step after a warm-up step (forward + cross-entropy + backward + Adam), the ops with
the most self CPU time, their call counts per time step, and the share of the step.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_cell import SIZES, BenchConfig, build_model


def profile_step(impl: str, config: BenchConfig, rows: int = 12, shapes: bool = False, seed: int = 0) -> str:
    """A text table of the ``rows`` ops with the most self CPU time in one training step of ``impl``."""
    torch.manual_seed(seed)
    model = build_model(impl, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 2, (config.batch, config.steps), generator=gen)
    labels = torch.randint(0, config.n_classes, (config.batch,), generator=gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens), labels).backward()
        optimizer.step()

    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
        step()
    events = [e for e in prof.key_averages(group_by_input_shape=shapes) if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = [
        f"{impl}: {total / 1e3:.0f} ms self time in aten ops, "
        f"{calls / config.steps:.0f} aten calls per time step",
        f"{'op':28} {'share':>6} {'ms':>8} {'calls/step':>10}" + ("  input shapes" if shapes else ""),
    ]
    for e in events[:rows]:
        shape = f"  {e.input_shapes}" if shapes else ""
        lines.append(
            f"{e.key:28} {100 * e.self_cpu_time_total / total:5.1f}% {e.self_cpu_time_total / 1e3:8.1f} "
            f"{e.count / config.steps:10.1f}{shape}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="cpu", choices=list(SIZES))
    parser.add_argument(
        "--impl", default="plain,fast", help="comma-separated: plain, fast, lstm, loop, dense"
    )
    parser.add_argument("--steps", type=int, default=196, help="T (default 196)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--shapes", action="store_true", help="group by input shape too")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    torch.set_num_threads(args.threads)
    config = BenchConfig.preset(args.size, steps=args.steps)
    for impl in [s.strip() for s in args.impl.split(",") if s.strip()]:
        print(profile_step(impl, config, args.rows, args.shapes), end="\n\n")


if __name__ == "__main__":
    main()
