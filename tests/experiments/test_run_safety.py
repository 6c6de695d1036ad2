"""A run checks what it can before any work (seeds, epochs, output folders), and never loses finished work."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
from pathlib import Path

import pytest

from minirims.experiments import common
from minirims.experiments import copying as cp
from minirims.experiments.common import check_output_dir, seed_list, seeds_argument


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (10**12, r"^seeds: expected a count of at most 100 seeds, got 1000000000000$"),
        (101, r"^seeds: expected a count of at most 100 seeds, got 101$"),
        (range(10**12), r"^seeds: expected at most 100 seeds, got more$"),
        (itertools.count(), r"^seeds: expected at most 100 seeds, got more$"),  # endless: never listed
        ([0, 2**32], r"^seeds: expected seeds in 0\.\.4294967295, got 4294967296$"),
    ],
)
def test_seed_counts_and_values_are_bounded_before_any_list_is_built(seeds, message):
    with pytest.raises(ValueError, match=message):
        seed_list(seeds)
    assert seed_list(100) == list(range(100)) and seed_list(iter([5, 2])) == [5, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("99999999999999999999", "expected a count of at most 100 seeds"),
        (",".join(["1"] * 10**6), "expected at most 100 seeds, got a list of 1000000"),
        ("9" * 5000, "expected a count N or a comma-separated list"),  # too many digits for an int
    ],
)
def test_the_seeds_option_refuses_huge_counts_and_lists(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        seeds_argument(text)


def test_the_seeds_option_reads_counts_lists_and_one_seed():
    assert seeds_argument("3") == 3 and seeds_argument("0,3") == [0, 3] and seeds_argument("2,") == [2]
    for text in (",", "1,,2", ",2", "a"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a count N or a comma-separated list"):
            seeds_argument(text)


def test_epochs_are_bounded():
    with pytest.raises(ValueError, match=r"^epochs: expected a positive int of at most 10000, got 10001$"):
        cp.settings("smoke", epochs=10_001)
    assert cp.settings("smoke", epochs=10_000).epochs == 10_000


def test_output_folders_are_checked_without_being_made(tmp_path, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for value, message in [
        ("", r"^--runs-dir: expected a folder path \(use \. for the current folder\), got ''$"),
        ("   ", r"^--runs-dir: expected a folder path"),
        (None, r"^--runs-dir: expected a folder path"),
        (str(a_file), rf"^--runs-dir: expected a folder, got '{re.escape(str(a_file))}', which is a file$"),
        (str(a_file / "x" / "y"), rf"but '{re.escape(str(a_file))}' is a file$"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_output_dir("--runs-dir", value)
    later = tmp_path / "new" / "runs"
    assert check_output_dir("--runs-dir", later) == later and not (tmp_path / "new").exists()

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(
        ValueError, match=r"^--results: expected a folder you can write to, got .*new/runs' \("
    ):
        check_output_dir("--results", later)


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a read-only /proc/sys")
def test_a_read_only_folder_is_refused():
    with pytest.raises(ValueError, match=r"^runs_dir: expected a folder you can write to, got '/proc/sys/x'"):
        check_output_dir("runs_dir", "/proc/sys/x")


def test_a_bad_runs_folder_stops_the_run_before_any_data_or_model(tmp_path, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("")

    def no_work(*args, **kwargs):
        raise AssertionError("did work before checking the folders")

    for options, name in [
        ({"runs_dir": a_file}, "runs_dir"),
        ({"runs_dir": tmp_path, "results": a_file}, "results"),
        ({"runs_dir": ""}, "runs_dir"),
    ]:
        with pytest.raises(ValueError, match=rf"^{name}: expected a folder"):
            common.train_and_test("copying", cp.settings("smoke"), 1, no_work, no_work, **options)
    monkeypatch.setenv("MINIRIMS_RUNS", str(a_file))
    with pytest.raises(ValueError, match=r"^MINIRIMS_RUNS: expected a folder, got .*, which is a file$"):
        common.train_and_test("copying", cp.settings("smoke"), 1, no_work, no_work)
    # --no-save never writes a record, so a bad results folder does not matter then
    monkeypatch.delenv("MINIRIMS_RUNS")
    with pytest.raises(AssertionError, match="did work"):
        common.train_and_test(
            "copying",
            cp.settings("smoke"),
            1,
            no_work,
            no_work,
            runs_dir=tmp_path,
            results=a_file,
            save=False,
        )


def test_a_record_that_cannot_be_written_after_the_run_is_kept_elsewhere(tmp_path, monkeypatch, one_thread):
    runs = tmp_path / "runs"
    real_save = common.save_record

    def read_only_runs(record, path=None):
        if Path(path).parent == runs:
            raise PermissionError(13, "Permission denied", str(path))
        return real_save(record, path)

    monkeypatch.setattr(common, "save_record", read_only_runs)
    s = cp.settings("smoke", models=["lstm-48"], epochs=1)
    with pytest.raises(ValueError) as err:
        cp.run(s, runs_dir=runs, progress=False)
    message = str(err.value)
    assert message.startswith(f"record: could not write {runs / 'copying_smoke.json'} (PermissionError: ")
    kept = Path(message.split("was saved to ")[1].removesuffix(" instead"))
    record = json.loads(kept.read_text())
    assert kept.name == "copying_smoke.json" and record["metrics"]["lstm-48"]["acc"]
    assert list(runs.glob("copying_smoke_*/lstm-48_seed0.pt"))  # and the trained model's checkpoint is there
