"""Sequential MNIST by resolution: train on 14x14, test on 16x16, 19x19, 24x24 (RIM paper, Table 1).

Each digit is resized (nearest neighbour) and binarized, then read pixel by pixel in row order: 196 steps
at 14x14, 576 at 24x24. A model that has learned *what* a stroke looks like, rather than *when* it arrives,
should still recognise the longer sequences. The experiment has the shape of every experiment
(:mod:`minirims.experiments.common`)::

    Settings, PROFILES, settings(profile=None, **overrides) -> Settings
    make_model(name, settings) -> MNISTClassifier      # tokens (B, T) int -> logits (B, 10)
    evaluate_accuracy(model, tokens, labels, batch_size) -> float
    activity_masks(model, tokens) -> (B, T, n) bool    # which RIM modules are active at each pixel
    foreground_activity(model, tokens) -> (n, 2)       # each module's active share on stroke / background
    flip_background(tokens, rate, generator) -> tokens # background noise the models never saw
    run(settings=None, seeds=1, ...) -> Record; format_table(record, paper=True) -> str
    add_arguments(parser) / main(args) -> int          # python -m minirims mnist-resolution ...

Every model is ``nn.Embedding(2, d_emb)`` (a pixel is a token, not a raw scalar) -> recurrent layer (a RIM,
an LSTM or a causal Transformer, named by size: ``rim-6x32-k4``, ``lstm-192``, ``transformer-2x64``) ->
linear head on the last step. Record: ``metrics[model]["acc"][str(size)]`` is the test accuracy (0..1),
mean/std/values over seeds; the trivial predictor is a uniform guess (``CHANCE_ACC``, 10%).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from minirims.experiments import common
from minirims.experiments.common import LAPTOP_ATTENTION, TINY_ATTENTION, Record, Task, check_int
from minirims.experiments.data.mnist import SPLIT_SIZES, check_data_dir, load_mnist, pixel_sequences
from minirims.experiments.figures import PAPER_TABLE1
from minirims.experiments.train import batch_indices
from minirims.experiments.transformer import CausalTransformer
from minirims.model import RIM

__all__ = [
    "CHANCE_ACC",
    "CHANCE_CE",
    "EXPERIMENT",
    "PAPER_TABLE1",
    "PROFILES",
    "MNISTClassifier",
    "Settings",
    "activity_masks",
    "add_arguments",
    "check_environment",
    "check_rim_classifier",
    "evaluate_accuracy",
    "flip_background",
    "foreground_activity",
    "format_table",
    "main",
    "make_model",
    "run",
    "settings",
]

EXPERIMENT = "mnist_resolution"
#: the largest side a 28x28 digit is resized to (twice the native side)
MAX_SIZE = 56
#: a uniform guess among the 10 digits (the trivial predictor every model must beat), and its cross-entropy
CHANCE_ACC = 1 / 10
CHANCE_CE = math.log(10)


@dataclass(frozen=True, kw_only=True)
class Settings(common.Settings):
    """Every knob of an MNIST-resolution run (the shared ones in :class:`common.Settings`)."""

    train_size: int = 14  # side of the training digits
    test_sizes: tuple[int, ...] = (14, 16, 19, 24)
    n_train: int = SPLIT_SIZES["train"]
    n_valid: int = SPLIT_SIZES["valid"]  # validation digits (at train_size) that pick the best epoch
    n_test: int = SPLIT_SIZES["test"]  # test digits per size
    d_emb: int = 16  # pixel-token embedding
    tf_heads: int = 4  # attention heads of a transformer-<layers>x<d_model>

    MODEL_KINDS: ClassVar[tuple[str, ...]] = ("rim", "lstm", "transformer")
    TEST_ONLY: ClassVar[tuple[str, ...]] = (*common.Settings.TEST_ONLY, "test_sizes", "n_test")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("train_size", self.train_size, 1, MAX_SIZE)
        sizes = common.check_distinct(
            "test_sizes", self.test_sizes, lambda n, v: check_int(n, v, 1, MAX_SIZE)
        )
        object.__setattr__(self, "test_sizes", sizes)
        for key, split in (("n_train", "train"), ("n_valid", "valid"), ("n_test", "test")):
            check_int(key, getattr(self, key), 1, SPLIT_SIZES[split])
        check_int("d_emb", self.d_emb)
        check_int("tf_heads", self.tf_heads)


#: the ``cpu`` profile; ``long`` is its recipe at another size (the LSTM at its own rate)
_CPU = Settings(
    profile="cpu",
    models=("rim-6x32-k4", "lstm-192"),
    n_valid=1_000,
    n_test=1_000,
    epochs=5,
    batch_size=32,
    lr=3e-3,
    lr_schedule="cosine",
    warmup_steps=200,
    dropout=0.0,
    **LAPTOP_ATTENTION,
    compile=True,
    note="laptop size: a RIM of 6 x 32 units against an LSTM of 192, all 50k training digits, 5 "
    "epochs of batch 32, one recipe for both (warm-up to 3e-3, cosine decay, no dropout: with one input "
    "slot it erases the pixel); chosen from one-epoch probes (commit aeba678, results/README.md). Early "
    "training, not the paper's ~100 epochs",
)

PROFILES: dict[str, Settings] = {
    "smoke": Settings(
        profile="smoke",
        models=("rim-6x12-k4", "lstm-72"),
        n_train=256,
        n_valid=128,
        n_test=64,
        epochs=1,
        batch_size=32,
        eval_batch_size=64,
        lr=2e-3,
        d_emb=8,
        **TINY_ATTENTION,
        tf_heads=2,
        note="proves the pipeline runs (seconds); accuracies are near chance",
    ),
    "cpu": _CPU,
    "full": Settings(
        profile="full",
        models=("rim-6x100-k4", "rim-6x100-k5", "rim-6x100-k6", "lstm-300", "lstm-600", "transformer-4x128"),
        epochs=20,
        lr=7e-4,
        note="the paper's models and rate, 20 epochs of batch 64 (the paper: ~100) to fit a GPU budget",
    ),
    "long": _CPU.replace(
        profile="long",
        models=("rim-6x48-k4", "lstm-288"),
        n_valid=2_000,
        n_test=SPLIT_SIZES["test"],
        epochs=30,
        lr_by_model={"lstm-288": 1e-3},
        note="a reference trained on a CPU for hours, beside the paper's Table 1: the cpu recipe for 30 "
        "epochs, a RIM of 6 x 48 units against an LSTM of the same state size (288) at the rate its probe "
        "needed (1e-3: at 3e-3 it stayed at chance; commit aeba678, results/README.md); all 10k test digits",
    ),
}


def settings(profile: str | Settings | None = None, **overrides: Any) -> Settings:
    """The settings of ``profile`` (default: env ``MINIRIMS_PROFILE``) with ``overrides``, validated."""
    return common.settings_of(PROFILES, profile, overrides)


class MNISTClassifier(nn.Module):
    """Pixel embedding -> recurrent layer -> linear head on the last step.

    Args:
        core: a RIM, LSTMBaseline or CausalTransformer whose input size is ``d_emb``.
        d_emb: embedding size of a pixel token (0 or 1).
    """

    def __init__(self, core: nn.Module, d_emb: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(2, d_emb)
        self.core = core
        self.head = nn.Linear(int(core.d_out), 10)

    def forward(self, tokens: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Any]:
        """tokens (B, T) int in {0, 1} -> logits (B, 10); with ``trace`` also the core's Trace (or None)."""
        if tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError(
                f"tokens: expected shape (B, T) of integer tokens, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        # Values are read on the CPU only: on a GPU the read is a host sync that would stall every training
        # batch; there the embedding refuses a token outside {0, 1} itself (a device-side index error).
        if tokens.numel() and tokens.device.type == "cpu":
            lo, hi = torch.stack(torch.aminmax(tokens)).tolist()
            if lo < 0 or hi > 1:
                raise ValueError(f"tokens: expected pixel tokens in {{0, 1}}, got values in [{lo}, {hi}]")
        out, _, tr = self.core(self.embed(tokens.long()), trace=trace)
        logits = self.head(out[:, -1])
        return (logits, tr) if trace else logits


def make_model(name: str, settings: Settings | None = None) -> MNISTClassifier:
    """An :class:`MNISTClassifier` whose core is named by its size (default settings: the ``full`` profile).

    ``rim-<n>x<d>-k<k>``: a RIM of n modules of d units, k active (``-gru`` appended: GRU modules);
    ``lstm-<d>``: an LSTM of d units;
    ``transformer-<layers>x<d_model>``: a causal Transformer with ``tf_heads`` heads.
    """
    s = PROFILES["full"] if settings is None else settings
    spec = common.parse_model_name(name, Settings.MODEL_KINDS)
    if spec["kind"] == "transformer":
        core: nn.Module = CausalTransformer(s.d_emb, spec["d"], spec["layers"], s.tf_heads, dropout=s.dropout)
    else:
        core = common.make_core(name, s.d_emb, s)
    return MNISTClassifier(core, s.d_emb)


def check_rim_classifier(model: object, name: str = "model") -> MNISTClassifier:
    """``model`` if it is an :class:`MNISTClassifier` with a RIM core, else a ValueError naming ``name``."""
    if not isinstance(model, MNISTClassifier) or not isinstance(model.core, RIM):
        got = type(model).__name__
        if isinstance(model, MNISTClassifier):
            got += f" with a {type(model.core).__name__} core"
        raise ValueError(f"{name}: expected an MNISTClassifier with a RIM core, got {got}")
    return model


@torch.no_grad()
def activity_masks(model: MNISTClassifier, tokens: Tensor) -> Tensor:
    """Which RIM modules are active at each pixel: tokens (T,) or (B, T) -> masks (B, T, n) bool (CPU)."""
    check_rim_classifier(model)
    return common.traced_masks(model, tokens)


def flip_background(tokens: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Turn each background pixel (0) into a stroke pixel (1) with probability ``rate``: noise that no model
    saw in training. One uniform number per pixel from ``generator`` (a CPU one; pixel ``i`` flips where it is
    below ``rate``), so with generators in the same state a higher rate keeps the flips of a lower one.

    Args:
        tokens: (N, T) pixel tokens in {0, 1} (any integer dtype).
        rate: in [0, 1].

    Returns:
        (N, T) tokens of the same dtype and device.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens: expected shape (N, T) of integer pixel tokens, got {got}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate: expected a number in [0, 1], got {rate!r}")
    u = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    return torch.where((tokens == 0) & (u < rate), torch.ones_like(tokens), tokens)


@torch.no_grad()
def foreground_activity(model: MNISTClassifier, tokens: Tensor, batch_size: int = 250) -> Tensor:
    """Does a module attend to the digit's strokes or to the background? For each RIM module, the share of
    stroke pixels (token 1) and of background pixels (token 0) at which it is active.

    A module that ignores what it reads is active on both at the same rate (about k / n); a module that
    specialises on the foreground is active on strokes far more often than on the background.

    Args:
        model: an :class:`MNISTClassifier` with a RIM core.
        tokens: (N, T) pixel tokens in {0, 1}, with both kinds of pixel present.

    Returns:
        (n, 2) float64 on the CPU: column 0 the share of stroke pixels, column 1 of background pixels, at
        which each module is active.
    """
    check_rim_classifier(model)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens: expected shape (N, T) of integer pixel tokens, got {got}")
    check_int("batch_size", batch_size)
    n = model.core.n_modules
    active = torch.zeros(2, n, dtype=torch.float64)  # [stroke, background] x modules
    count = torch.zeros(2, dtype=torch.float64)
    for i in range(0, tokens.shape[0], batch_size):
        chunk = tokens[i : i + batch_size]
        masks = common.traced_masks(model, chunk).double()  # (B, T, n)
        stroke = (chunk.cpu() == 1).double().unsqueeze(-1)  # (B, T, 1)
        active[0] += (masks * stroke).sum((0, 1))
        active[1] += (masks * (1 - stroke)).sum((0, 1))
        count += torch.stack([stroke.sum(), (1 - stroke).sum()])
    if (count == 0).any():
        raise ValueError("tokens: expected both stroke (1) and background (0) pixels, got only one kind")
    return (active / count.unsqueeze(1)).t()


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, tokens: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Accuracy of ``model`` on tokens (N, T) / labels (N,), in batches, under no_grad, model.eval()."""
    if tokens.dim() != 2 or labels.shape != tokens.shape[:1]:
        raise ValueError(
            f"tokens, labels: expected shapes (N, T) and (N,), "
            f"got {tuple(tokens.shape)}, {tuple(labels.shape)}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, tokens.shape[0], batch_size):
        logits = model(tokens[i : i + batch_size].to(device))
        correct += (logits.argmax(-1) == labels[i : i + batch_size].to(device)).sum()
    model.train(was_training)
    return float(correct) / max(1, tokens.shape[0])


def _load_split(split: str, n: int, size: int) -> tuple[Tensor, Tensor]:
    images, labels = load_mnist(split)
    n = min(int(n), len(labels))
    return pixel_sequences(images[:n], size), torch.as_tensor(labels[:n]).long()


def run(settings: str | Settings | None = None, seeds: int | list[int] = 1, **options: Any) -> Record:
    """Train each model and seed on ``train_size``, keep the best-validation epoch, test at every size.

    ``settings``: Settings or a profile name (None: env MINIRIMS_PROFILE); ``options``: those of
    :func:`minirims.experiments.common.train_and_test` (``results``, ``runs_dir``, ``save``, ``device``,
    ``progress``, ``fresh``, ``trained``).

    Returns:
        The record; ``metrics[name]["acc"][str(size)]`` is mean/std/values over seeds of the test accuracy
        (0..1) at ``size x size``.
    """
    s = common.settings_of(PROFILES, settings, {})

    def make_task(s: Settings, device: torch.device) -> Task:
        x_train, y_train = (t.to(device) for t in _load_split("train", s.n_train, s.train_size))
        x_valid, y_valid = _load_split("valid", s.n_valid, s.train_size)
        tests = {size: _load_split("test", s.n_test, size) for size in s.test_sizes}

        def batches(seed: int, epoch: int) -> list[tuple[Tensor, Tensor]]:
            idx = batch_indices(len(y_train), s.batch_size, seed, epoch)
            return [(x_train[i.to(device)], y_train[i.to(device)]) for i in idx]

        def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            logits = model(batch[0])
            acc = (logits.argmax(-1) == batch[1]).float().mean().detach()
            return F.cross_entropy(logits, batch[1]), {"acc": acc}

        def validate(model: nn.Module) -> dict[str, float]:
            return {"val_acc": evaluate_accuracy(model, x_valid, y_valid, s.eval_batch_size)}

        def test(model: nn.Module) -> dict[int, float]:
            bar = tqdm(s.test_sizes, desc="test", leave=False, disable=not options.get("progress", True))
            return {size: evaluate_accuracy(model, *tests[size], s.eval_batch_size) for size in bar}

        def summarize(per_seed: list[dict[int, float]]) -> dict[str, Any]:
            return {"acc": {str(size): common.mean_std([r[size] for r in per_seed]) for size in s.test_sizes}}

        return Task(
            batches, loss, validate, test, summarize, select="val_acc", mode="max", chance_loss=CHANCE_CE
        )

    return common.train_and_test(
        EXPERIMENT,
        s,
        seeds,
        make_model,
        make_task,
        baselines=lambda task: {},
        extra={"paper_table1": PAPER_TABLE1},
        **options,
    )


def format_table(record: Mapping[str, Any], paper: bool = True) -> str:
    """Test accuracy (%) per model and size as text; with ``paper``, the paper's Table 1 below it.

    With several seeds each cell is mean ± std over seeds; a single seed has no spread, and none is shown.
    """
    sizes = list(record["settings"]["test_sizes"])
    width = max(14, *(len(n) + 2 for n in record["metrics"]))
    lines = ["model".ljust(width) + "".join(f"{s}x{s}".rjust(14) for s in sizes)]
    several = len(record["seeds"]) > 1
    for name, m in record["metrics"].items():
        row = name.ljust(width)
        for s in sizes:
            a = m["acc"][str(s)]
            spread = f" ±{100 * a['std']:4.1f}" if several and a["std"] is not None else " " * 6
            row += f"{100 * a['mean']:8.1f}{spread}"
        lines.append(row)
    lines.append("chance".ljust(width) + "".join(f"{100 * CHANCE_ACC:8.1f}      " for _ in sizes))
    if paper:
        lines.append("the paper's Table 1 (mean of 3 runs):")
        for name, acc in PAPER_TABLE1.items():
            cells = "".join((f"{acc[s]:8.1f}" if s in acc else " " * 8) + " " * 6 for s in sizes)
            lines.append(f"  {name}".ljust(width) + cells)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims mnist-resolution`` (shared by every experiment)."""
    common.add_arguments(parser)


def check_environment(settings: Settings) -> None:
    """Before any work: the MNIST folder (``MINIRIMS_DATA``) must be a folder, or one that can be made."""
    check_data_dir()


def main(args: argparse.Namespace) -> int:
    """``python -m minirims mnist-resolution``: run from parsed arguments, print the table; returns 0."""
    return common.run_command(sys.modules[__name__], args)
