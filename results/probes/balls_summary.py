"""Gather the bouncing-balls recipe probes into one JSON, re-scored with the current metrics.

    python results/probes/balls_summary.py RUNS_DIR OUT_JSON

For each record RUNS_DIR/records/<probe>_<model>/bouncing_balls_cpu.json: the model's best-epoch weights
(its checkpoint in RUNS_DIR) are tested again on the cpu profile's test sets, so every probe is scored by the
same code; the baselines are scored once. Writes {probe: {model: {set: {score: per-frame list}}}} plus the
training steps and seconds of each, and prints F1 and tracking error at a few frames.
"""

import json
import sys
from pathlib import Path

import torch

from minirims.experiments import bouncing_balls as bb
from minirims.experiments.baselines import constant_velocity_guess, last_frame_guess
from minirims.experiments.common import settings_key
from minirims.experiments.references import _stored_settings


def main(runs: Path, out: Path) -> None:
    torch.set_num_threads(1)
    summary: dict = {"probes": {}}
    base = bb.settings("cpu")
    data = {k: v.to("cpu") for k, v in bb.make_data(base).items()}
    for path in sorted((runs / "records").glob("*/bouncing_balls_cpu.json")):
        record = json.loads(path.read_text())
        s = _stored_settings(bb, record["settings"])
        model_name = s.models[0]
        probe = path.parent.name.removesuffix(f"_{model_name}")
        # the key of the settings as the run stored them (fields added to Settings later are not in it)
        stored = {k: v for k, v in record["settings"].items() if k not in bb.Settings.TEST_ONLY}
        ckpt = runs / f"bouncing_balls_cpu_{settings_key(stored)}" / f"{model_name}_seed0.pt"
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = bb.make_model(model_name, s)
        model.load_state_dict(saved["best_state"])
        scores = {name: bb.evaluate_rollouts(model.eval(), data[name], s) for name in bb.TEST_SETS}
        overrides = {k: v for k, v in s.as_dict().items() if v != base.as_dict()[k] and k != "models"}
        summary["probes"].setdefault(probe, {})[model_name] = {
            "overrides": overrides,
            "steps": bb.training_steps(s),
            "train_seconds": record["metrics"][model_name]["train_seconds"],
            "best_epoch": record["metrics"][model_name]["best_epoch"][0],
            "val_at_best": {  # what a recipe is chosen by: the validation videos, never a test set
                k: v
                for k, v in record["curves"][model_name]["0"][
                    record["metrics"][model_name]["best_epoch"][0]
                ].items()
                if k.startswith("val_")
            },
            "record_commit": record["provenance"]["git_commit"],
            "scores": {k: {m: v.tolist() for m, v in sc.items()} for k, sc in scores.items()},
        }
        val = summary["probes"][probe][model_name]["val_at_best"]
        print(
            f"{probe:20s} {model_name:17s} val F1 {val.get('val_f1', float('nan')):.3f} | 4 balls F1 "
            + " ".join(f"{x:.2f}" for x in scores["4 balls"]["f1"][[0, 1, 2, 3, 4, 9]])
            + " | track: "
            + " ".join(f"{x:.1f}" for x in scores["4 balls"]["track"][[0, 1, 2, 3, 4, 9]]),
            flush=True,
        )
    g, f = base.n_given, base.n_future
    guesses = {
        "last-frame": lambda d: lambda fr, i: (last_frame_guess(fr, g, f, 0.0), None),
        "constant-velocity": lambda d: lambda fr, i: (constant_velocity_guess(d, i, base), None),
    }
    summary["baselines"] = {
        key: {
            k: {m: v.tolist() for m, v in bb.score_predictions(guess(data[k]), data[k], base).items()}
            for k in bb.TEST_SETS
        }
        for key, guess in guesses.items()
    }
    out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
