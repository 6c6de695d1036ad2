"""Shared pytest fixtures (keep this file small)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ``from helpers import ...`` works from every test folder (tests/core, tests/course, tests/experiments).
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder that holds pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private data cache: ``MINIRIMS_DATA`` points at a fresh temporary folder for one test."""
    path = tmp_path / "minirims-data"
    path.mkdir()
    monkeypatch.setenv("MINIRIMS_DATA", str(path))
    return path


@pytest.fixture
def smoke_profile(monkeypatch: pytest.MonkeyPatch) -> str:
    """Sets ``MINIRIMS_PROFILE=smoke`` for one test (whatever the caller's environment says)."""
    monkeypatch.setenv("MINIRIMS_PROFILE", "smoke")
    return "smoke"


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy 2-core machine a second OpenMP thread stalls every parallel op."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fit_configs(monkeypatch: pytest.MonkeyPatch):
    """Patch an experiment module's ``fit`` to record its TrainConfig, then stop the run ("stop here").

    Usage: ``seen = fit_configs(module)``; after ``module.run(...)`` raised, ``seen[0]`` is the first config.
    """

    def patch(module: object) -> list:
        seen: list = []

        def fake_fit(model, batches, loss_fn, evaluate, config, **kwargs):  # noqa: ANN001, ANN202
            seen.append(config)
            raise RuntimeError("stop here")

        monkeypatch.setattr(module, "fit", fake_fit)
        return seen

    return patch
