"""One-off: rewrite the records made before the experiments took one shape, with identical numbers.

Model names now say their size, and a record's settings are the fields of the experiment's Settings. This
renames every model key (metrics, parameters, curves, settings.models, the examples' arrays) and replaces the
settings by the profile's new Settings after checking that every setting the two share is equal.
Usage: python tools/rename_record_models.py results/*.json results/rollout35/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from minirims.experiments import bouncing_balls, copying, mnist_resolution

MODULES = {"copying": copying, "mnist_resolution": mnist_resolution, "bouncing_balls": bouncing_balls}
RENAME = {
    ("copying", "cpu"): {"rim": "rim-6x48-k4", "lstm": "lstm-288"},
    ("mnist_resolution", "cpu"): {"rim-6-4": "rim-6x32-k4", "lstm-600": "lstm-192"},
    ("bouncing_balls", "cpu"): {"rim-6-4": "rim-6x100-k4"},
}


def _rename_keys(d: dict, names: dict) -> dict:
    return {names.get(k, k): v for k, v in d.items()}


def migrate(path: Path) -> None:
    record = json.loads(path.read_text())
    key = (record["experiment"], record["profile"])
    names = RENAME[key]
    old = record["settings"]
    new = MODULES[key[0]].settings(key[1], models=[names.get(m, m) for m in old["models"]])
    if "n_future" in old:
        new = new.replace(n_future=old["n_future"])
    new_dict = new.as_dict()
    old_cmp = {**old, "models": [names.get(m, m) for m in old["models"]]}
    old_cmp["lr_by_model"] = _rename_keys(old.get("lr_by_model", {}), names)
    differ = {k: (old_cmp[k], new_dict[k]) for k in new_dict if k in old_cmp and k != "note"
              and json.dumps(old_cmp[k]) != json.dumps(new_dict[k])}
    if differ:
        raise SystemExit(f"{path}: settings differ from the new profile: {differ}")
    record["settings"] = new_dict
    for part in ("metrics", "parameters", "curves"):
        record[part] = _rename_keys(record.get(part, {}), names)
    for entry in record["metrics"].values():  # train_seconds: one number, summed over seeds, everywhere
        ts = entry.get("train_seconds") if isinstance(entry, dict) else None
        if isinstance(ts, dict):
            entry["train_seconds"] = round(sum(ts["values"]), 3)
    path.write_text(json.dumps(record, indent=2) + "\n")
    examples = path.with_name(path.stem + "_examples.npz")
    if examples.exists():
        arrays = dict(np.load(examples))
        renamed = {}
        for k, v in arrays.items():
            parts = k.split("/")
            parts = [names.get(p, p) for p in parts]
            renamed["/".join(parts)] = v
        np.savez_compressed(examples, **renamed)
    print(f"{path}: renamed {names}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        migrate(Path(arg))
