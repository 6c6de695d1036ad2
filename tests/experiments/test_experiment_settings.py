"""Settings, records and checkpoints of the experiments (issue 12): bad settings are refused before any work,
records are written only where asked, checkpoints resume only with the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minirims.experiments import bouncing_balls as bb
from minirims.experiments import common
from minirims.experiments import copying as cp
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.common import check_settings, output_record_path, seed_list

COPY_TINY = {"steps_per_epoch": 2, "epochs": 1, "n_eval": 8, "eval_batch_size": 8, "test_delays": [5]}
MNIST_TINY = {"n_train": 16, "n_valid": 8, "n_test": 4, "batch_size": 16, "eval_batch_size": 16, "epochs": 1}
BALLS_TINY = {
    "n_train": 8,
    "n_val": 4,
    "n_test": 4,
    "batch_size": 8,
    "eval_batch_size": 8,
    "models": ("lstm-32",),
}


def _copying(**overrides):
    return cp.profile_settings("smoke", **overrides)


def _mnist(**overrides):
    return mr.profile_settings("smoke", **overrides)


def _balls(**overrides):
    return bb.get_settings("smoke", **overrides)


EXPERIMENTS = {"copying": _copying, "mnist": _mnist, "balls": _balls}


# ------------------------------------------------------------------------------------- one rule per kind
@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
@pytest.mark.parametrize(
    ("value", "shown"), [(1.7, "1.7"), (0, "0"), (-3, "-3"), (True, "True"), ("2", "'2'"), (2.0, "2.0")]
)
def test_counts_are_positive_ints(get, value, shown):
    with pytest.raises(ValueError, match=rf"^epochs: expected a positive int, got {shown}$"):
        get(epochs=value)


@pytest.mark.parametrize(
    ("get", "key", "value", "message"),
    [
        (_mnist, "n_train", -5, r"n_train: expected an int in \[1, 50000\], got -5"),
        (_mnist, "n_train", 32.0, r"n_train: expected an int in \[1, 50000\], got 32.0"),
        (_mnist, "n_train", 60_000, r"n_train: expected an int in \[1, 50000\], got 60000"),
        (_mnist, "n_test", 10_001, r"n_test: expected an int in \[1, 10000\], got 10001"),
        (_mnist, "train_size", 1.5, r"train_size: expected an int in \[1, 56\], got 1.5"),
        (
            _mnist,
            "test_sizes",
            [14, 100],
            r"test_sizes: expected a non-empty list whose items are each an int",
        ),
        (_mnist, "test_sizes", [], r"test_sizes: expected a non-empty list, got \[\]"),
        (_copying, "k_active", 7, r"k_active: expected an int in \[1, n_modules = 6\], got 7"),
        (_balls, "frame_size", 18, r"frame_size: expected a multiple of 2 \*\* len\(channels\) = 4, got 18"),
        (_balls, "frame_size", 1024, r"frame_size: expected an int in \[4, 256\], got 1024"),
        (_balls, "n_val", -1, r"n_val: expected an int >= 0, got -1"),
        (
            _balls,
            "channels",
            (8, 0),
            r"channels: expected a non-empty list whose items are each a positive int",
        ),
    ],
)
def test_sizes_are_in_range(get, key, value, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        get(**{key: value})


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
@pytest.mark.parametrize(
    ("value", "shown"), [(float("inf"), "inf"), (True, "True"), (0.0, "0.0"), (-1e-3, "-0.001")]
)
def test_rates_are_finite_and_positive(get, value, shown):
    with pytest.raises(ValueError, match=rf"^lr: expected a finite number > 0, got {shown}$"):
        get(lr=value)
    with pytest.raises(ValueError, match=r"^grad_clip: expected a finite number > 0 or None"):
        get(grad_clip=value)


@pytest.mark.parametrize(("get", "name"), [(_copying, "rim"), (_mnist, "rim-6-4")])
def test_learning_rates_by_model_are_rates_of_known_models(get, name):
    with pytest.raises(
        ValueError, match=r"^lr_by_model: expected a dict from names in .* to a finite number > 0"
    ):
        get(lr_by_model={name: float("nan")})
    with pytest.raises(ValueError, match=r"^lr_by_model: expected a dict from names in"):
        get(lr_by_model={"gru": 1e-3})
    assert get(lr_by_model={name: 1e-3})["lr_by_model"] == {name: 1e-3}


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
def test_booleans_only_where_booleans_are_expected(get):
    with pytest.raises(ValueError, match=r"^compile: expected True or False, got 1$"):
        get(compile=1)
    with pytest.raises(ValueError, match=r"^dropout: expected a number in \[0, 1\), got 1.0$"):
        get(dropout=1.0)
    with pytest.raises(ValueError, match=r"^dropout: expected a number in \[0, 1\), got True$"):
        get(dropout=True)


def test_model_lists_are_known_and_distinct():
    with pytest.raises(ValueError, match=r"^models: expected a list of distinct names from rim, lstm"):
        _copying(models=["rim", "rim"])
    with pytest.raises(
        ValueError, match=r"^models: expected a non-empty list of distinct names like 'rim-6-4'"
    ):
        _balls(models=("gru-3",))
    with pytest.raises(ValueError, match=r"^models: expected distinct model names, got \['lstm', 'lstm'\]"):
        cp.run("smoke", models=["lstm", "lstm"], save=False)
    with pytest.raises(ValueError, match=r"^models: expected distinct model names"):
        mr.run("smoke", models=["lstm-300", "lstm-300"], save=False)


def test_seeds_are_distinct_non_negative_ints():
    assert seed_list(2) == [0, 1] and seed_list((3, 1)) == [3, 1]
    with pytest.raises(ValueError, match=r"^seeds: expected distinct seeds, got \[0, 0\] \(0 repeated\)$"):
        seed_list([0, 0])
    for bad in (True, -1, [1, -1], [0.5], "01", None):
        with pytest.raises(ValueError, match=r"^seeds: expected a count >= 1 or a list"):
            seed_list(bad)
    for run in (cp.run, mr.run, bb.run):  # counted twice in a mean over seeds: refused by every experiment
        with pytest.raises(ValueError, match=r"seeds: expected distinct seeds"):
            run("smoke", seeds=[0, 0], save=False)


def test_check_settings_rules_the_kinds_no_profile_uses_and_every_key():
    rules = {
        "f": "fraction",
        "w": "nonneg",
        "s": "seed",
        "t": "text",
        "p": "positive|none",
        "o": ("one_of", ("constant", "cosine")),
    }
    check_settings({"f": 1.0, "w": 0.0, "s": 0, "t": "x", "p": None, "o": "cosine"}, rules)
    for key, bad, message in [
        ("f", 0.0, r"f: expected a number in \(0, 1\], got 0.0"),
        ("f", 1.5, r"f: expected a number in \(0, 1\], got 1.5"),
        ("w", float("nan"), r"w: expected a finite number >= 0, got nan"),
        ("w", -1, r"w: expected a finite number >= 0, got -1"),
        ("s", True, r"s: expected an int >= 0, got True"),
        ("t", 3, r"t: expected a string, got 3"),
        ("o", "linear", r"o: expected one of constant, cosine, got 'linear'"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            check_settings({key: bad}, rules)
    with pytest.raises(
        ValueError, match=r"settings: expected a validation rule for every setting, got none for \['x'\]"
    ):
        check_settings({"x": 1}, rules)
    with pytest.raises(ValueError, match=r"rule: expected a known kind of settings rule, got 'nope'"):
        check_settings({"x": 1}, {"x": "nope"})
    with pytest.raises(ValueError, match=r"settings: expected a mapping"):
        check_settings([1], rules)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_every_profile_passes_its_own_rules(profile):
    assert cp.profile_settings(profile)["profile"] == profile
    assert mr.profile_settings(profile)["profile"] == profile
    assert bb.get_settings(profile).profile == profile


# ----------------------------------------------------------------------------- before any work is done
def test_mnist_settings_are_checked_before_the_data_load(monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded before the settings were checked")

    monkeypatch.setattr(mr, "load_mnist", no_data)
    with pytest.raises(ValueError, match=r"n_train: expected an int in \[1, 50000\], got -5"):
        mr.run("smoke", overrides={"n_train": -5}, save=False)
    with pytest.raises(ValueError, match=r"device: expected"):
        mr.run("smoke", device="banana", save=False)


def test_balls_settings_are_checked_before_the_simulation(monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("the videos were simulated before the settings were checked")

    monkeypatch.setattr(bb, "make_data", no_simulation)
    for overrides, message in [
        ({"frame_size": 18}, r"frame_size: expected a multiple"),
        ({"n_val": -1}, r"n_val: expected an int >= 0"),
        ({"models": ("rim-6-7",)}, r"k_active"),  # a model the sizes cannot build
        ({"data_seed": -1}, r"data_seed: expected an int >= 0, got -1"),
    ]:
        with pytest.raises(ValueError, match=message):
            bb.run("smoke", save=False, **overrides)


# ---------------------------------------------------------------------- records change only on purpose
@pytest.fixture
def folders(tmp_path, monkeypatch):
    """MINIRIMS_RESULTS (the tracked reference records) and MINIRIMS_RUNS (the ignored runs) in tmp_path."""
    refs, runs = tmp_path / "results", tmp_path / "runs"
    refs.mkdir()
    monkeypatch.setenv("MINIRIMS_RESULTS", str(refs))
    monkeypatch.setenv("MINIRIMS_RUNS", str(runs))
    return refs, runs


def test_default_record_paths_are_in_the_runs_folder(folders, monkeypatch):
    refs, runs = folders
    assert common.default_runs_dir() == runs
    assert output_record_path("copying", "cpu") == runs / "copying_cpu.json"
    assert output_record_path("copying", "cpu", runs_dir="elsewhere") == Path("elsewhere/copying_cpu.json")
    assert output_record_path("copying", "cpu", results=refs) == refs / "copying_cpu.json"
    assert common.record_path("copying", "cpu") == refs / "copying_cpu.json"  # reading references: unchanged
    monkeypatch.delenv("MINIRIMS_RUNS")
    assert common.default_runs_dir() == common.REPO_ROOT / "runs"
    gitignore = (common.REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "runs/" in gitignore


def test_a_default_copying_run_leaves_the_reference_records_alone(folders, one_thread):
    refs, runs = folders
    cp.run("smoke", models=["lstm"], overrides=COPY_TINY, progress=False)
    assert list(refs.iterdir()) == []
    saved = json.loads((runs / "copying_smoke.json").read_text())
    assert saved["experiment"] == "copying"
    assert list(runs.glob("copying_smoke_*/lstm_seed0.pt"))  # checkpoints in the same runs folder
    cp.run("smoke", models=["lstm"], overrides=COPY_TINY, progress=False, results=refs)  # on purpose
    assert (refs / "copying_smoke.json").exists()


def test_a_default_mnist_run_leaves_the_reference_records_alone(folders, one_thread):
    refs, runs = folders
    mr.run("smoke", models=["lstm-300"], overrides=MNIST_TINY, progress=False)
    assert list(refs.iterdir()) == [] and (runs / "mnist_resolution_smoke.json").exists()


def test_a_default_balls_run_leaves_the_reference_records_alone(folders, one_thread):
    refs, runs = folders
    result = bb.run("smoke", progress=False, **BALLS_TINY)
    assert list(refs.iterdir()) == []
    assert result.path == runs / "bouncing_balls_smoke.json" and result.path.exists()
    assert (runs / "bouncing_balls_smoke_examples.npz").exists()


# --------------------------------------------------------------- checkpoints: a settings hash, resumes
def test_balls_checkpoints_carry_a_settings_hash_and_resume_only_the_same_settings(tmp_path, one_thread):
    runs = tmp_path / "runs"
    two = bb.run("smoke", save=False, progress=False, runs_dir=runs, **{**BALLS_TINY, "epochs": 2})
    one = bb.run("smoke", save=False, progress=False, runs_dir=runs, **{**BALLS_TINY, "epochs": 1})
    assert len(two.record["curves"]["lstm-32"]["0"]) == 2
    assert len(one.record["curves"]["lstm-32"]["0"]) == 1  # not the 2-epoch model reported under epochs=1
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2 and all(f.startswith("bouncing_balls_smoke_") for f in folders)
    again = bb.run("smoke", save=False, progress=False, runs_dir=runs, **{**BALLS_TINY, "epochs": 1})
    assert again.record["curves"] == one.record["curves"]  # the same settings resume (here: finished)


def test_a_checkpoint_with_other_settings_is_refused_by_name(tmp_path, one_thread):
    s1 = bb.get_settings("smoke", **BALLS_TINY)
    data = {k: v.to("cpu") for k, v in bb.make_data(s1).items()}
    ckpt = tmp_path / "lstm.pt"
    bb.train_model("lstm-32", s1, data, checkpoint=ckpt, progress=False)
    s2 = bb.get_settings("smoke", **{**BALLS_TINY, "lr": 2e-3, "data_seed": 1})
    with pytest.raises(
        ValueError,
        match=r"lstm\.pt was written with other settings: lr \(saved 0.001, now 0.002\); "
        r"data_seed \(saved 0, now 1\)\. .*--fresh",
    ):
        bb.train_model("lstm-32", s2, data, checkpoint=ckpt, progress=False)
    _, res = bb.train_model("lstm-32", s2, data, checkpoint=ckpt, progress=False, fresh=True)
    assert res.resumed_from == 0


def test_grad_clip_none_means_no_clipping_and_runs(tmp_path, one_thread):
    record = cp.run(
        "smoke", models=["lstm"], overrides={**COPY_TINY, "grad_clip": None}, save=False, runs_dir=tmp_path
    )
    assert record["settings"]["grad_clip"] is None and len(record["curves"]["lstm"]["0"]) == 1


def test_describe_record_names_training_time_of_a_resumed_record() -> None:
    base = {"profile": "cpu", "provenance": {"device": "cpu", "threads": 1}, "seeds": [0, 1, 2]}
    # trained in this run: the wall time is the whole story
    fresh = {**base, "wall_time": 900.0, "metrics": {"rim": {"train_seconds": 850.0}}}
    assert common.describe_record(fresh) == "cpu profile, CPU (1 thread), 3 seeds, 15.0 min"
    # resumed from finished checkpoints: the run only tested, the training happened before
    resumed = {
        **base,
        "wall_time": 97.0,
        "metrics": {"rim": {"train_seconds": 5072.0}, "lstm": {"train_seconds": 3148.0}},
    }
    assert (
        common.describe_record(resumed)
        == "cpu profile, CPU (1 thread), 3 seeds, 137.0 min of training, this run 97 s"
    )
    gpu = {**base, "provenance": {"device": "cuda", "device_name": "H100"}, "wall_time": 30.0}
    assert common.describe_record(gpu) == "cpu profile, GPU (H100), 3 seeds, 30 s"
