"""One bouncing-balls probe of the cpu profile at one thread, as run for the sweep (tidied for ruff only).

    python probe.py TAG MODEL SEED key=value ...   ->   /tmp/bb/probes/TAG.json

e.g. ``python probe.py rim_cos2e-3 rim-6-4 0 lr_schedule=cosine warmup_steps=100 lr=2e-3``. The first three
runs (rim_cos2e-3, l256_cos2e-3, l512_cos2e-3) ran without ``runs_dir`` (no checkpoints), the rest with it.
"""

import ast
import json
import sys
import time

import torch

from minirims.experiments import bouncing_balls as bb

torch.set_num_threads(1)
tag, model, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
over = {}
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    try:
        v = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        pass
    over[k] = v
t0 = time.time()
r = bb.run("cpu", seeds=[seed], models=[model], save=False, progress=False, runs_dir="/tmp/bb/runs", **over)
m = r.record["metrics"]
out = {
    "tag": tag,
    "model": model,
    "seed": seed,
    "overrides": over,
    "wall_s": time.time() - t0,
    "train_seconds": m[model]["train_seconds"],
    "best_epoch": m[model]["best_epoch"],
    "history": r.record.get("curves", {}).get(model),
    "per_frame": {s: [round(float(x), 2) for x in m[model][s]["per_frame"]] for s in bb.TEST_SETS},
    "baselines": {
        b: {s: [round(float(x), 2) for x in m[b][s]["per_frame"]] for s in bb.TEST_SETS} for b in bb.BASELINES
    },
}
with open(f"/tmp/bb/probes/{tag}.json", "w") as f:
    json.dump(out, f, indent=1, default=str)
pf = out["per_frame"]
print(tag, {s: [pf[s][i] for i in (0, 1, 2, 4, 9, 14)] for s in pf}, f"{out['wall_s']:.0f}s")
