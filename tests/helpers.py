"""Helpers shared by test modules (plain functions, imported as ``from helpers import ...``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> ModuleType:
    """Import ``tests/fixtures/<name>.py`` as a fresh module (the fixtures are not a package)."""
    path = FIXTURES / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"name: expected a file tests/fixtures/{name}.py, got none at {path}")
    spec = importlib.util.spec_from_file_location(f"minirims_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
