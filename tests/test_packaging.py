"""Packaging and commands: the two install routes agree, CI runs what the README says, the CLI answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
# conda-forge name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}


def normalize(requirement: str) -> str:
    """Package name of a requirement, normalized: lower case, -_. as '-', conda names as on PyPI."""
    name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PYPI.get(name, name)


def pyproject() -> dict:
    if tomllib is None:
        pytest.skip("reading pyproject.toml on Python 3.10 needs tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def conda_environment() -> tuple[list[str], list[str]]:
    """(conda packages, pip entries) of environment.yml; a small reader for this file's simple layout."""
    conda, pip = [], []
    section, in_pip = None, False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            section, in_pip = line.split(":", 1)[0].strip(), False
            continue
        if section != "dependencies":
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if not item.startswith("- "):
            raise AssertionError(f"environment.yml: unexpected line under dependencies: {raw!r}")
        item = item[2:].strip()
        if item == "pip:":
            in_pip, pip_indent = True, indent
            continue
        if in_pip and indent > pip_indent:
            pip.append(item)
        else:
            in_pip = False
            conda.append(item)
    return conda, pip


def readme_quick_start_commands() -> list[str]:
    """The commands of the first code block under the README's "Quick start" heading (comments removed)."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md: no '## Quick start' section"
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), re.S)
    assert block, "README.md: no code block in Quick start"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [c for c in commands if c]


def test_pyproject_and_environment_yml_list_the_same_packages():
    meta = pyproject()["project"]
    pip_names = {normalize(r) for r in meta["dependencies"]}
    for extra in meta.get("optional-dependencies", {}).values():
        pip_names |= {normalize(r) for r in extra}
    conda, pip = conda_environment()
    conda_names = {normalize(r) for r in conda} - {"python", "pip"}
    conda_names |= {normalize(r) for r in pip if not r.startswith("-")}
    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}"
    )
    assert "-e ." in pip, "environment.yml: the pip section must install the package itself with '-e .'"
    assert any(re.fullmatch(r"python=3\.1[0-9]", c) for c in conda), "environment.yml: pin python=3.1x"


def test_pyproject_metadata():
    meta = pyproject()
    project = meta["project"]
    assert project["name"] == "minirims"
    assert project["requires-python"] == ">=3.10"
    assert any(normalize(r) == "torch" and ">=2.1" in r for r in project["dependencies"])
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["minirims*"]
    import minirims

    assert minirims.__version__ == project["version"]


@pytest.mark.parametrize(
    ("requirement", "name"),
    [("torch>=2.1", "torch"), ("pytorch", "torch"), ("PyTest_XDist", "pytest-xdist"), ("numpy [x]", "numpy")],
)
def test_normalize(requirement, name):
    assert normalize(requirement) == name


def test_readme_quick_start_is_make_lab_and_make_test():
    assert readme_quick_start_commands() == ["make lab", "make test"]


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_quick_start_commands()[1]
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n") or script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    lines = [line.strip() for line in script.splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    commands = [c for c in commands if c != "set -euo pipefail" and not c.startswith("cd ")]
    assert commands == [test_command], f".ci/run runs {commands}, README says {test_command!r}"


def test_makefile_targets_and_safe_torch_pin():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*):(?!=)", text, re.M))
    assert {"lab", "test", "reproduce", "lint", "format", "exercises", "data", "bench", "clean"} <= targets
    # CI must get the CPU wheel on disk, never a multi-GB CUDA build: torch is pinned exactly by default.
    assert re.search(r"^TORCH_SPEC \?= torch==\d+\.\d+\.\d+$", text, re.M)
    assert "--nbval-lax" in text and "MINIRIMS_PROFILE=smoke" in text


def test_gitignore_keeps_results_and_course():
    patterns = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    for kept in ("results", "notebooks", "solutions"):
        assert not any(p.strip("/").startswith(kept) for p in patterns), f".gitignore must not ignore {kept}/"
    assert ".venv/" in patterns


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "minirims", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_help_lists_every_command():
    from minirims.__main__ import COMMANDS

    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in ("data", "mnist-resolution", "bouncing-balls", "grade"):
        assert name in COMMANDS
        assert name in result.stdout


def test_cli_version():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"minirims {pyproject()['project']['version']}"


def test_cli_command_that_cannot_be_imported_fails_clearly(monkeypatch, capsys):
    from minirims import __main__ as cli

    monkeypatch.setitem(cli.COMMANDS, "data", ("minirims._no_such_module", "help"))
    assert "data" in _help_text(cli, capsys)  # still listed
    assert cli.main(["data", "fetch"]) == 1
    err = capsys.readouterr().err
    assert "cannot import minirims._no_such_module" in err and "ModuleNotFoundError" in err


def test_cli_passes_arguments_and_returns_the_exit_status(monkeypatch):
    import argparse
    import types

    from minirims import __main__ as cli

    seen = {}
    module = types.ModuleType("minirims._fake_command")
    module.add_arguments = lambda p: p.add_argument("--seeds", type=int, default=1)

    def main(args: argparse.Namespace) -> int:
        seen["seeds"] = args.seeds
        return 3

    module.main = main
    monkeypatch.setitem(sys.modules, "minirims._fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("minirims._fake_command", "a fake command"))
    assert cli.main(["fake", "--seeds", "5"]) == 3
    assert seen == {"seeds": 5}


def _help_text(cli, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------------ layout

CORE_MODULES = {
    "__init__",
    "__main__",
    "_validate",
    "attention",
    "group",
    "competition",
    "communication",
    "cell",
    "model",
    "naive",
    "fast",
}


def _imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement in ``path`` (absolute names; relative ones resolved)."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def test_the_package_folder_holds_only_the_core():
    top = {p.stem for p in (ROOT / "minirims").glob("*.py")}
    assert top <= CORE_MODULES, f"not core modules in minirims/: {sorted(top - CORE_MODULES)}"
    assert {"attention", "group", "competition", "communication", "cell", "model", "naive"} <= top
    assert (ROOT / "minirims" / "course" / "__init__.py").is_file()
    assert (ROOT / "minirims" / "experiments" / "__init__.py").is_file()


def test_core_imports_neither_course_nor_experiments():
    for path in sorted((ROOT / "minirims").glob("*.py")):
        if path.stem == "__main__":  # the CLI names command modules as strings, imported lazily
            continue
        bad = {
            name
            for name in _imported_modules(path)
            if name.startswith(("minirims.course", "minirims.experiments"))
        }
        assert not bad, (
            f"{path.name} (core) imports {sorted(bad)}: course/experiments use the core, not the reverse"
        )


def test_experiments_do_not_import_the_course():
    """The course may use the experiments (checks of the experiment notebooks); never the reverse."""
    for path in sorted((ROOT / "minirims" / "experiments").rglob("*.py")):
        bad = {name for name in _imported_modules(path) if name.startswith("minirims.course")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_core_modules_open_with_the_notebook_that_builds_them():
    import ast

    notebooks = {
        "attention": "01",
        "group": "02",
        "competition": "03",
        "communication": "04",
        "cell": "05",
        "model": "05",
        "naive": "05",
        "fast": "05",
    }
    for module, number in notebooks.items():
        doc = ast.get_docstring(ast.parse((ROOT / "minirims" / f"{module}.py").read_text())) or ""
        assert doc.startswith(f"Notebook {number}"), (
            f"minirims/{module}.py: docstring opens 'Notebook {number}'"
        )


def _make(*args: str) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    command = ["make", "-s", "--no-print-directory", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_make_lab_opens_a_working_copy_that_is_never_overwritten(tmp_path):
    work = tmp_path / "work"
    assert _make("work-copy", f"WORK={work}").returncode == 0
    course = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in work.glob("*.ipynb")) == course
    mine = work / course[0]
    mine.write_text("my answers")
    assert _make("work-copy", f"WORK={work}").returncode == 0
    assert mine.read_text() == "my answers"  # a second launch keeps the learner's work
    assert _make("refresh", f"NB={mine.stem}", f"WORK={work}").returncode == 0
    assert (work / f"{mine.name}.bak").read_text() == "my answers"
    assert mine.read_bytes() == (ROOT / "notebooks" / mine.name).read_bytes()
    for bad in ([], ["NB=no_such_notebook"]):
        assert _make("refresh", *bad, f"WORK={work}").returncode == 2
    assert "work/" in (ROOT / ".gitignore").read_text().split()


def test_lab_options_keep_allow_root(tmp_path):
    import os

    dry = _make("-n", "lab", "LAB_ARGS=--port=9999", f"WORK={tmp_path}", "VENV=/nonexistent/venv").stdout
    line = next(x for x in dry.splitlines() if "jupyter lab" in x)
    assert "--port=9999" in line and line.rstrip().endswith(f"{tmp_path}/")
    assert ("--allow-root" in line) == (os.geteuid() == 0)
