"""Speed of the bouncing-balls simulator: sequences per second at several batch sizes.

The simulator loops over time steps and collision rounds in Python but is vectorized over sequences,
so the time per sequence should fall as the batch grows. Usage::

    python -m benchmarks.bench_balls                       # 1k, 10k and 50k sequences of 51 frames, 4 balls
    python -m benchmarks.bench_balls --sequences 2000 50000 --balls 8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from minirims.experiments.data.balls import make_balls


def time_simulation(n_sequences: int, n_balls: int = 4, n_frames: int = 51, seed: int = 0) -> float:
    """Seconds to simulate ``n_sequences`` sequences (positions; frames render later, on device)."""
    start = time.perf_counter()
    make_balls(n_sequences, n_balls, n_frames, seed=seed)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Print one line per size; return the measurements (sequences, seconds, sequences/s)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--balls", type=int, default=4)
    parser.add_argument("--frames", type=int, default=51)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sequences:
        seconds = time_simulation(n, args.balls, args.frames)
        rows.append({"sequences": n, "seconds": seconds, "sequences_per_s": n / seconds})
        rate = n / seconds
        what = f"{n:>6} sequences x {args.frames} frames, {args.balls} balls"
        print(f"{what}: {seconds:6.2f} s, {rate:8.0f} seq/s")
    return rows


if __name__ == "__main__":
    main()
