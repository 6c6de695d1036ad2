"""One queue of (model, seed) trainings for the copying cpu record, one thread each.

    OMP_NUM_THREADS=1 python record_queue.py RUNS_DIR LOG_DIR model:seed [model:seed ...]

Each run writes its checkpoint under RUNS_DIR and its per-epoch lines to
LOG_DIR/copying_cpu_<model>_seed<k>.log; ``python -m minirims copying --profile cpu --seeds 3 --runs-dir
RUNS_DIR`` then finds them complete and only tests.
"""

import glob
import sys
import time

import torch

from minirims.experiments import copying as cp

torch.set_num_threads(1)
runs, logs = sys.argv[1], sys.argv[2]
for job in sys.argv[3:]:
    name, seed = job.split(":")
    t0 = time.time()
    with open(f"{logs}/copying_cpu_{name}_seed{seed}.log", "w") as log:
        print(f"{time.strftime('%H:%M:%S')} start {name} {seed}", file=log, flush=True)
        rec = cp.run("cpu", models=[name], seeds=[int(seed)], save=False, progress=False, runs_dir=runs)
        (path,) = glob.glob(f"{runs}/copying_cpu_*/{name}_seed{seed}.pt")
        for line in torch.load(path, map_location="cpu", weights_only=False)["history"]:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in line.items()}, file=log)
        acc = {d: round(100 * v["mean"], 1) for d, v in rec["metrics"][name]["acc"].items()}
        train_s = rec["metrics"][name]["train_seconds"]
        wall = time.time() - t0
        done = time.strftime("%H:%M:%S")
        print(f"{done} done {name} {seed} {acc} train_s {train_s} wall_s {wall:.0f}", file=log)
    print(f"{time.strftime('%H:%M:%S')} {name} seed {seed}: {time.time() - t0:.0f} s", flush=True)
