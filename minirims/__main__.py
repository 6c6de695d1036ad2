"""Command line: ``python -m minirims <command> [options]``.

Each command lives in its own module, listed in :data:`COMMANDS`. Such a module exposes

- ``add_arguments(parser: argparse.ArgumentParser) -> None``: declares the command's options;
- ``main(args: argparse.Namespace) -> int``: runs the command and returns its exit status.

User errors end in one line on stderr, ``python -m minirims <command>: error: <message>``, and exit status 2.
Options are checked by argparse (its errors are that one line too, without the usage text: ``--help`` shows
it); every ``ValueError`` a command raises (the project's validation errors: settings, seeds, devices,
output and data folders, checkpoints, a diverged training, MNIST that cannot be had) is reported the same
way, without a traceback. Any other exception is a bug and keeps its traceback.

Only the module of the command being run is imported (so ``--help`` is quick and does not import torch).
``python -m minirims --help`` lists every command even when one of them cannot be imported; running that
command reports the import error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "minirims.experiments.data.cli",
        "fetch or check the datasets (MNIST; bouncing balls are simulated)",
    ),
    "copying": (
        "minirims.experiments.copying",
        "the copying task: remember 10 digits over T blanks; train T=50, test T=200",
    ),
    "mnist-resolution": (
        "minirims.experiments.mnist_resolution",
        "train RIMs and an LSTM on 14x14 sequential MNIST, test on 16x16, 19x19, 24x24",
    ),
    "bouncing-balls": (
        "minirims.experiments.bouncing_balls",
        "bouncing balls: next-frame prediction, rollouts, out-of-distribution sets",
    ),
    "mechanisms": (
        "minirims.experiments.mechanisms",
        "why RIMs work: noise, foreground and knock-out measurements of the reference models",
    ),
    "rl-probe": (
        "minirims.experiments.rl",
        "reinforcement learning: PPO with a RIM core against an LSTM core (MinAtar; the cue task on smoke)",
    ),
    "grade": (
        "minirims.course.grade",
        "grade a learner's notebook, or a folder of submissions (a table per learner and exercise)",
    ),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minirims")
    except PackageNotFoundError:  # run from a source tree that is not installed
        try:
            import minirims

            return str(getattr(minirims, "__version__", "unknown"))
        except Exception:
            return "unknown"


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (``<prog>: error: <message>``) and status 2;
    ``commands`` holds the sub-parser of each command (so an unknown option is reported by its command)."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (--help lists the options)\n")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first argument that names a command (top-level options take no values, so this is unambiguous)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(
    argv: Sequence[str] = (),
) -> tuple[argparse.ArgumentParser, dict[str, ModuleType | BaseException]]:
    """The top-level parser, one sub-parser per command in :data:`COMMANDS`.

    Returns the parser and, for the command named in ``argv`` (if any), its imported module or the exception
    raised while importing it.
    """
    parser = _Parser(
        prog="python -m minirims",
        description="minirims: Recurrent Independent Mechanisms from scratch (course, experiments, grading).",
    )
    parser.add_argument("--version", action="version", version=f"minirims {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    parser.commands = {}
    chosen = _chosen_command(argv)
    loaded: dict[str, ModuleType | BaseException] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        parser.commands[name] = p
        if name == chosen:
            try:
                module = importlib.import_module(module_name)
            except Exception as err:  # reported when the command runs, not here
                loaded[name] = err
                p.epilog = f"not available: cannot import {module_name} ({type(err).__name__}: {err})"
            else:
                loaded[name] = module
                if hasattr(module, "add_arguments"):
                    module.add_arguments(p)
                    continue
        # Unloaded (or unloadable) command: accept anything, so the import error is what the user sees.
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser, loaded


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, loaded = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's parser: "python -m minirims <command>: error: ..."
        where = parser.commands.get(getattr(args, "command", None) or "", parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    module_name = COMMANDS[args.command][0]
    module = loaded.get(args.command)
    if isinstance(module, BaseException) or module is None:
        why = f"{type(module).__name__}: {module}" if module is not None else "not imported"
        print(f"python -m minirims {args.command}: cannot import {module_name} ({why})", file=sys.stderr)
        return 1
    run = getattr(module, "main", None)
    if run is None:
        print(f"python -m minirims {args.command}: {module_name} has no main(args) function", file=sys.stderr)
        return 1
    try:
        status = run(args)
    except ValueError as err:  # a user error (settings, seeds, device, data, checkpoints): one line, status 2
        print(f"python -m minirims {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return int(status or 0)


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a multi-line message is joined with ' / ')."""
    return " / ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
