"""Compare bouncing-balls probes with the same seed of the record ``results/bouncing_balls_cpu.json``.

    python compare_with_record.py /tmp/bb/probes/rim65_s0.json ...   (run from the repository root)

The probes are the JSON files of ``../bouncing_balls_cpu_lr_sweep_2026-12-06/probe.py``. For each test set it
prints the rollout frames (1-based) where the probe, and the record's rim-6-4 of the same seed, are below both
LSTMs of the record's same seed, and the per-frame BCE at t+1/2/3/5/10/15.
"""

import json
import sys

FRAMES = (0, 1, 2, 4, 9, 14)
rec = json.load(open("results/bouncing_balls_cpu.json"))["metrics"]


def seed_curve(model: str, test_set: str, seed: int) -> list[float]:
    return rec[model][test_set]["per_frame_per_seed"][seed]


def below_both(curve: list[float], a: list[float], b: list[float]) -> list[int]:
    return [i + 1 for i in range(len(curve)) if curve[i] < min(a[i], b[i])]


def short(curve: list[float]) -> list[float]:
    return [round(curve[i], 1) for i in FRAMES]


for path in sys.argv[1:]:
    r = json.load(open(path))
    seed = r["seed"]
    train_s = r["train_seconds"]["values"][0]
    print(f"{r['tag']} ({r['model']}, seed {seed}, train {train_s:.0f} s, best epoch {r['best_epoch']})")
    for test_set, curve in r["per_frame"].items():
        l256, l512 = seed_curve("lstm-256", test_set, seed), seed_curve("lstm-512", test_set, seed)
        r64 = seed_curve("rim-6-4", test_set, seed)
        print(f"  {test_set}: below both LSTMs at frames {below_both(curve, l256, l512)}")
        print(f"    record rim-6-4, same seed: {below_both(r64, l256, l512)}")
        print(f"    t+1/2/3/5/10/15: probe {short(curve)}, rim-6-4 {short(r64)}")
        print(f"    lstm-256 {short(l256)}, lstm-512 {short(l512)}")
