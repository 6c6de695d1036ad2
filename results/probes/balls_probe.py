"""One bouncing-balls recipe probe: the cpu profile with a recipe's overrides, one model, one seed.

    python results/probes/balls_probe.py PROBE MODEL [RUNS_DIR]

trains (one thread) and tests on the cpu profile's 256 videos per test set, and writes the record to
RUNS_DIR/records/<probe>_<model>/. `summarize` in the same folder's README gathers them.
"""

import sys
from pathlib import Path

import torch

from minirims.experiments import bouncing_balls as bb

TF = {"train_given": 29}  # teacher forcing: every training frame is predicted from the true one before it
RECIPES = {
    "rollout-bce": {},  # the cpu profile's recipe (15 frames read, 15 rolled out, BCE), best epoch by BCE
    "rollout-bce-f1sel": {"select": "f1"},
    "tf-bce": {**TF, "select": "f1"},
    "tf-sharp0.5": {**TF, "sharpen": 0.5, "select": "f1"},
    "tf-sharp1": {**TF, "sharpen": 1.0, "select": "f1"},
    "tf-sharp2": {**TF, "sharpen": 2.0, "select": "f1"},
    "rollout-sharp0.5": {"sharpen": 0.5, "select": "f1"},
    "tf-sharp0.5-binary": {**TF, "sharpen": 0.5, "select": "f1", "feedback": "binary"},
    "tf-sharp0.5-lr1e-3": {**TF, "sharpen": 0.5, "select": "f1", "lr": 1e-3},
    "tf-sharp0.5-lr4e-3": {**TF, "sharpen": 0.5, "select": "f1", "lr": 4e-3},
    "tf-sharp0.5-e9": {**TF, "sharpen": 0.5, "select": "f1", "epochs": 9},  # 1.5x the steps
    # RIMs read the encoder's 4x4 feature map as 16 input slots (input attention picks a position)
    "tf-sharp0.5-slots": {**TF, "sharpen": 0.5, "select": "f1", "slots": True},
}

if __name__ == "__main__":
    probe, model = sys.argv[1], sys.argv[2]
    runs = Path(sys.argv[3] if len(sys.argv) > 3 else "runs/balls_probes")
    torch.set_num_threads(1)
    settings = bb.settings("cpu", models=[model], **RECIPES[probe])
    out = runs / "records" / f"{probe}_{model}"
    out.mkdir(parents=True, exist_ok=True)
    record = bb.run(settings, 1, runs_dir=runs, results=out, progress=False)
    print(bb.format_table(record, frames=(0, 1, 2, 4, 9)))
