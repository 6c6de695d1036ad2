"""One copying probe: one model, one seed, the `cpu` profile with JSON overrides (the 2026-12-05 probes).

    OMP_NUM_THREADS=1 PYTHONPATH=<checkout> python probe.py rim cos5e-3_16ep \
        '{"lr_schedule": "cosine", "warmup_steps": 200, "epochs": 16}'

It ran from the working tree of commit 0a239f6 plus the change that made ``lr_schedule`` / ``warmup_steps``
copying settings (committed as d603570), one process per probe at one thread, two side by side. It writes
``<tag>_<model>_s<seed>.json`` (the record of ``copying.run`` with ``save=False``) and prints digit accuracy
per delay.
"""

import json
import sys
import time

from minirims.experiments import copying as cp

name, tag = sys.argv[1], sys.argv[2]
overrides = json.loads(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
start = time.time()
rec = cp.run(
    "cpu",
    models=[name],
    seeds=[seed],
    runs_dir=f"/tmp/cp/runs_{tag}",
    save=False,
    overrides=overrides,
    progress=False,
)
rec["probe_wall_s"] = time.time() - start
with open(f"{tag}_{name}_s{seed}.json", "w") as f:
    json.dump(rec, f, indent=1)
acc = {k: round(v["mean"] * 100, 1) for k, v in rec["metrics"][name]["acc"].items()}
print(tag, name, seed, acc, "train_s", rec["metrics"][name]["train_seconds"], flush=True)
