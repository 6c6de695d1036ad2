"""The MNIST folder that travels to a GPU machine, which cannot download: ``make gpu-data``.

Copies the smallest verified source of MNIST from this machine's data folder (``MINIRIMS_DATA``, default
``~/.cache/minirims``) into ``--out`` (default ``.gpu/data``, ignored by git, so the device tool carries the
file when its ``carry`` names it, see ``benchmarks/README.md``)::

    python -m benchmarks.gpu_data --out .gpu/data

- ``mnist.pkl.gz`` (17 MB), checked against its known SHA-256: there, the first read builds and verifies
  the cache from it in seconds, offline (see :mod:`minirims.experiments.data.mnist`);
- else, the verified cache itself (``mnist.npz`` + ``mnist.json``, 55 MB).

A cache left in ``--out`` beside a copied ``mnist.pkl.gz`` is removed (the pickle rebuilds it, and the
working tree carried to the device must stay under 64 MiB). The folder's size is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from minirims.experiments.data.mnist import (
    CACHE_NAME,
    MARKER_NAME,
    MNIST_PICKLE_SHA256,
    data_dir,
    fetch_mnist,
)

__all__ = ["PICKLE_NAME", "prepare", "main"]

PICKLE_NAME = "mnist.pkl.gz"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(out: Path, source: Path | None = None) -> list[Path]:
    """Copy MNIST's smallest verified source from ``source`` (default the data folder) into ``out``.

    Returns the files now in ``out`` that a GPU run reads. Raises ValueError when ``source`` holds neither
    a verified ``mnist.pkl.gz`` nor a verified cache (``make data`` fetches it first).
    """
    source = data_dir() if source is None else Path(source)
    out = Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"out: expected a folder other than the data folder itself, got {out}")
    pickle = source / PICKLE_NAME
    if pickle.is_file():
        if _sha256(pickle) != MNIST_PICKLE_SHA256:
            raise ValueError(f"{pickle}: not the known MNIST pickle (SHA-256 differs); run `make data` again")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pickle, out / PICKLE_NAME)
        for stale in (CACHE_NAME, MARKER_NAME):  # rebuilt from the pickle there; it would double the size
            (out / stale).unlink(missing_ok=True)
        return [out / PICKLE_NAME]
    try:
        cache = fetch_mnist(source, download=False)  # verifies the cache (or builds it from local files)
    except ValueError as err:
        raise ValueError(
            f"{source}: no verified MNIST to copy ({err}); run `make data` (or python -m minirims data fetch)"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in (CACHE_NAME, MARKER_NAME):
        shutil.copyfile(cache.parent / name, out / name)
        copied.append(out / name)
    return copied


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu/data"), help="folder to fill (.gpu/data)")
    parser.add_argument("--source", type=Path, default=None, help="MNIST folder (default MINIRIMS_DATA)")
    args = parser.parse_args(argv)
    try:
        files = prepare(args.out, args.source)
    except ValueError as err:
        parser.exit(2, f"gpu_data: {err}\n")
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"{args.out}: {', '.join(p.name for p in files)} ({total / 2**20:.1f} MiB in the folder)")
    names = ", ".join(repr(str(p)) for p in files)
    print(f"carry to the GPU machine (device tool: carry=[{names}]) and pass --data {args.out}")
    return files


if __name__ == "__main__":
    main()
