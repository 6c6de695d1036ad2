"""One MNIST probe of the session of 2026-12-06: the `cpu` profile, one model, one seed, JSON overrides.

    OMP_NUM_THREADS=1 PYTHONPATH=<clean clone> python probe.py rim-6-4 w48 '{"rim_hidden": 48}' 0

Runs ``mnist_resolution.run`` (all 5 epochs, tested at 14/16/19/24 like the record) with ``save=False`` and
checkpoints under ``/tmp/mn/runs_<tag>``; writes ``<tag>_<model>_s<seed>.json`` (that run's record) in the
working directory and prints the test accuracy per resolution.
"""

import json
import sys
import time

from minirims.experiments import mnist_resolution as mr

name, tag, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
start = time.time()
rec = mr.run(
    "cpu",
    models=[name],
    seeds=[seed],
    runs_dir=f"/tmp/mn/runs_{tag}",
    save=False,
    overrides=overrides,
    progress=False,
)
rec["probe_wall_s"] = time.time() - start
with open(f"{tag}_{name}_s{seed}.json", "w") as f:
    json.dump(rec, f, indent=1)
acc = {k: round(v["mean"] * 100, 1) for k, v in rec["metrics"][name]["acc"].items()}
print(tag, name, seed, acc, "train_s", rec["metrics"][name]["train_seconds"], flush=True)
