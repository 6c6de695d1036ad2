"""Settings, records and checkpoints of the experiments: every experiment has one shape, bad settings are
refused when made (before any work), records are written only where asked, checkpoints resume only with the
same training settings."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

from minirims.experiments import bouncing_balls as bb
from minirims.experiments import common
from minirims.experiments import copying as cp
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.common import output_record_path, parse_model_name, seed_list

MODULES = {"copying": cp, "mnist": mr, "balls": bb}
COPY_TINY = {"steps_per_epoch": 2, "epochs": 1, "n_eval": 8, "eval_batch_size": 8, "test_delays": (5,)}
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
    return cp.settings("smoke", **overrides)


def _mnist(**overrides):
    return mr.settings("smoke", **overrides)


def _balls(**overrides):
    return bb.settings("smoke", **overrides)


EXPERIMENTS = {"copying": _copying, "mnist": _mnist, "balls": _balls}


# ------------------------------------------------------------------------------------------ one shape
SHAPE = ("Settings", "PROFILES", "settings", "make_model", "run", "format_table", "add_arguments", "main")


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES)
def test_every_experiment_exposes_the_same_names(module):
    for name in (*SHAPE, "EXPERIMENT"):
        assert hasattr(module, name), name
    assert set(SHAPE) <= set(module.__all__) and "EXPERIMENT" in module.__all__
    assert issubclass(module.Settings, common.Settings) and module.Settings is not common.Settings
    assert {"smoke", "cpu", "full"} <= set(module.PROFILES) <= {"smoke", "cpu", "full", "long"}
    assert all(type(s) is module.Settings for s in module.PROFILES.values())
    assert list(inspect.signature(module.run).parameters)[:2] == ["settings", "seeds"]
    assert inspect.signature(module.run).parameters["seeds"].default == 1
    assert list(inspect.signature(module.make_model).parameters) == ["name", "settings"]
    assert list(inspect.signature(module.settings).parameters) == ["profile", "overrides"]
    assert module.EXPERIMENT in {"copying", "mnist_resolution", "bouncing_balls"}


def test_the_old_names_are_gone():
    """One name per thing: what the one shape replaced is not left beside it."""
    gone = {
        common: ["check_settings", "profile_with_overrides", "add_run_arguments"],
        cp: ["profile_settings", "MODEL_NAMES", "MODELS", "plot_accuracy"],
        mr: ["profile_settings", "MODEL_NAMES", "MODELS", "plot_accuracy"],
        bb: ["get_settings", "build_model", "train_model", "training_settings", "summary_table", "MODELS"],
    }
    for module, names in gone.items():
        assert [n for n in names if hasattr(module, n)] == [], module.__name__
    for module in MODULES.values():  # what the model names carry is no setting
        fields = {f.name for f in dataclasses.fields(module.Settings)}
        removed = {"n_modules", "k_active", "rim_hidden", "lstm_hidden", "lstm_scale", "d_hidden", "bce_unit"}
        assert not fields & (removed | {"tf_d_model", "tf_layers"}), module.__name__
    assert bb.BCE_UNIT == "BCE of a frame summed over its pixels, averaged over test videos"


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES)
@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_every_profile_passes_its_own_validation_and_builds_its_models(module, profile):
    s = module.settings(profile)
    assert s is module.PROFILES[profile] and s.profile == profile
    assert module.settings(s) is s  # Settings pass through
    assert isinstance(s.note, str) and s.note  # every profile says why it is what it is
    if profile != "full":  # (the full models are built in the experiments' own tests)
        for name in s.models:
            assert isinstance(module.make_model(name, s), torch.nn.Module)


def test_the_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINIRIMS_PROFILE", "cpu")
    assert cp.settings().profile == mr.settings().profile == bb.settings().profile == "cpu"
    monkeypatch.setenv("MINIRIMS_PROFILE", "smoke")
    assert cp.settings(epochs=3) == cp.PROFILES["smoke"].replace(epochs=3)


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
def test_settings_are_frozen_and_replace_validates_again(get):
    s = get()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 3
    assert s.replace(epochs=3).epochs == 3 and s.epochs == 1
    with pytest.raises(ValueError, match=r"^epochs: expected a positive int, got 0$"):
        s.replace(epochs=0)
    with pytest.raises(
        ValueError, match=r"^overrides: expected keys among \[.*'epochs'.*\], got unknown \['x'\]$"
    ):
        s.replace(x=1)
    with pytest.raises(TypeError):
        type(s)("smoke")  # keyword-only
    # lists become tuples (the settings stay comparable); a record stores lists
    again = s.replace(models=list(s.models))
    assert again.models == s.models and again == s
    assert again.as_dict()["models"] == list(s.models)
    json.dumps(s.as_dict())  # JSON-ready
    assert set(s.as_dict()) == {f.name for f in dataclasses.fields(s)}
    # the training settings: all but what only the test reads
    assert set(s.training_dict()) == set(s.as_dict()) - set(type(s).TEST_ONLY)
    assert {"models", "eval_batch_size", "note"} <= set(type(s).TEST_ONLY)


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
        (_mnist, "n_train", True, r"n_train: expected an int in \[1, 50000\], got True"),
        (_mnist, "n_test", 10_001, r"n_test: expected an int in \[1, 10000\], got 10001"),
        (_mnist, "train_size", 1.5, r"train_size: expected an int in \[1, 56\], got 1.5"),
        (_mnist, "test_sizes", [14, 100], r"test_sizes\[1\]: expected an int in \[1, 56\], got 100$"),
        (_mnist, "test_sizes", [], r"test_sizes: expected a non-empty list, got \[\]$"),
        (_mnist, "test_sizes", [16, 16], r"test_sizes: expected a list of distinct values, got \[16, 16\]$"),
        (_mnist, "tf_heads", 0, r"tf_heads: expected a positive int, got 0$"),
        (_copying, "test_delays", 50, r"test_delays: expected a non-empty list, got 50$"),
        (_copying, "test_delays", (5, True), r"test_delays\[1\]: expected a positive int, got True$"),
        (_copying, "train_delay", 0, r"train_delay: expected a positive int, got 0$"),
        (_balls, "frame_size", 18, r"frame_size: expected a multiple of 2 \*\* len\(channels\) = 4, got 18"),
        (_balls, "frame_size", 1024, r"frame_size: expected an int in \[4, 256\], got 1024"),
        (_balls, "n_val", -1, r"n_val: expected an int >= 0, got -1"),
        (_balls, "channels", (8, 0), r"channels\[1\]: expected a positive int, got 0$"),
        (_balls, "channels", (), r"channels: expected a non-empty list of positive ints, got \(\)$"),
        (_balls, "n_given", 12, r"n_given: expected an int in \[1, 11\], got 12$"),
    ],
)
def test_sizes_are_in_range(get, key, value, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        get(**{key: value})


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [(float("inf"), "inf"), (True, "True"), (0.0, "0.0"), (-1e-3, "-0.001"), (1e300, "1e\\+300")],
)
def test_rates_are_finite_and_positive(get, value, shown):
    with pytest.raises(ValueError, match=rf"^lr: expected a number in \(0, 1\], got {shown}$"):
        get(lr=value)
    if value == 1e300:  # a clipping norm has no upper bound
        assert get(grad_clip=value).grad_clip == value
        return
    with pytest.raises(ValueError, match=r"^grad_clip: expected a finite number > 0 or None"):
        get(grad_clip=value)


@pytest.mark.parametrize(("get", "name"), [(_copying, "rim-6x8-k4"), (_mnist, "rim-6x12-k4")])
def test_learning_rates_by_model_are_rates_of_model_names(get, name):
    with pytest.raises(
        ValueError, match=rf"^lr_by_model\['{name}'\]: expected a number in \(0, 1\], got nan$"
    ):
        get(lr_by_model={name: float("nan")})
    with pytest.raises(ValueError, match=r"^lr_by_model\['gru'\]: expected a model name like"):
        get(lr_by_model={"gru": 1e-3})
    with pytest.raises(ValueError, match=r"^lr_by_model: expected a dict from model names to learning rates"):
        get(lr_by_model=[(name, 1e-3)])
    assert get(lr_by_model={name: 1e-3}).lr_by_model == {name: 1e-3}


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
def test_booleans_only_where_booleans_are_expected(get):
    with pytest.raises(ValueError, match=r"^compile: expected one of True, False, got 'yes'$"):
        get(compile="yes")
    with pytest.raises(ValueError, match=r"^dropout: expected a number in \[0, 1\), got 1.0$"):
        get(dropout=1.0)
    with pytest.raises(ValueError, match=r"^dropout: expected a number in \[0, 1\), got True$"):
        get(dropout=True)
    assert get(dropout=0).dropout == 0 and get(compile=True).compile is True


@pytest.mark.parametrize("get", EXPERIMENTS.values(), ids=EXPERIMENTS)
def test_a_number_is_not_a_boolean(get):
    with pytest.raises(ValueError, match=r"^compile: expected one of True, False, got 1$"):
        get(compile=1)
    with pytest.raises(ValueError, match=r"^compile: expected one of True, False, got 0.0$"):
        get(compile=0.0)
    if get is _balls:
        with pytest.raises(ValueError, match=r"^feedback_grad: expected one of True, False, got 1$"):
            get(feedback_grad=1)


def test_model_lists_are_known_and_distinct():
    with pytest.raises(
        ValueError, match=r"^models: expected a list of distinct values, got \['rim-6x8-k4', 'rim-6x8-k4'\]$"
    ):
        _copying(models=["rim-6x8-k4", "rim-6x8-k4"])
    with pytest.raises(ValueError, match=r"^models: expected a non-empty list, got \(\)$"):
        _balls(models=())
    with pytest.raises(ValueError, match=r"^models: expected a non-empty list, got 'lstm-8'$"):
        _balls(models="lstm-8")  # a string is not a list of names
    with pytest.raises(ValueError, match=r"^models\[0\]: expected a model name like .*, got 'gru-3'$"):
        _balls(models=("gru-3",))
    with pytest.raises(
        ValueError, match=r"^models\[0\]: expected a model name like .*, got 'transformer-1x16'$"
    ):
        _copying(models=("transformer-1x16",))  # a kind this experiment does not know
    assert _mnist(models=("transformer-1x16",)).models == ("transformer-1x16",)
    with pytest.raises(
        ValueError, match=r"^models\[0\]: expected k active in \[1, n = 6\] .*, got 'rim-6x8-k7'$"
    ):
        _copying(models=("rim-6x8-k7",))  # k > n: what the old k_active rule refused


def test_a_bad_model_name_is_reported_under_its_field():
    with pytest.raises(ValueError, match=r"^models\[0\]: expected a model name like .*, got 'gru-3'$"):
        _balls(models=("gru-3",))


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


def test_the_shared_settings_validate_every_kind_of_value():
    """What the settings rules checked, each kind on a field of the shared Settings."""
    ok = common.Settings(models=("lstm-8",))
    assert ok.profile == "full" and ok.warmup_steps == 0 and ok.grad_clip == 1.0
    for key, good in [
        ("dropout", 0.0),  # a fraction in [0, 1)
        ("warmup_steps", 0),  # an int >= 0
        ("note", "why"),  # text
        ("grad_clip", None),  # positive or None
        ("lr_schedule", "cosine"),  # one of
        ("profile", "smoke"),
    ]:
        assert getattr(ok.replace(**{key: good}), key) == good
    for key, bad, message in [
        ("dropout", -0.1, r"dropout: expected a number in \[0, 1\), got -0.1"),
        ("dropout", float("nan"), r"dropout: expected a number in \[0, 1\), got nan"),
        ("warmup_steps", -1, r"warmup_steps: expected an int >= 0, got -1"),
        ("warmup_steps", True, r"warmup_steps: expected an int >= 0, got True"),
        ("note", 3, r"note: expected a string, got 3"),
        ("grad_clip", float("nan"), r"grad_clip: expected a finite number > 0 or None, got nan"),
        ("lr_schedule", "linear", r"lr_schedule: expected one of constant, cosine, got 'linear'"),
        ("profile", "huge", r"profile: expected one of smoke, cpu, full, long, got 'huge'"),
        ("input_d_v", 0, r"input_d_v: expected a positive int, got 0"),
        ("comm_heads", 2.0, r"comm_heads: expected a positive int, got 2.0"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            ok.replace(**{key: bad})
    with pytest.raises(ValueError, match=r"^models: expected a non-empty list, got \(\)$"):
        common.Settings()  # a run trains at least one model
    with pytest.raises(ValueError, match=r"^data_seed: expected an int >= 0, got True$"):
        _balls(data_seed=True)  # a seed: an int >= 0, never a bool
    assert _balls(data_seed=0).data_seed == 0


# --------------------------------------------------------------------------------------- model names
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        (
            "rim-6x48-k4",
            {
                "kind": "rim",
                "n": 6,
                "d": 48,
                "k": 4,
                "rnn": "lstm",
                "communicate": True,
                "selection": "attention",
            },
        ),
        (
            "rim-1x1-k1",
            {
                "kind": "rim",
                "n": 1,
                "d": 1,
                "k": 1,
                "rnn": "lstm",
                "communicate": True,
                "selection": "attention",
            },
        ),
        (
            "rim-6x100-k6",
            {
                "kind": "rim",
                "n": 6,
                "d": 100,
                "k": 6,
                "rnn": "lstm",
                "communicate": True,
                "selection": "attention",
            },
        ),
        (
            "rim-6x100-k4-gru",
            {
                "kind": "rim",
                "n": 6,
                "d": 100,
                "k": 4,
                "rnn": "gru",
                "communicate": True,
                "selection": "attention",
            },
        ),
        (
            "rim-6x48-k4-nocomm",
            {
                "kind": "rim",
                "n": 6,
                "d": 48,
                "k": 4,
                "rnn": "lstm",
                "communicate": False,
                "selection": "attention",
            },
        ),
        (
            "rim-6x48-k4-gru-nocomm-random",
            {
                "kind": "rim",
                "n": 6,
                "d": 48,
                "k": 4,
                "rnn": "gru",
                "communicate": False,
                "selection": "random",
            },
        ),
        ("lstm-288", {"kind": "lstm", "d": 288}),
        ("transformer-2x64", {"kind": "transformer", "layers": 2, "d": 64}),
    ],
)
def test_model_names_say_their_size(name, spec):
    assert parse_model_name(name, ("rim", "lstm", "transformer")) == spec


@pytest.mark.parametrize(
    "name",
    [
        "rim",
        "rim-6-4",
        "rim-6x48",
        "rim-6x48-4",
        "RIM-6x48-k4",
        "rim-6x48-k4 ",
        "lstm",
        "lstm-",
        "lstm-2.5",
        "lstm-1e3",
        "gru-64",
        "transformer-64",
        "lstm-0",
        "rim-6x0-k4",
        "transformer-0x64",
        "",
        None,
        288,
        ("lstm-8",),
    ],
)
def test_bad_model_names_are_refused_by_name(name):
    with pytest.raises(
        ValueError, match=r"^name: expected a model name like 'rim-6x48-k4' or 'lstm-288', got "
    ):
        parse_model_name(name)


def test_k_active_is_at_most_n_and_the_kinds_are_the_experiments():
    for bad in ("rim-6x8-k7", "rim-6x8-k0", "rim-1x8-k2", "rim-0x8-k1"):
        with pytest.raises(
            ValueError, match=rf"^name: expected k active in \[1, n = \d\] in a model .*'{bad}'$"
        ):
            parse_model_name(bad)
    with pytest.raises(
        ValueError, match=r"^name: expected a model name like 'rim-6x48-k4' or 'lstm-288', got"
    ):
        parse_model_name("transformer-2x64")  # the default kinds: rim and lstm
    with pytest.raises(ValueError, match=r"^name: expected a model name like 'lstm-288', got 'rim-6x8-k4'$"):
        parse_model_name("rim-6x8-k4", ("lstm",))
    for bad in (
        "rim-6x8-k4-rnn",
        "lstm-8-gru",
        "rim-6x8-k4-random-nocomm",
        "lstm-8-nocomm",
        "rim-6x8-k4-nocom",
    ):  # only a RIM takes GRU modules, spelled -gru
        with pytest.raises(ValueError, match=r"^name: expected a model name like"):
            parse_model_name(bad)
    from minirims.experiments import bouncing_balls as bb

    core = bb.make_model("rim-6x16-k4-gru", bb.settings("smoke")).core
    assert core.cell.rnn_type == "gru"
    with pytest.raises(ValueError, match=r"'transformer-2x64', got 'gru-1'$"):
        mr.make_model("gru-1")  # the message lists what this experiment knows
    core = common.make_core("rim-5x7-k2", 3, _copying())
    assert (core.n_modules, core.k_active, core.d_out) == (5, 2, 35)
    assert core.cell.communicate and core.cell.selection == "attention"
    core = common.make_core("rim-5x7-k2-nocomm-random", 3, _copying())
    assert core.cell.communication is None and core.cell.selection == "random"
    assert common.make_core("lstm-9", 3, _copying()).d_out == 9


# ----------------------------------------------------------------------------- before any work is done
def test_mnist_settings_are_checked_before_the_data_load(monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded before the settings were checked")

    monkeypatch.setattr(mr, "load_mnist", no_data)
    with pytest.raises(ValueError, match=r"n_train: expected an int in \[1, 50000\], got -5"):
        mr.run(mr.settings("smoke", n_train=-5), save=False)
    with pytest.raises(ValueError, match=r"device: expected"):
        mr.run("smoke", device="banana", save=False)
    with pytest.raises(ValueError, match=r"d_model: expected an even multiple of n_heads=2, got 15"):
        mr.run(mr.settings("smoke", models=("lstm-8", "transformer-1x15")), save=False)  # every model built
    with pytest.raises(ValueError, match=r"seeds: expected distinct seeds"):
        mr.run("smoke", seeds=[1, 1], save=False)


def test_balls_settings_are_checked_before_the_simulation(monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("the videos were simulated before the settings were checked")

    monkeypatch.setattr(bb, "make_data", no_simulation)
    for overrides, message in [
        ({"frame_size": 18}, r"frame_size: expected a multiple"),
        ({"n_val": -1}, r"n_val: expected an int >= 0"),
        ({"models": ("rim-6x16-k7",)}, r"k active in \[1, n = 6\]"),  # a model the sizes cannot build
        ({"data_seed": -1}, r"data_seed: expected an int >= 0, got -1"),
    ]:
        with pytest.raises(ValueError, match=message):
            bb.run(bb.settings("smoke", **overrides), save=False)
    with pytest.raises(ValueError, match=r"device: expected"):
        bb.run("smoke", device="banana", save=False)
    with pytest.raises(TypeError):
        bb.run("smoke", save=False, epochs=2)  # settings go through settings(), not run's options


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
    settings = cp.settings("smoke", models=["lstm-48"], **COPY_TINY)
    cp.run(settings, progress=False)
    assert list(refs.iterdir()) == []
    saved = json.loads((runs / "copying_smoke.json").read_text())
    assert saved["experiment"] == "copying"
    assert list(runs.glob("copying_smoke_*/lstm-48_seed0.pt"))  # checkpoints in the same runs folder
    cp.run(settings, progress=False, results=refs)  # on purpose
    assert (refs / "copying_smoke.json").exists()


def test_a_default_mnist_run_leaves_the_reference_records_alone(folders, one_thread):
    refs, runs = folders
    mr.run(mr.settings("smoke", models=["lstm-72"], **MNIST_TINY), progress=False)
    assert list(refs.iterdir()) == [] and (runs / "mnist_resolution_smoke.json").exists()


def test_a_default_balls_run_leaves_the_reference_records_alone(folders, one_thread):
    refs, runs = folders
    record = bb.run(bb.settings("smoke", **BALLS_TINY), progress=False)
    assert list(refs.iterdir()) == []
    path = runs / "bouncing_balls_smoke.json"
    assert path.exists() and json.loads(path.read_text())["metrics"].keys() == record["metrics"].keys()
    assert (runs / "bouncing_balls_smoke_examples.npz").exists()


# --------------------------------------------------------------- checkpoints: a settings hash, resumes
def test_balls_checkpoints_carry_a_settings_hash_and_resume_only_the_same_settings(tmp_path, one_thread):
    runs = tmp_path / "runs"
    two = bb.run(
        bb.settings("smoke", **{**BALLS_TINY, "epochs": 2}), save=False, progress=False, runs_dir=runs
    )
    one = bb.run(
        bb.settings("smoke", **{**BALLS_TINY, "epochs": 1}), save=False, progress=False, runs_dir=runs
    )
    assert len(two["curves"]["lstm-32"]["0"]) == 2
    assert len(one["curves"]["lstm-32"]["0"]) == 1  # not the 2-epoch model reported under epochs=1
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2 and all(f.startswith("bouncing_balls_smoke_") for f in folders)
    settings = bb.settings("smoke", **{**BALLS_TINY, "epochs": 1})
    assert f"bouncing_balls_smoke_{common.settings_key(settings.training_dict())}" in folders
    again = bb.run(settings, save=False, progress=False, runs_dir=runs)
    assert again["curves"] == one["curves"]  # the same settings resume (here: finished)


def test_a_checkpoint_with_other_settings_is_refused_by_name(tmp_path, one_thread):
    runs = tmp_path / "runs"
    s1 = bb.settings("smoke", **BALLS_TINY)
    bb.run(s1, save=False, progress=False, runs_dir=runs)
    s2 = bb.settings("smoke", **{**BALLS_TINY, "lr": 2e-3, "data_seed": 1})
    # the checkpoint of s1 where s2 looks for its own (e.g. copied by hand, or a hash collision)
    (runs / f"bouncing_balls_smoke_{common.settings_key(s1.training_dict())}").rename(
        runs / f"bouncing_balls_smoke_{common.settings_key(s2.training_dict())}"
    )
    with pytest.raises(
        ValueError,
        match=r"lstm-32_seed0\.pt was written with other settings: lr \(saved 0.001, now 0.002\); "
        r"data_seed \(saved 0, now 1\)\. .*--fresh",
    ):
        bb.run(s2, save=False, progress=False, runs_dir=runs)
    record = bb.run(s2, save=False, progress=False, runs_dir=runs, fresh=True)
    assert len(record["curves"]["lstm-32"]["0"]) == 1 and record["settings"]["lr"] == 2e-3


def test_grad_clip_none_means_no_clipping_and_runs(tmp_path, one_thread):
    record = cp.run(
        cp.settings("smoke", models=["lstm-48"], grad_clip=None, **COPY_TINY), save=False, runs_dir=tmp_path
    )
    assert record["settings"]["grad_clip"] is None and len(record["curves"]["lstm-48"]["0"]) == 1


# ----------------------------------------------------------------- the one loop: train_and_test resumes
def _toy_model(name, settings):
    return torch.nn.Linear(3, parse_model_name(name)["d"])


def _toy_task(counts):
    def make_task(settings, device):
        def batches(seed, epoch):
            gen = torch.Generator().manual_seed(100 * seed + epoch)
            return [torch.randn(8, 3, generator=gen).to(device) for _ in range(4)]

        def loss(model, x):
            counts["loss"] += 1
            out = model(x)
            return (out - x.sum(-1, keepdim=True)).pow(2).mean(), {}

        @torch.no_grad()
        def score(model):
            x = torch.randn(32, 3, generator=torch.Generator().manual_seed(7)).to(device)
            return float((model(x) - x.sum(-1, keepdim=True)).pow(2).mean())

        return common.Task(
            batches=batches,
            loss=loss,
            validate=lambda m: {"val_loss": score(m)},
            test=score,
            summarize=lambda per_seed: {"mse": common.mean_std(per_seed)},
        )

    return make_task


def test_train_and_test_resumes_from_its_checkpoints(tmp_path, one_thread):
    settings = common.Settings(profile="smoke", models=("lstm-2", "lstm-4"), epochs=2, lr=1e-2)
    counts = {"loss": 0}
    kw = {"runs_dir": tmp_path / "runs", "progress": False, "save": False}
    trained: dict = {}
    first = common.train_and_test(
        "toy",
        settings,
        [0, 1],
        _toy_model,
        _toy_task(counts),
        trained=trained,
        **kw,
        baselines=lambda task: {"zero": {"mse": 3.0}},
    )
    assert counts["loss"] == 2 * 2 * 2 * 4  # models x seeds x epochs x batches
    folder = tmp_path / "runs" / f"toy_smoke_{common.settings_key(settings.training_dict())}"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"lstm-{d}_seed{s}.pt" for d in (2, 4) for s in (0, 1)
    ]
    for name in settings.models:
        m = first["metrics"][name]
        assert m["mse"]["n"] == 2 and len(m["best_epoch"]) == 2 and m["train_seconds"] > 0
        assert len(first["curves"][name]["0"]) == len(first["curves"][name]["1"]) == 2
        assert first["parameters"][name] == 4 * parse_model_name(name)["d"]
    assert first["metrics"]["zero"] == {"mse": 3.0}  # the trivial predictors beside the models
    assert set(trained) == set(settings.models) and not trained["lstm-4"].training  # the last seed's model
    assert first["settings"] == settings.as_dict() and first["seeds"] == [0, 1]

    # the same settings: nothing is trained again, and the numbers are the same
    again = common.train_and_test("toy", settings, [0, 1], _toy_model, _toy_task(counts), **kw)
    assert counts["loss"] == 32
    for name in settings.models:
        assert again["metrics"][name] == first["metrics"][name]  # train_seconds too: from the saved history
        assert again["curves"][name] == first["curves"][name]
    # what only the test reads (here: the models and the eval batch) reuses the same checkpoints
    fewer = settings.replace(models=("lstm-4",), eval_batch_size=7)
    third = common.train_and_test("toy", fewer, [1], _toy_model, _toy_task(counts), **kw)
    assert counts["loss"] == 32 and third["metrics"]["lstm-4"]["mse"]["values"] == [
        first["metrics"]["lstm-4"]["mse"]["values"][1]
    ]
    # fresh: trained again, from the same seed, to the same numbers
    fresh = common.train_and_test("toy", fewer, [1], _toy_model, _toy_task(counts), fresh=True, **kw)
    assert counts["loss"] == 32 + 2 * 4
    assert fresh["metrics"]["lstm-4"]["mse"]["values"] == pytest.approx(
        third["metrics"]["lstm-4"]["mse"]["values"]
    )
    # other training settings: another folder, trained afresh
    common.train_and_test(
        "toy", settings.replace(lr=2e-2, models=("lstm-2",)), [0], _toy_model, _toy_task(counts), **kw
    )
    assert counts["loss"] == 40 + 2 * 4 and len(list((tmp_path / "runs").iterdir())) == 2


def test_describe_record_names_training_time_of_a_resumed_record() -> None:
    base = {"profile": "cpu", "provenance": {"device": "cpu", "threads": 1}, "seeds": [0, 1, 2]}
    # trained in this run: the wall time is the whole story
    fresh = {**base, "wall_time": 900.0, "metrics": {"rim-6x32-k4": {"train_seconds": 850.0}}}
    assert common.describe_record(fresh) == "cpu profile, CPU (1 thread), 3 seeds, 15.0 min"
    # resumed from finished checkpoints: the run only tested, the training happened before
    resumed = {
        **base,
        "wall_time": 97.0,
        "metrics": {"rim-6x32-k4": {"train_seconds": 5072.0}, "lstm-192": {"train_seconds": 3148.0}},
    }
    assert (
        common.describe_record(resumed)
        == "cpu profile, CPU (1 thread), 3 seeds, 137.0 min of training, this run 97 s"
    )
    gpu = {**base, "provenance": {"device": "cuda", "device_name": "H100"}, "wall_time": 30.0}
    assert common.describe_record(gpu) == "cpu profile, GPU (H100), 3 seeds, 30 s"


def test_the_shared_attention_defaults_are_the_cells():
    from minirims.cell import RIMCell

    cell = inspect.signature(RIMCell.__init__).parameters
    fields = {f.name: f.default for f in dataclasses.fields(common.Settings)}
    for key in ("input_heads", "input_d_k", "input_d_v", "comm_heads", "comm_d_k", "comm_d_v", "dropout"):
        assert fields[key] == cell[key].default, key


@pytest.mark.parametrize(("cores", "want"), [({0}, 1), ({0, 1}, 2), ({0, 1, 2, 3}, 2)])
def test_default_workers_trains_side_by_side_on_two_free_cores(monkeypatch, cores, want):
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: cores, raising=False)
    assert common.default_workers("cpu") == want


def test_default_workers_is_one_on_a_gpu_and_refuses_a_bad_device(monkeypatch):
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(common, "pick_device", lambda device=None: torch.device("cuda"))
    assert common.default_workers() == 1
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"^device: expected 'cpu', 'cuda' or 'cuda:N'"):
        common.default_workers("tpu")
