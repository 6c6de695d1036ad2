"""One queue of (model, seed) trainings for the balls cpu record, one thread each (tidied for ruff only).

    OMP_NUM_THREADS=1 python record_queue.py RUNS_DIR model:seed [model:seed ...]

Each run writes its checkpoint under RUNS_DIR; ``python -m minirims bouncing-balls --profile cpu --seeds 3
--runs-dir RUNS_DIR`` then finds them complete and only evaluates.
"""

import sys
import time

import torch

from minirims.experiments import bouncing_balls as bb

torch.set_num_threads(1)
runs = sys.argv[1]
for job in sys.argv[2:]:
    name, seed = job.split(":")
    t0 = time.time()
    bb.run("cpu", seeds=[int(seed)], models=[name], save=False, progress=False, runs_dir=runs)
    print(f"{time.strftime('%H:%M:%S')} {name} seed {seed}: {time.time() - t0:.0f} s", flush=True)
