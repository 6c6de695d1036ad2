"""The command line: one option name per meaning across the experiments, and every user error ends in one
line, ``python -m minirims <command>: error: <message>``, with status 2 -- never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minirims.__main__ import build_parser, main
from minirims.experiments import common

EXPERIMENT_COMMANDS = ("copying", "mnist-resolution", "bouncing-balls")


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    prefix = f"python -m minirims {command}: error: "
    assert err[0].startswith(prefix), err[0]
    return err[0].removeprefix(prefix)


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
def test_the_experiments_share_their_option_names(command, tmp_path):
    argv = [command, "--profile", "smoke", "--epochs", "2", "--seeds", "0,3", "--device", "cpu"]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--fresh"]
    argv += ["--no-progress"]
    parser, _ = build_parser(argv)
    args = parser.parse_args(argv)
    assert (args.epochs, args.seeds, args.device, args.fresh, args.no_progress) == (
        2,
        [0, 3],
        "cpu",
        True,
        True,
    )
    assert (args.runs_dir, args.results) == (str(tmp_path / "runs"), str(tmp_path / "results"))
    assert parser.parse_args([command]).seeds == 1  # a count by default


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
def test_models_lr_epochs_and_no_save_reach_the_run_of_every_experiment(command, monkeypatch):
    argv = [command, "--profile", "cpu", "--models", "lstm-8,lstm-16", "lstm-24", "--lr", "0.02"]
    argv += ["--epochs", "2", "--seeds", "0,3", "--no-save", "--no-progress", "--device", "cpu"]
    if command == "bouncing-balls":
        argv += ["--n-future", "35"]
    _, modules = build_parser(argv)
    module = modules[command]
    seen: dict = {}

    def fake_run(settings, seeds, **options):
        seen.update(settings=settings, seeds=seeds, **options)
        raise RuntimeError("stop here")

    monkeypatch.setattr(module, "run", fake_run)
    with pytest.raises(RuntimeError, match="stop here"):
        main(argv)
    s = seen["settings"]
    # --models: names separated by spaces or commas, in order; --lr: one rate for every model
    assert s.models == ("lstm-8", "lstm-16", "lstm-24") and s.lr == 0.02 and s.lr_by_model == {}
    assert s.epochs == 2 and s.profile == "cpu" and isinstance(s, module.Settings)
    # nothing else changes: the rest is the profile's (balls: and --n-future, its test's rollout length)
    cpu = module.PROFILES["cpu"]
    extra = {"n_future": 35} if command == "bouncing-balls" else {}
    assert s == cpu.replace(models=s.models, lr=0.02, lr_by_model={}, epochs=2, **extra)
    assert seen["seeds"] == [0, 3] and seen["save"] is False and seen["progress"] is False
    assert seen["device"] == "cpu" and seen["fresh"] is False
    assert (seen["results"], seen["runs_dir"]) == (None, None)


def test_every_experiment_command_has_the_shared_options_and_balls_adds_n_future():
    import argparse

    from minirims.experiments import bouncing_balls, copying, mnist_resolution

    options = {}
    for module in (copying, mnist_resolution, bouncing_balls):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        options[module] = {a.dest for a in parser._actions} - {"help"}
    shared = {"profile", "models", "seeds", "epochs", "lr", "results", "runs_dir", "device", "fresh"}
    shared |= {"no_save", "no_progress"}
    assert options[copying] == options[mnist_resolution] == shared
    assert options[bouncing_balls] == shared | {"n_future"}
    parser = argparse.ArgumentParser()
    common.add_arguments(parser)
    assert {a.dest for a in parser._actions} - {"help"} == shared


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
def test_the_old_checkpoint_option_name_is_gone(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--checkpoint-dir", "x"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --checkpoint-dir" in capsys.readouterr().err


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
@pytest.mark.parametrize(
    ("seeds", "why"),
    [
        ("0,0", "expected distinct seeds, got [0, 0]"),
        ("0", "expected a count >= 1"),
        ("a", "expected a count N"),
    ],
)
def test_bad_seeds_are_argparse_usage_errors(command, seeds, why, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--seeds", seeds])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"python -m minirims {command}: error: argument --seeds: {why}" in err and "Traceback" not in err


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "epochs: expected a positive int, got 0"),
        (["--device", "banana"], "device: expected 'cpu', 'cuda' or 'cuda:N', got 'banana'"),
        (["--models", "gru"], "expected"),
    ],
)
def test_user_errors_end_in_one_line_with_status_2(command, extra, message, capsys):
    assert main([command, "--profile", "smoke", *extra]) == 2
    assert message in _one_error_line(capsys, command)
    assert "profile smoke" not in capsys.readouterr().out  # refused before the run printed or did anything


def test_an_unknown_profile_is_one_line_too(capsys):
    assert main(["copying", "--profile", "huge"]) == 2
    assert _one_error_line(capsys, "copying") == "profile: expected one of smoke, cpu, full, long, got 'huge'"


def test_a_damaged_checkpoint_on_the_command_line_says_what_to_do(tmp_path, capsys, one_thread):
    argv = ["copying", "--profile", "smoke", "--models", "lstm-48", "--epochs", "1", "--no-progress"]
    argv += ["--runs-dir", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "copying_smoke.json").exists() and (tmp_path / "copying_smoke.png").exists()
    (ckpt,) = tmp_path.glob("copying_smoke_*/lstm-48_seed0.pt")
    ckpt.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys, "copying")
    assert str(ckpt) in line and "delete it, or start over" in line and "--fresh" in line
    assert main([*argv, "--fresh"]) == 0
    # --no-save: trained (and checkpointed) as asked, but no record and no figure
    for p in tmp_path.glob("copying_smoke.*"):
        p.unlink()
    assert main([*argv, "--no-save"]) == 0
    assert not list(tmp_path.glob("copying_smoke.*")) and "copying, profile smoke" in capsys.readouterr().out


def test_a_data_error_is_one_line(monkeypatch, capsys):
    from minirims.experiments.data import mnist

    def refuse(*args, **kwargs):
        raise ValueError("data_dir: expected a folder, got '/nowhere/file'")

    monkeypatch.setattr(mnist, "fetch_mnist", refuse)
    assert main(["data", "fetch", "--data-dir", "/nowhere/file"]) == 2
    assert _one_error_line(capsys, "data") == "data_dir: expected a folder, got '/nowhere/file'"


def test_the_real_command_prints_no_traceback():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINIRIMS_PROFILE": "smoke"}
    proc = subprocess.run(
        [sys.executable, "-m", "minirims", "bouncing-balls", "--epochs", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m minirims bouncing-balls: error: epochs: expected a positive int, got 0"
    ]
