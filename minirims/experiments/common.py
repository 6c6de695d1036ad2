"""What every experiment shares: profiles, settings validation, provenance, result records.

Reference records live in the tracked ``results/`` folder and change only on purpose: a run writes its
record to the ignored ``runs/`` folder (env ``MINIRIMS_RUNS``, or the run's ``runs_dir``) unless it is given
an explicit ``results`` folder (``--results results/`` on the command line). Reading reference records
(:func:`load_reference_results`, :func:`record_path`) looks in :func:`results_dir`.

A *result record* is one JSON file per (experiment, profile) run, e.g. ``results/mnist_resolution_cpu.json``::

    {
      "experiment": "mnist_resolution", "profile": "cpu", "created": "2025-01-01T12:00:00+00:00",
      "settings": {...},            # every knob the run used (printed by the notebook as well)
      "seeds": [0, 1, 2],
      "provenance": {"git_commit": "...", "git_dirty": false, "device": "cpu", "device_name": "...",
                     "torch": "2.x", "python": "3.11.x", "platform": "...", "threads": 2},
      "wall_time": 812.3,           # seconds, whole run
      "parameters": {"rim-6-4": 123456, ...},
      "metrics": {...},             # experiment-specific summary (per model: mean/std/per-seed values)
      "curves": {...}               # per model, per seed: the per-epoch history of fit()
    }

API::

    PROFILES, resolve_profile(profile=None) -> str          # re-exported from minirims.experiments.train
    results_dir() -> Path                                    # env MINIRIMS_RESULTS or <repo>/results
    default_runs_dir() -> Path                               # env MINIRIMS_RUNS or <repo>/runs (ignored)
    record_path(experiment, profile, results=None) -> Path   # <results>/<experiment>_<profile>.json
    output_record_path(experiment, profile, results=None, runs_dir=None) -> Path   # where a run writes
    check_settings(settings, rules) -> None                  # one validation pass over a run's settings
    provenance(device=None) -> dict
    profile_with_overrides(profiles, profile, overrides) -> dict   # a profile's settings, overrides checked
    settings_key(settings) -> str                            # short hash: one checkpoint folder per settings
    traced_masks(model, tokens) -> (B, L, n) bool            # module activity of a model(tokens, trace=True)
    count_parameters(model) -> int
    mean_std(values) -> dict(mean, std, n, values)
    make_record(experiment, profile, settings, seeds, metrics, curves=None, parameters=None,
                wall_time=None, device=None, extra=None) -> dict
    save_record(record, path=None) -> Path                   # atomic JSON write
    load_record(path) -> dict
    load_reference_results(experiment, results=None) -> dict[profile, record]
    describe_record(record) -> str                           # "cpu profile, CPU (..), 1 seed, 812 s"
    format_settings(settings) -> str                         # aligned "key: value" lines
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from minirims.experiments.train import PROFILES, resolve_profile

__all__ = [
    "PROFILES",
    "add_run_arguments",
    "check_settings",
    "count_parameters",
    "default_runs_dir",
    "describe_record",
    "format_settings",
    "load_record",
    "load_reference_results",
    "make_record",
    "mean_std",
    "output_record_path",
    "profile_with_overrides",
    "provenance",
    "record_path",
    "resolve_profile",
    "results_dir",
    "save_record",
    "seed_list",
    "seeds_argument",
    "settings_key",
    "traced_masks",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    """Where result records live: env ``MINIRIMS_RESULTS`` if set, else ``<repo>/results``."""
    env = os.environ.get("MINIRIMS_RESULTS", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "results"


def default_runs_dir() -> Path:
    """Where runs write checkpoints and their records: env ``MINIRIMS_RUNS`` if set, else ``<repo>/runs``.

    ``runs/`` is git-ignored: a default run never touches the tracked reference records in ``results/``.
    """
    env = os.environ.get("MINIRIMS_RUNS", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "_-" for c in value):
        raise ValueError(f"{name}: expected a non-empty name of letters, digits, '_' or '-', got {value!r}")
    return value


def record_path(experiment: str, profile: str, results: str | os.PathLike[str] | None = None) -> Path:
    """The stable file name of a record: ``<results>/<experiment>_<profile>.json``."""
    _check_name("experiment", experiment)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    folder = Path(results) if results is not None else results_dir()
    return folder / f"{experiment}_{profile}.json"


def output_record_path(
    experiment: str,
    profile: str,
    results: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where a run writes its record: ``results`` when given (explicitly, e.g. ``results/``), else the runs
    folder (``runs_dir``, else :func:`default_runs_dir`). The tracked ``results/`` is never the default."""
    if results is not None:
        return record_path(experiment, profile, results)
    return record_path(experiment, profile, runs_dir if runs_dir is not None else default_runs_dir())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out


def provenance(device: str | torch.device | None = None) -> dict[str, Any]:
    """Where and with what a run was made: git commit (None if unavailable), device, versions, threads."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        name = platform.processor() or platform.machine() or "cpu"
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "device": dev.type,
        "device_name": name,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def _provenance_of_run(
    device: str | torch.device | None, started: Mapping[str, Any] | None
) -> dict[str, Any]:
    now = provenance(device)
    if started is None:
        return now
    out = dict(started)
    if (now["git_commit"], now["git_dirty"]) != (started.get("git_commit"), started.get("git_dirty")):
        out["git_commit_at_end"], out["git_dirty_at_end"] = now["git_commit"], now["git_dirty"]
    return out


def profile_with_overrides(
    profiles: Mapping[str, Mapping[str, Any]], profile: str | None, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The settings of ``profile`` (default: env MINIRIMS_PROFILE) from ``profiles``, with ``overrides``.

    Adds ``"profile"``; an override key the profile does not have raises ValueError.
    """
    name = resolve_profile(profile)
    settings = {**profiles[name], "profile": name}
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise ValueError(f"overrides: expected keys among {sorted(settings)}, got unknown {unknown}")
    settings.update(overrides)
    return settings


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short hash of ``settings``: checkpoints of runs with other settings live in other folders."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:10]


#: A settings rule: a kind name, or a tuple ``(kind, *arguments)``. Kinds:
#:
#: * ``"count"``: an int >= 1; ``"count0"``: an int >= 0; ``"seed"``: an int >= 0;
#:   ``("int", lo, hi)``: an int in [lo, hi] (``hi`` None: no upper bound; a bound may name another setting);
#: * ``"positive"``: a finite number > 0 (a rate, a scale); ``"positive|none"``: the same or None;
#:   ``"nonneg"``: a finite number >= 0 (a weight decay); ``"fraction"``: a number in (0, 1];
#:   ``"prob"``: a number in [0, 1) (a dropout rate);
#: * ``"bool"``: True or False; ``"text"``: a string; ``("one_of", choices)``: one of a tuple of values;
#: * ``("list", rule, distinct)``: a non-empty list or tuple whose items follow ``rule`` (distinct if asked);
#: * ``("names", allowed[, description])``: a non-empty list of distinct names, each in ``allowed`` (a tuple
#:   of names, or a regular expression the whole name must match, then best given with a description);
#: * ``("by_name", allowed, rule)``: a dict from names in ``allowed`` to values that follow ``rule``.
#:
#: Numbers never accept booleans (``lr=True`` is refused) and counts never accept floats (``epochs=1.7``).
Rule = str | tuple[Any, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(bound: Any, settings: Mapping[str, Any]) -> tuple[Any, str]:
    """A rule's bound: a number, or the name of another setting (shown as ``name = value``)."""
    if isinstance(bound, str):
        value = settings[bound]
        return value, f"{bound} = {value!r}"
    return bound, repr(bound)


def _rule_fails(rule: Rule, value: Any, settings: Mapping[str, Any]) -> str | None:
    """What ``value`` should have been under ``rule`` (the text after "expected"), or None when it is fine."""
    kind, *args = (rule,) if isinstance(rule, str) else rule
    if kind in ("count", "count0", "seed"):
        lo = 1 if kind == "count" else 0
        ok = _is_int(value) and value >= lo
        return None if ok else ("a positive int" if lo else "an int >= 0")
    if kind == "int":
        (lo, lo_text), (hi, hi_text) = _bound(args[0], settings), _bound(args[1], settings)
        ok = _is_int(value) and value >= lo and (hi is None or value <= hi)
        return None if ok else (f"an int >= {lo_text}" if hi is None else f"an int in [{lo_text}, {hi_text}]")
    if kind in ("positive", "positive|none"):
        if value is None and kind == "positive|none":
            return None
        ok = _is_real(value) and math.isfinite(value) and value > 0
        return None if ok else "a finite number > 0" + (" or None" if kind == "positive|none" else "")
    if kind == "nonneg":
        return None if _is_real(value) and math.isfinite(value) and value >= 0 else "a finite number >= 0"
    if kind == "fraction":
        return None if _is_real(value) and 0 < value <= 1 else "a number in (0, 1]"
    if kind == "prob":
        return None if _is_real(value) and 0 <= value < 1 else "a number in [0, 1)"
    if kind == "bool":
        return None if isinstance(value, bool) else "True or False"
    if kind == "text":
        return None if isinstance(value, str) else "a string"
    if kind == "one_of":
        return None if value in args[0] else f"one of {', '.join(map(str, args[0]))}"
    if kind == "list":
        inner, distinct = args
        if not isinstance(value, (list, tuple)) or not value:
            return "a non-empty list"
        for item in value:
            why = _rule_fails(inner, item, settings)
            if why is not None:
                return f"a non-empty list whose items are each {why}"
        if distinct and len(set(value)) != len(value):
            return "a list of distinct values"
        return None
    if kind == "names":
        allowed, *described = args
        if described:
            want = described[0]
        elif isinstance(allowed, tuple):
            want = f"names from {', '.join(allowed)}"
        else:
            want = f"names like {allowed!r}"
        if not isinstance(value, (list, tuple)) or not value:
            return f"a non-empty list of {want}"
        for item in value:
            if not isinstance(item, str) or not (
                item in allowed if isinstance(allowed, tuple) else re.fullmatch(allowed, item)
            ):
                return f"a non-empty list of {want}"
        return None if len(set(value)) == len(value) else f"a list of distinct {want}"
    if kind == "by_name":
        allowed, inner = args
        want = f"a dict from names in {', '.join(allowed)} to {_rule_fails(inner, object(), settings)}"
        if not isinstance(value, Mapping):
            return want
        ok = all(name in allowed and _rule_fails(inner, v, settings) is None for name, v in value.items())
        return None if ok else want
    raise ValueError(f"rule: expected a known kind of settings rule, got {rule!r}")


def check_settings(settings: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """One validation pass over a run's settings, before any work (data, simulation, training).

    Every key of ``settings`` must have a rule in ``rules`` (see :data:`Rule`); a key without one is a bug
    in the experiment, not a user error, and raises too. The first bad value raises a ValueError that names
    the key, what was expected and what was given, e.g. ``"epochs: expected a positive int, got 1.7"``.
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings: expected a mapping of setting -> value, got {type(settings).__name__}")
    unruled = sorted(set(settings) - set(rules))
    if unruled:
        raise ValueError(f"settings: expected a validation rule for every setting, got none for {unruled}")
    for key, rule in rules.items():
        if key not in settings:
            continue
        value = settings[key]
        why = _rule_fails(rule, value, settings)
        if why is not None:
            raise ValueError(f"{key}: expected {why}, got {value!r}")


@torch.no_grad()
def traced_masks(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Run ``model(tokens, trace=True)`` in eval mode (restored after); the trace's masks, on the CPU.

    ``tokens`` (L,) or (B, L); returns (B, L, n) bool. Each experiment's ``activity_masks`` checks the model.
    """
    x = tokens[None] if tokens.dim() == 1 else tokens
    was_training = model.training
    model.eval()
    try:
        _, tr = model(x.to(next(model.parameters()).device), trace=True)
    finally:
        model.train(was_training)
    return tr.masks.cpu()


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count n >= 1 gives 0..n-1; a non-empty list of distinct ints >= 0 is kept as is.

    A repeated seed would count one run twice in a mean over seeds, so it is refused.
    """
    if isinstance(seeds, bool):
        raise ValueError(f"seeds: expected a count >= 1 or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds: expected a count >= 1 or a list of seeds, got {seeds!r}")
        return list(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds: expected a count >= 1 or a list of non-negative ints, got {seeds!r}")
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"seeds: expected a count >= 1 or a list of non-negative ints, got {seeds!r}")
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise ValueError(
            f"seeds: expected distinct seeds, got {out!r} ({', '.join(map(str, twice))} repeated)"
        )
    return out


def seeds_argument(text: str) -> int | list[int]:
    """``--seeds`` on the command line: a count ``N`` (seeds 0..N-1) or a comma-separated list (``0,3``).

    Raises ``argparse.ArgumentTypeError`` (argparse turns it into a one-line usage error, status 2).
    """
    import argparse

    try:
        value: int | list[int] = [int(p) for p in text.split(",")] if "," in text else int(text)
        seed_list(value)
    except ValueError as err:
        why = str(err).removeprefix("seeds: ") if str(err).startswith("seeds: ") else None
        raise argparse.ArgumentTypeError(
            why or f"expected a count N or a comma-separated list of seeds, got {text!r}"
        ) from None
    return value


def add_run_arguments(parser: Any, epochs_help: str = "override the profile's epochs") -> None:
    """The options every experiment command shares, with one name each: ``--seeds``, ``--epochs``,
    ``--results``, ``--runs-dir``, ``--device``, ``--fresh``, ``--no-progress``."""
    parser.add_argument(
        "--seeds", type=seeds_argument, default=1, help="a count N (seeds 0..N-1) or a list such as 0,3"
    )
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument(
        "--results",
        default=None,
        help="write the record into this folder; --results results/ updates the tracked reference records "
        "(default: the runs folder, never results/)",
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="checkpoints, and the record unless --results is given (default: $MINIRIMS_RUNS or runs/)",
    )
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument(
        "--fresh", action="store_true", help="start over: ignore and replace existing checkpoints"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mean_std(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` of a list of numbers (std over seeds, ddof=0; 0 for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: expected at least one number, got none")
    arr = np.asarray(vals, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(vals), "values": vals}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, float) and math.isnan(obj):  # NaN -> null (strict JSON)
        return None
    return obj


def make_record(
    experiment: str,
    profile: str,
    settings: Mapping[str, Any],
    seeds: Iterable[int],
    metrics: Mapping[str, Any],
    curves: Mapping[str, Any] | None = None,
    parameters: Mapping[str, int] | None = None,
    wall_time: float | None = None,
    device: str | torch.device | None = None,
    extra: Mapping[str, Any] | None = None,
    started: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a JSON-ready result record (see the module docstring for the layout).

    ``started`` is :func:`provenance` taken when the run began: the commit the code was loaded from. The
    record keeps it, and adds ``git_commit_at_end`` / ``git_dirty_at_end`` when the checkout changed during
    the run (a commit made while a long run trained does not change the code the run had loaded).
    """
    _check_name("experiment", experiment)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    record = {
        "experiment": experiment,
        "profile": profile,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        "settings": dict(settings),
        "seeds": [int(s) for s in seeds],
        "provenance": _provenance_of_run(device, started),
        "wall_time": wall_time,
        "parameters": dict(parameters or {}),
        "metrics": dict(metrics),
        "curves": dict(curves or {}),
    }
    if extra:
        record.update(dict(extra))
    return _jsonable(record)


def save_record(record: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``record`` as indented JSON, atomically (default path: :func:`record_path`)."""
    if not isinstance(record, Mapping) or "experiment" not in record or "profile" not in record:
        raise ValueError("record: expected a mapping with 'experiment' and 'profile' keys (see make_record)")
    target = Path(path) if path is not None else record_path(record["experiment"], record["profile"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_jsonable(record), indent=2) + "\n")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one record; ValueError if it is not a record."""
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"path: expected a readable JSON result record, got {p} ({err})") from None
    if not isinstance(record, dict) or "experiment" not in record or "metrics" not in record:
        raise ValueError(f"path: expected a result record with 'experiment' and 'metrics', got {p}")
    return record


def load_reference_results(
    experiment: str, results: str | os.PathLike[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every saved record of ``experiment`` in ``results`` (default :func:`results_dir`), keyed by profile.

    Missing records are simply absent (an empty dict when there are none), so a notebook can show whatever
    reference runs exist -- e.g. a ``cpu`` record but no ``full`` GPU record yet.
    """
    _check_name("experiment", experiment)
    folder = Path(results) if results is not None else results_dir()
    found: dict[str, dict[str, Any]] = {}
    for profile in PROFILES:
        p = folder / f"{experiment}_{profile}.json"
        if p.exists():
            found[profile] = load_record(p)
    return found


def describe_record(record: Mapping[str, Any]) -> str:
    """A one-line label, e.g. ``"cpu profile, CPU (2 threads), 1 seed, 13.5 min"``.

    A record whose models trained in earlier runs (resumed from checkpoints, so ``wall_time`` is only the
    run that tested them) is labelled with both: ``"..., 3 seeds, 136.7 min of training, this run 97 s"``,
    the training time summed over models and seeds from ``metrics[name]["train_seconds"]``.
    """
    prov = record.get("provenance", {})
    dev = prov.get("device", "?")
    threads = prov.get("threads", "?")
    where = (
        f"GPU ({prov.get('device_name')})"
        if dev == "cuda"
        else f"CPU ({threads} thread{'' if threads == 1 else 's'})"
    )
    seeds = record.get("seeds", [])
    wall = record.get("wall_time")
    trained = sum(
        float(m["train_seconds"])
        for m in record.get("metrics", {}).values()
        if isinstance(m, Mapping) and isinstance(m.get("train_seconds"), (int, float))
    )
    parts = [
        f"{record.get('profile', '?')} profile",
        where,
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
    ]

    def minutes(seconds: float) -> str:
        return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"

    if wall is not None and trained > 1.05 * wall:
        parts.append(f"{minutes(trained)} of training, this run {minutes(wall)}")
    elif wall is not None:
        parts.append(minutes(wall))
    return ", ".join(parts)


def format_settings(settings: Mapping[str, Any], indent: str = "  ") -> str:
    """Aligned ``key: value`` lines (nested mappings indented), for printing a profile's settings."""
    lines: list[str] = []
    width = max((len(str(k)) for k in settings), default=0)
    for key, val in settings.items():
        if isinstance(val, Mapping):
            lines.append(f"{indent}{key}:")
            lines.append(format_settings(val, indent + "  "))
        else:
            lines.append(f"{indent}{str(key).ljust(width)} : {val}")
    return "\n".join(lines)
