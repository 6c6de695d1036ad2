"""Reference models: trained weights that let every analysis cell show a trained model at once.

Each reference is one model of an experiment's record (seed 0), stored as weights only beside a provenance
file, both under ``results/models/``::

    <experiment>_<profile>_<model>.pt     the model's state_dict (float32, or float16 with ``half``)
    <experiment>_<profile>_<model>.json   sha256 of the .pt, the settings it was trained with, seed, optimizer
                                          steps, training seconds, commit, device and its test metrics

    export_reference(module, record, runs_dir, name, folder=None, half=False) -> Path
    load_reference_model(module, name, profile="cpu", folder=None) -> (model, info)
    reference_info(module, name, profile="cpu", folder=None) -> dict | None   # the provenance, or None
    analysis_models(module, trained, settings, folder=None) -> (models, their settings, label)

``module`` is an experiment module (:mod:`~minirims.experiments.copying`, ...). The loader verifies the hash,
reads the weights with ``torch.load(weights_only=True)`` (a crafted file cannot run code), refuses weights
trained with other settings than the profile's model it builds, and says what to do when a file is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from minirims.experiments.common import (
    Record,
    checkpoint_path,
    provenance,
    results_dir,
    save_record,
)

__all__ = ["analysis_models", "export_reference", "load_reference_model", "models_dir", "reference_info"]


def models_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """Where references live: ``folder``, else ``<results>/models`` (env ``MINIRIMS_RESULTS``)."""
    return Path(folder) if folder is not None else results_dir() / "models"


def _paths(module: ModuleType, name: str, profile: str, folder: Any) -> tuple[Path, Path]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a model name such as 'rim-6x48-k4', got {name!r}")
    stem = models_dir(folder) / f"{module.EXPERIMENT}_{profile}_{name}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_reference(
    module: ModuleType,
    record: Record,
    runs_dir: str | os.PathLike[str],
    name: str,
    folder: str | os.PathLike[str] | None = None,
    half: bool = False,
) -> Path:
    """Write model ``name`` of ``record`` (trained by ``module.run`` with checkpoints in ``runs_dir``) as a
    reference: the best epoch's weights of seed 0, and its provenance with the record's test metrics of that
    seed. ``half`` stores float16 (check that the metrics do not move before committing it). Returns the .pt.
    """
    settings = _stored_settings(module, record["settings"])
    if name not in record["metrics"] or 0 not in record["seeds"]:
        raise ValueError(f"name: expected a model of the record trained with seed 0, got {name!r}")
    ckpt = checkpoint_path(runs_dir, module.EXPERIMENT, settings, name, 0)
    if not ckpt.is_file():
        raise ValueError(f"runs_dir: expected the checkpoint {ckpt}, got no such file")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in saved["best_state"].items()}
    pt, info_path = _paths(module, name, settings.profile, folder)
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, pt)
    index = record["seeds"].index(0)
    history = saved["history"]
    info = {
        "experiment": module.EXPERIMENT,
        "profile": settings.profile,
        "model": name,
        "sha256": _sha256(pt),
        "dtype": "float16" if half else "float32",
        "seed": 0,
        "best_epoch": int(saved["best_epoch"]),
        "epochs": len(history),
        "train_seconds": round(sum(float(e.get("seconds", 0.0)) for e in history), 1),
        "settings": settings.as_dict(),
        "test": _seed_metrics(
            {k: v for k, v in record["metrics"][name].items() if k not in ("best_epoch", "train_seconds")},
            index,
        ),
        "record_provenance": record["provenance"],
        "exported_by": provenance("cpu"),
    }
    save_record(info, info_path)
    return pt


def _stored_settings(module: ModuleType, stored: dict[str, Any]) -> Any:
    """``module.Settings`` from a record's settings (lists back to tuples), validated."""
    known = {f for f in module.Settings.__dataclass_fields__}
    return module.Settings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    )


SCORED = ("f1", "track")  # the scores a bouncing-balls test set holds beside its BCE, each with its curves


def _seed_metrics(entry: Any, index: int) -> Any:
    """The values of one seed from a record's entry: each mean/std/values dict becomes its seed's value, and
    a bouncing-balls test set (mean curves over seeds, with ``per_frame_per_seed``) the seed's own curves."""
    if isinstance(entry, dict) and "values" in entry and "mean" in entry:
        return entry["values"][index]
    if isinstance(entry, dict) and "per_frame_per_seed" in entry:
        out = {"per_frame": entry["per_frame_per_seed"][index]}
        out.update({k: _seed_metrics(entry[k], index) for k in ("mean_bce", "mean") if k in entry})
        out.update({k: _seed_metrics(entry[k], index) for k in SCORED if k in entry})
        return out
    if isinstance(entry, dict):
        return {k: _seed_metrics(v, index) for k, v in entry.items()}
    return entry


def reference_info(
    module: ModuleType, name: str, profile: str = "cpu", folder: str | os.PathLike[str] | None = None
) -> dict[str, Any] | None:
    """The provenance of a reference model, or None when there is none."""
    _, info_path = _paths(module, name, profile, folder)
    if not info_path.is_file():
        return None
    try:
        return json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{info_path}: expected a reference model's provenance (JSON), got {err}") from None


def load_reference_model(
    module: ModuleType, name: str, profile: str = "cpu", folder: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained reference ``name`` of ``module``'s ``profile``, on the CPU in eval mode, and its info.

    The model is built without ``torch.compile`` (the weights are the same, and a notebook need not wait for
    a compile).

    Raises a ValueError that says what to do when the files are missing, when the weights do not match the
    hash the provenance gives (a changed or damaged file), when they were trained with other settings than the
    profile's (the model would not be the one the profile describes), or when they do not fit the model.
    """
    pt, info_path = _paths(module, name, profile, folder)
    info = reference_info(module, name, profile, folder)
    if info is None or not pt.is_file():
        raise ValueError(
            f"{module.EXPERIMENT} {profile}: expected a reference model {name!r} in {pt.parent} "
            f"({pt.name} and {info_path.name}), got none: train your own with "
            f"`python -m minirims {module.EXPERIMENT.replace('_', '-')} --profile {profile}`"
        )
    if _sha256(pt) != info.get("sha256"):
        raise ValueError(
            f"{pt}: expected the weights whose sha256 is in {info_path.name}, got a changed file"
        )
    settings = module.settings(profile)
    stored, wanted = _stored_settings(module, info["settings"]).training_dict(), settings.training_dict()
    if stored != wanted:
        differ = sorted(k for k, v in wanted.items() if stored.get(k) != v)
        raise ValueError(
            f"{pt}: expected weights trained with the {profile} profile's settings, got other values of "
            f"{', '.join(differ)}"
        )
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{pt}: expected a file of weights only, got one torch refuses to load ({err})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{pt}: expected a state_dict of tensors, got {type(state).__name__}")
    model = module.make_model(name, settings.replace(compile=False))  # the same weights; no compile wait
    reference = model.state_dict()
    try:
        model.load_state_dict(
            {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        )
    except RuntimeError as err:
        raise ValueError(f"{pt}: expected the weights of {name}, got ones that do not fit ({err})") from None
    return model.eval(), info


#: profiles whose runs train for real: a model trained on one of them is worth analysing
TRAINED_PROFILES = ("cpu", "full", "long")


def analysis_models(
    module: ModuleType,
    trained: dict[str, nn.Module],
    settings: Any,
    folder: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, nn.Module], Any, str]:
    """The models a notebook's analysis cells show, the settings they were built with, and a label.

    The learner's own models (``trained``, filled by ``module.run(..., trained=trained)``) when they were
    trained on a profile that trains for real (cpu, full, long); otherwise (the smoke profile only checks
    that the pipeline runs, or nothing was trained yet) the references of the cpu profile, when they are in
    ``results/models``; otherwise the learner's models, labelled as what they are.
    """
    if not isinstance(trained, dict):
        raise ValueError(
            f"trained: expected a dict of model name -> trained model, got {type(trained).__name__}"
        )
    if trained and settings.profile in TRAINED_PROFILES:
        return dict(trained), settings, f"your models ({settings.profile} profile)"
    reference_settings = module.settings("cpu")
    names = reference_settings.models
    if all(reference_info(module, name, "cpu", folder) is not None for name in names):
        models, infos = {}, []
        for name in names:
            models[name], info = load_reference_model(module, name, "cpu", folder)
            infos.append(info)
        epochs = ", ".join(f"{i['model']} {i['epochs']} epochs" for i in infos)
        return models, reference_settings, f"reference models (cpu profile, seed 0, {epochs})"
    what = "untrained: the smoke profile only checks the pipeline" if trained else "none trained yet"
    return dict(trained), settings, f"your models ({settings.profile} profile; {what}; no reference found)"
