"""The command line (issue 12): one option name per meaning across the experiments, and every user error ends
in one line, ``python -m minirims <command>: error: <message>``, with status 2 -- never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minirims.__main__ import build_parser, main

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
    assert _one_error_line(capsys, "copying") == "profile: expected one of smoke, cpu, full, got 'huge'"


def test_a_damaged_checkpoint_on_the_command_line_says_what_to_do(tmp_path, capsys, one_thread):
    argv = ["copying", "--profile", "smoke", "--models", "lstm", "--epochs", "1", "--no-progress"]
    argv += ["--runs-dir", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "copying_smoke.json").exists() and (tmp_path / "copying_smoke.png").exists()
    (ckpt,) = tmp_path.glob("copying_smoke_*/lstm_seed0.pt")
    ckpt.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys, "copying")
    assert str(ckpt) in line and "delete it, or start over" in line and "--fresh" in line
    assert main([*argv, "--fresh"]) == 0


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
