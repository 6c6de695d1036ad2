"""Why RIMs work: measurements on trained models (notebook 09). Nothing is trained here.

    mnist_robustness(models, images, labels, sizes, rates, seed) -> {name: {size: {rate: accuracy}}}
    mnist_foreground(model, images, sizes) -> {size: (n, 2)}   # active share on stroke / background pixels
    mnist_null_attention(model, images, size, rate) -> {kind: (n,)}  # real strokes vs flipped pixels
    copying_null_attention(model, delay, n) -> {token kind: (n,)}  # mean null attention per module
    run(profile, n_test, results) -> Record                     # python -m minirims mechanisms ...

The record (``results/mechanisms/mechanisms_<profile>.json``) holds, for the reference models of a profile
(:mod:`minirims.experiments.references`): MNIST test accuracy with background pixels flipped at rates no model
saw in training, at every test size, beside the uniform guess; each RIM module's activity on stroke and on
background pixels at every size, and its null attention on real strokes, flipped pixels and background;
and for the copying RIM, the knock-out table (:func:`~minirims.experiments.copying.knockout_accuracy`) and
the null attention of each module on digits, blanks and the marker.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from minirims.experiments import common
from minirims.experiments import copying as cp
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.data.mnist import load_mnist, pixel_sequences
from minirims.model import RIM

__all__ = [
    "EXPERIMENT",
    "FLIP_RATES",
    "add_arguments",
    "copying_null_attention",
    "main",
    "mnist_foreground",
    "mnist_null_attention",
    "mnist_robustness",
    "run",
    "save_figures",
]

EXPERIMENT = "mechanisms"
#: shares of background pixels flipped to stroke at test (none in training)
FLIP_RATES = (0.0, 0.005, 0.01, 0.02, 0.05)
#: the copying RIM's null attention per kind of input token (defined beside the task)
copying_null_attention = cp.null_attention_by_token


def _check_images(images: object) -> Tensor:
    if not isinstance(images, (Tensor, np.ndarray)) or tuple(images.shape[1:]) != (28, 28) or len(images) < 1:
        got = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"images: expected MNIST digits of shape (N, 28, 28) with N >= 1, got {got}")
    return torch.as_tensor(images)


def _check_sizes(name: str, values: object) -> tuple[int, ...]:
    return common.check_distinct(name, values, common.check_int)


@torch.no_grad()
def mnist_robustness(
    models: Mapping[str, nn.Module],
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    sizes: Sequence[int] = (14, 16, 19, 24),
    rates: Sequence[float] = FLIP_RATES,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict[int, dict[float, float]]]:
    """Test accuracy of each model with background pixels flipped (:func:`mr.flip_background`).

    Every model sees the same noisy digits (the flips come from ``seed`` and the size, and a higher rate
    keeps the flips of a lower one).

    Args:
        models: name -> an :class:`~minirims.experiments.mnist_resolution.MNISTClassifier`.
        images: (N, 28, 28) uint8 digits; labels: (N,) ints.
        sizes: test resolutions; rates: flip rates in [0, 1]; progress: a progress bar over the sizes.

    Returns:
        ``{name: {size: {rate: accuracy}}}``.
    """
    images = _check_images(images)
    labels = torch.as_tensor(labels).long()
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels: expected shape ({images.shape[0]},) like images, got {tuple(labels.shape)}"
        )
    sizes = _check_sizes("sizes", sizes)
    rates = common.check_distinct("rates", rates, _check_rate)
    out: dict[str, dict[int, dict[float, float]]] = {name: {} for name in models}
    for size in tqdm(sizes, desc="sizes", leave=False, disable=not progress):
        tokens = pixel_sequences(images, size)
        for rate in rates:
            noisy = mr.flip_background(tokens, rate, _flip_generator(seed, size))
            for name, model in models.items():
                out[name].setdefault(size, {})[rate] = mr.evaluate_accuracy(model, noisy, labels)
    return out


def _flip_generator(seed: int, size: int) -> torch.Generator:
    """The generator of the background flips at ``size``: the same flips for every measurement of a seed."""
    return torch.Generator().manual_seed(seed * 1000 + size)


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def mnist_foreground(
    model: nn.Module, images: Tensor | np.ndarray, sizes: Sequence[int] = (14, 16, 19, 24)
) -> dict[int, Tensor]:
    """:func:`mr.foreground_activity` of a RIM classifier at every size: ``{size: (n, 2)}``, columns the
    share of stroke and of background pixels at which each module is active."""
    images = _check_images(images)
    return {
        size: mr.foreground_activity(model, pixel_sequences(images, size))
        for size in _check_sizes("sizes", sizes)
    }


@torch.no_grad()
def mnist_null_attention(
    model: nn.Module, images: Tensor | np.ndarray, size: int, rate: float = 0.02, seed: int = 0
) -> dict[str, Tensor]:
    """Does a module's attention tell a flipped background pixel from a real stroke? The mean null attention
    of each RIM module on real stroke pixels, on flipped background pixels (the same token, 1) and on the
    background left as it is, with ``rate`` of the background flipped (:func:`mr.flip_background`, the
    flips of :func:`mnist_robustness` for the same ``seed`` and size).

    Returns:
        ``{"stroke" | "flipped" | "background": (n_modules,) float64}`` (NaN for a kind without pixels, e.g.
        "flipped" at rate 0).
    """
    mr.check_rim_classifier(model)
    images = _check_images(images)
    tokens = pixel_sequences(images, common.check_int("size", size))
    noisy = mr.flip_background(tokens, _check_rate("rate", rate), _flip_generator(seed, size))
    null = common.traced(model, noisy).input_attn[..., 0].double().cpu()  # (B, T, n)
    kinds = {"stroke": tokens == 1, "flipped": (noisy == 1) & (tokens == 0), "background": noisy == 0}
    return {kind: null[where].mean(0) for kind, where in kinds.items()}


def run(
    profile: str = "cpu",
    n_test: int = 1000,
    results: str | Path | None = None,
    save: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure the reference models of ``profile`` (see the module docstring); write the record. The
    copying measurements are left out for a profile the copying task does not have (``long``)."""
    from minirims.experiments.references import load_reference_model

    common.check_choice("profile", profile, common.PROFILES)
    common.check_int("n_test", n_test, hi=10_000)
    started, t0 = common.provenance(), time.perf_counter()
    torch.manual_seed(0)
    mnist = {name: load_reference_model(mr, name, profile)[0] for name in mr.settings(profile).models}
    copy_models = {  # the copying task has no ``long`` profile: its ``cpu`` RIM already copies at T = 400
        name: load_reference_model(cp, name, profile)[0]
        for name in (cp.settings(profile).models if profile in cp.PROFILES else ())
    }
    images, labels = load_mnist("test")
    images, labels = images[:n_test], labels[:n_test]
    sizes = mr.settings(profile).test_sizes
    metrics: dict[str, Any] = {"chance": mr.CHANCE_ACC}
    with tqdm(total=3, desc="mechanisms", disable=not progress) as bar:
        metrics["acc_flipped"] = mnist_robustness(mnist, images, labels, sizes, progress=progress)
        bar.update()
        metrics["foreground"] = {
            name: {size: act.tolist() for size, act in mnist_foreground(model, images[:200], sizes).items()}
            for name, model in mnist.items()
            if isinstance(model.core, RIM)
        }
        metrics["null_attention_flipped"] = {  # 2% of the background flipped, 200 digits, each size
            name: {
                size: {
                    k: v.tolist() for k, v in mnist_null_attention(model, images[:200], size, 0.02).items()
                }
                for size in sizes
            }
            for name, model in mnist.items()
            if isinstance(model.core, RIM)
        }
        bar.update()
        for name, model in copy_models.items():
            if isinstance(model.core, RIM):
                metrics.setdefault("knockout", {})[name] = cp.knockout_accuracy(model, 200).tolist()
                null = copying_null_attention(model)
                metrics.setdefault("null_attention", {})[name] = {k: v.tolist() for k, v in null.items()}
        bar.update()
    record = common.make_record(
        EXPERIMENT,
        profile,
        {"n_test": n_test, "sizes": list(sizes), "flip_rates": list(FLIP_RATES), "knockout_delay": 200},
        [0],
        metrics,
        wall_time=time.perf_counter() - t0,
        extra={"models": {"mnist_resolution": list(mnist), "copying": list(copy_models)}},
        started=started,
    )
    if save:
        common.save_record(record, common.output_record_path(EXPERIMENT, profile, results))
    return record


def save_figures(record: Mapping[str, Any], path: str | Path) -> list[Path]:
    """The record's figures beside it: ``<name>_flip.png`` (noise) and ``<name>_foreground.png``."""
    import matplotlib.pyplot as plt

    from minirims.experiments import figures

    stem = Path(path).with_suffix("")
    out = []
    for suffix, draw in (("flip", figures.plot_flip_robustness), ("foreground", figures.plot_foreground)):
        fig = draw(record)
        out.append(stem.with_name(f"{stem.name}_{suffix}.png"))
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims mechanisms``."""
    parser.add_argument("--profile", default="cpu", help="whose reference models to measure (default: cpu)")
    parser.add_argument("--n-test", type=int, default=1000, help="MNIST test digits per size (default: 1000)")
    parser.add_argument("--results", default=None, help="write the record into this folder (default: runs/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """``python -m minirims mechanisms``: measure, print a summary, write the record and its figures."""
    import matplotlib

    matplotlib.use("Agg")
    record = run(args.profile, args.n_test, args.results, progress=not args.no_progress)
    path = common.output_record_path(EXPERIMENT, args.profile, args.results)
    for figure in save_figures(record, path):
        print(f"figure: {figure}")
    print(f"record: {path}")
    m = record["metrics"]
    for name, by_size in m["acc_flipped"].items():
        cells = "  ".join(
            f"{size}: " + "/".join(f"{100 * a:.0f}" for a in by_rate.values())
            for size, by_rate in by_size.items()
        )
        print(f"{name:<14} accuracy % at flip rates {list(FLIP_RATES)}  {cells}")
    for name, by_size in m["foreground"].items():
        for size, act in by_size.items():
            print(
                f"{name} {size}x{size} active on stroke/background: "
                + " ".join(f"{s:.2f}/{b:.2f}" for s, b in act)
            )
    return 0
