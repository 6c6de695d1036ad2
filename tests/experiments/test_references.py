"""Reference models: exported from a run's checkpoints, loaded through one loader that refuses tampering."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from minirims.experiments import copying as cp
from minirims.experiments.references import (
    analysis_models,
    export_reference,
    load_reference_model,
    reference_info,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A smoke copying run (seed 0, one model) and its reference, exported into a private folder."""
    root = tmp_path_factory.mktemp("references")
    small = {
        "models": ("lstm-48",),
        "steps_per_epoch": 2,
        "n_eval": 16,
        "test_delays": (5,),
        "compile": False,
    }
    settings = cp.settings("smoke", **small).replace(profile="cpu")  # a tiny stand-in for the cpu profile
    trained: dict = {}
    record = cp.run(settings, 1, runs_dir=root / "runs", save=False, progress=False, trained=trained)
    folder = root / "models"
    export_reference(cp, record, root / "runs", "lstm-48", folder=folder)
    return folder, record, trained["lstm-48"], settings


def _load(folder, settings, monkeypatch):
    monkeypatch.setattr(cp, "PROFILES", {**cp.PROFILES, "cpu": settings})  # the profile it was trained with
    return load_reference_model(cp, "lstm-48", "cpu", folder=folder)


def test_the_reference_is_the_trained_model(exported, monkeypatch):
    folder, record, trained, settings = exported
    model, info = _load(folder, settings, monkeypatch)
    tokens, _ = cp.copying_batch(4, 5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(tokens), trained(tokens))
    assert not model.training
    assert info["seed"] == 0 and info["model"] == "lstm-48" and info["dtype"] == "float32"
    assert info["test"]["acc"]["5"] == record["metrics"]["lstm-48"]["acc"]["5"]["values"][0]
    assert info["epochs"] == settings.epochs and info["train_seconds"] >= 0
    assert reference_info(cp, "lstm-48", "cpu", folder) == info


def test_a_flipped_byte_is_refused(exported, monkeypatch, tmp_path):
    folder, _, _, settings = exported
    copy = tmp_path / "models"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    pt = copy / "copying_cpu_lstm-48.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"expected the weights whose sha256 is in .*, got a changed file"):
        _load(copy, settings, monkeypatch)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_a_forged_hash_is_refused(exported, monkeypatch, tmp_path):
    folder, _, _, settings = exported
    copy = tmp_path / "models"
    copy.mkdir()
    pt, info_path = copy / "copying_cpu_lstm-48.pt", copy / "copying_cpu_lstm-48.json"
    pt.write_bytes(pickle.dumps(print))  # code a weights-only load must never run
    info = json.loads((folder / info_path.name).read_text())
    import hashlib

    info["sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"expected a file of weights only"):
        _load(copy, settings, monkeypatch)


def test_weights_of_other_settings_are_refused(exported, monkeypatch):
    folder, _, _, settings = exported
    with pytest.raises(
        ValueError,
        match=r"expected weights trained with the cpu profile's settings, got other "
        r"values of .*lr",
    ):
        _load(folder, settings.replace(lr=0.5), monkeypatch)


def test_a_missing_reference_says_what_to_do(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"expected a reference model .lstm-48. .*`python -m minirims copying --profile smoke`",
    ):
        load_reference_model(cp, "lstm-48", "smoke", folder=tmp_path)
    assert reference_info(cp, "lstm-48", "smoke", tmp_path) is None
    with pytest.raises(ValueError, match=r"name: expected a model name"):
        load_reference_model(cp, "", "smoke", folder=tmp_path)


def test_the_analysis_shows_trained_models_and_says_which(exported, monkeypatch, tmp_path):
    folder, _, trained, settings = exported
    monkeypatch.setattr(cp, "PROFILES", {**cp.PROFILES, "cpu": settings})
    mine = {"lstm-48": trained}
    models, used, label = analysis_models(cp, mine, settings, folder)  # trained on a profile that trains
    assert models == mine and used is settings and label == "your models (cpu profile)"
    smoke = cp.settings("smoke")  # only checks the pipeline: the references are shown instead
    models, used, label = analysis_models(cp, {"rim-6x8-k4": trained}, smoke, folder)
    assert (
        list(models) == ["lstm-48"] and used == settings and label.startswith("reference models (cpu profile")
    )
    assert not models["lstm-48"].training
    models, used, label = analysis_models(cp, {"rim-6x8-k4": trained}, smoke, tmp_path)  # no references
    assert list(models) == ["rim-6x8-k4"] and used is smoke and "no reference found" in label
    with pytest.raises(ValueError, match=r"trained: expected a dict"):
        analysis_models(cp, [trained], smoke, folder)


def test_the_provenance_keeps_one_seeds_own_test_values():
    from minirims.experiments.references import _seed_metrics

    curve = {
        "mean_bce": {"mean": 2.0, "std": 1.0, "n": 2, "values": [1.0, 3.0]},
        "per_frame": [1.5, 2.5],  # the mean over the two seeds: not seed 1's
        "per_frame_std": [0.5, 0.5],
        "per_frame_per_seed": [[1.0, 1.0], [2.0, 3.0]],
    }
    entry = {"acc": {"50": {"mean": 0.5, "std": 0.1, "n": 2, "values": [0.4, 0.6]}}, "4 balls": curve}
    assert _seed_metrics(entry, 1) == {
        "acc": {"50": 0.6},
        "4 balls": {"mean_bce": 3.0, "per_frame": [2.0, 3.0]},
    }


def test_every_committed_reference_loads_and_they_fit_the_budget():
    """Each reference in results/models loads through the loader (its hash and its profile's settings hold),
    and together they stay within the 25 MB a clone should carry."""
    import importlib

    from minirims.experiments.references import models_dir

    infos = sorted(models_dir().glob("*.json"))
    assert infos, "expected committed reference models in results/models"
    for path in infos:
        info = json.loads(path.read_text())
        module = importlib.import_module(f"minirims.experiments.{info['experiment']}")
        model, loaded = load_reference_model(module, info["model"], info["profile"])
        assert loaded["sha256"] == info["sha256"]
        assert not model.training
    size = sum(p.stat().st_size for p in models_dir().iterdir() if p.is_file())
    assert size <= 25_000_000, f"results/models holds {size / 1e6:.1f} MB"
