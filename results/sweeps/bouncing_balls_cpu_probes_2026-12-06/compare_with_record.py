"""Compare bouncing-balls probes with the same seeds of the record ``results/bouncing_balls_cpu.json``.

    python compare_with_record.py PROBE.json ...   (run from the repository root)

The probes are the JSON files of ``../bouncing_balls_cpu_lr_sweep_2026-12-06/probe.py``. For each probe, and
for the mean over all probes given (when they are seeds of one model), it prints per test set the rollout
frames (1-based) where the probe, and the record's rim-6-4, are below both LSTMs (``bouncing_balls.verdict``
on the record's curves of the same seeds), and the per-frame BCE at t+1/2/3/5/10/15.
"""

import json
import sys

import numpy as np

from minirims.experiments import bouncing_balls as bb

FRAMES = (0, 1, 2, 4, 9, 14)
RECORD_MODELS = ("rim-6-4", "lstm-256", "lstm-512")
rec = json.load(open("results/bouncing_balls_cpu.json"))["metrics"]


def record_curves(seeds: list[int]) -> dict[str, dict[str, np.ndarray]]:
    """{model: {set: per-frame BCE}} of the record, averaged over ``seeds``."""
    return {
        m: {s: np.mean([rec[m][s]["per_frame_per_seed"][k] for k in seeds], 0) for s in bb.TEST_SETS}
        for m in RECORD_MODELS
    }


def compare(label: str, model: str, probe: dict[str, np.ndarray], seeds: list[int]) -> None:
    curves = record_curves(seeds)
    name = f"{model} (probe)"  # a RIM name for verdict, never the record's own rim-6-4
    curves[name] = probe
    pseudo = {"metrics": {m: {s: {"per_frame": c[s].tolist()} for s in c} for m, c in curves.items()}}
    below = bb.verdict(pseudo)
    print(f"{label} (record seeds {seeds})")
    for s in bb.TEST_SETS:
        print(f"  {s}: below both LSTMs at frames {below[s][name]['below_lstms']}")
        print(f"    record rim-6-4: {below[s]['rim-6-4']['below_lstms']}")
        print(
            "    t+1/2/3/5/10/15: "
            + ", ".join(f"{m} {np.round(curves[m][s][list(FRAMES)], 1).tolist()}" for m in curves)
        )


probes = [json.load(open(path)) for path in sys.argv[1:]]
for r in probes:
    curves = {s: np.asarray(v) for s, v in r["per_frame"].items()}
    train_s = r["train_seconds"]["values"][0]
    compare(
        f"{r['tag']}: {r['model']}, train {train_s:.0f} s, best epoch {r['best_epoch']}",
        r["model"],
        curves,
        [r["seed"]],
    )
if len(probes) > 1 and len({r["model"] for r in probes}) == 1:
    per_seed = {s: np.array([r["per_frame"][s] for r in probes]) for s in bb.TEST_SETS}
    mean = {s: v.mean(0) for s, v in per_seed.items()}
    compare(
        f"mean of {len(probes)} probes of {probes[0]['model']}",
        probes[0]["model"],
        mean,
        [r["seed"] for r in probes],
    )
    for s, v in per_seed.items():
        print(
            f"  {s} std over seeds at t+1/2/3/5/10/15: {np.round(v.std(0, ddof=1)[list(FRAMES)], 1).tolist()}"
        )
