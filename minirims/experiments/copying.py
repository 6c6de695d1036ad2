"""The copying task (the paper's first experiment): remember 10 digits across a long stretch of blanks.

A sequence is 10 random digits from 1..8, then ``T - 1`` blanks (0), a marker (9), then 10 blanks during which
the model must output the 10 digits in order; elsewhere the target is the blank. Models are trained with
``T = 50`` and tested with longer delays (the paper: ``T = 200``), where an LSTM's memory decays and a RIM's
inactive modules, which keep their state bit for bit, do not. The experiment has the shape of every
experiment (:mod:`minirims.experiments.common`)::

    Settings, PROFILES, settings(profile=None, **overrides) -> Settings
    copying_sequences(digits (N, 10), delay) -> (tokens (N, delay + 20), targets (N, delay + 20))
    copying_batch(n, delay, generator, distractor_rate=0) -> the same, for n random digit strings
    add_distractors(tokens, delay, rate, generator) -> tokens with distractors in the wait
    make_model(name, settings) -> CopyModel                # tokens (B, L) -> logits (B, L, 10)
    evaluate(model, delay, n, batch_size, seed) -> {"acc", "ce"}   # over the 10 copied digits
    activity_masks(model, tokens) -> (B, L, n) bool        # which RIM modules are active at each step
    run(settings=None, seeds=1, ...) -> Record; format_table(record) -> str
    add_arguments(parser) / main(args) -> int              # python -m minirims copying ...

**Distractors** (``distractor_rate > 0``): each blank of the wait is replaced, with that probability, by a
distractor token (10) that is never to be copied; the model then embeds 11 tokens. ``test_distractor_rates``
tests the trained models at other rates (the same digits; the distractors of a lower rate are kept at a higher
one), where the top-down attention should let the memory modules ignore them.

Record: ``metrics[model]["acc"][str(T)]`` is the digit accuracy (0..1) over the 10 copied digits at delay
``T`` and ``metrics[model]["ce"][str(T)]`` the cross-entropy on those 10 steps, each mean/std/n/values over
seeds; with distractor tests, ``metrics[model]["acc_distract"][str(rate)][str(T)]`` too. Trivial predictor
(``metrics["chance"]``): a uniform guess among the 8 digits scores 12.5% and ``ln 8 = 2.08`` nats.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from minirims.cell import RIMState
from minirims.experiments import common
from minirims.experiments.common import (
    LAPTOP_ATTENTION,
    TINY_ATTENTION,
    Record,
    Task,
    check_distinct,
    check_int,
    make_core,
    mean_std,
    settings_of,
    traced,
    traced_masks,
    train_and_test,
)
from minirims.model import RIM

__all__ = [
    "CHANCE_ACC",
    "CHANCE_CE",
    "EXPERIMENT",
    "N_DIGITS",
    "PROFILES",
    "CopyModel",
    "Settings",
    "activity_masks",
    "add_arguments",
    "add_distractors",
    "copying_batch",
    "copying_sequences",
    "evaluate",
    "format_table",
    "knockout_accuracy",
    "main",
    "make_model",
    "null_attention_by_token",
    "run",
    "settings",
]

EXPERIMENT = "copying"
N_DIGITS = 10  # digits to copy
BLANK, MARKER = 0, 9
VOCAB = 10  # 0 blank, 1..8 digits, 9 marker: what the model outputs
DISTRACTOR = 10  # an input token of the distractor variant only, never a target
#: a uniform guess among the 8 digits (the trivial predictor every model must beat)
CHANCE_ACC = 1 / 8
CHANCE_CE = math.log(8)


@dataclass(frozen=True, kw_only=True)
class Settings(common.Settings):
    """Every knob of a copying run (the shared ones in :class:`minirims.experiments.common.Settings`)."""

    train_delay: int = 50  # T of every training sequence
    test_delays: tuple[int, ...] = (50, 100, 200, 400)
    steps_per_epoch: int = 500  # fresh sequences are drawn for every step
    d_emb: int = 32  # token embedding
    n_eval: int = 1000  # test sequences per delay
    distractor_rate: float = 0.0  # chance that a blank of a training wait is a distractor (0: none)
    test_distractor_rates: tuple[
        float, ...
    ] = ()  # rates tested besides the plain test (needs distractor_rate > 0)

    TEST_ONLY: ClassVar[tuple[str, ...]] = (
        *common.Settings.TEST_ONLY,
        "test_delays",
        "n_eval",
        "test_distractor_rates",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("train_delay", "steps_per_epoch", "d_emb", "n_eval"):
            check_int(key, getattr(self, key))
        object.__setattr__(self, "test_delays", check_distinct("test_delays", self.test_delays, check_int))
        _check_distractor_rate("distractor_rate", self.distractor_rate)
        rates = self.test_distractor_rates
        if rates != ():
            rates = check_distinct("test_distractor_rates", rates, _check_distractor_rate)
            if self.distractor_rate == 0:
                raise ValueError(
                    "test_distractor_rates: expected none when distractor_rate is 0 (the model has no "
                    f"distractor token), got {list(rates)}"
                )
        object.__setattr__(self, "test_distractor_rates", tuple(rates))


def _check_distractor_rate(name: str, value: object) -> float:
    """A probability in [0, 1) (never a bool)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
    if not ok:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


PROFILES: dict[str, Settings] = {
    "smoke": Settings(
        profile="smoke",
        models=("rim-6x8-k4", "lstm-48"),
        train_delay=5,
        test_delays=(5, 10),
        steps_per_epoch=8,
        epochs=1,
        batch_size=16,
        d_emb=8,
        **TINY_ATTENTION,
        n_eval=64,
        eval_batch_size=64,
        note="proves the pipeline runs (seconds); accuracies are near chance",
    ),
    "cpu": Settings(
        profile="cpu",
        models=("rim-6x48-k4", "lstm-288"),
        test_delays=(50, 100, 150, 200, 400),
        steps_per_epoch=250,
        epochs=16,
        lr=5e-3,
        lr_by_model={"rim-6x48-k4": 4e-3},
        lr_schedule="cosine",
        warmup_steps=200,
        d_emb=16,
        **LAPTOP_ATTENTION,
        compile=True,
        note="a RIM of 6 x 48 units (4 active) against an LSTM of the same state size, 4k steps of batch 64 "
        "at T = 50 with a cosine schedule: at 6 x 32 the RIM forgets at T = 200, and these peak rates won "
        "on validation loss (sweeps at commit aeba678, results/README.md)",
    ),
    "full": Settings(
        profile="full",
        models=("rim-6x100-k4", "lstm-600"),
        epochs=20,
        dropout=0.5,
        note="the official code's README example: 6 modules of 100 units, 4 active, lr 1e-3, dropout 0.5, "
        "against an LSTM of 600 units; 10k steps of batch 64 at T = 50",
    ),
}


def settings(profile: str | Settings | None = None, **overrides: Any) -> Settings:
    """The settings of ``profile`` (default: env ``MINIRIMS_PROFILE``) with ``overrides``, validated."""
    return settings_of(PROFILES, profile, overrides)


def copying_sequences(digits: Tensor, delay: int) -> tuple[Tensor, Tensor]:
    """Lay out copying sequences around given digits.

    Args:
        digits: (N, 10) int64 in 1..8, the digits to remember.
        delay: T >= 1, the number of steps from the last digit to the marker.

    Returns:
        tokens (N, T + 20): the digits, ``T - 1`` blanks (0), the marker (9), 10 blanks;
        targets (N, T + 20): blanks everywhere except the last 10 steps, which are the digits.
    """
    if not isinstance(digits, Tensor) or digits.dim() != 2 or digits.shape[1] != N_DIGITS:
        shape = tuple(digits.shape) if isinstance(digits, Tensor) else type(digits).__name__
        raise ValueError(f"digits: expected a tensor of shape (N, {N_DIGITS}), got {shape}")
    if digits.dtype.is_floating_point or (digits.numel() and not bool(((digits >= 1) & (digits <= 8)).all())):
        raise ValueError(f"digits: expected integers in 1..8, got dtype {digits.dtype}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ValueError(f"delay: expected a positive int, got {delay!r}")
    n, length = digits.shape[0], delay + 2 * N_DIGITS
    tokens = torch.full((n, length), BLANK, dtype=torch.long)
    tokens[:, :N_DIGITS] = digits
    tokens[:, N_DIGITS + delay - 1] = MARKER
    targets = torch.full((n, length), BLANK, dtype=torch.long)
    targets[:, -N_DIGITS:] = digits
    return tokens, targets


def copying_batch(
    n: int, delay: int, generator: torch.Generator | None = None, distractor_rate: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``n`` copying sequences with random digits (uniform on 1..8) and a delay of ``delay`` steps.

    With ``distractor_rate > 0`` each blank of the wait is a distractor with that probability (drawn from the
    same ``generator``, after the digits: see :func:`add_distractors`).

    Returns:
        tokens (n, delay + 20) and targets (n, delay + 20), both int64 (see :func:`copying_sequences`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    rate = _check_distractor_rate("distractor_rate", distractor_rate)
    tokens, targets = copying_sequences(torch.randint(1, 9, (n, N_DIGITS), generator=generator), delay)
    if rate > 0:
        tokens = add_distractors(tokens, delay, rate, generator)
    return tokens, targets


def add_distractors(
    tokens: Tensor, delay: int, rate: float, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each blank of the wait (the ``delay - 1`` steps between the digits and the marker) by the
    distractor token (10) with probability ``rate``; the targets do not change.

    One uniform number per position is drawn from ``generator``, and a blank becomes a distractor where it
    is below ``rate``: with generators in the same state, the distractors of a lower rate are kept at a
    higher one.

    Args:
        tokens: (N, delay + 20) int64 from :func:`copying_sequences`.
        delay: the sequences' T.
        rate: in [0, 1).

    Returns:
        a new (N, delay + 20) int64 tensor.
    """
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ValueError(f"delay: expected a positive int, got {delay!r}")
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.shape[1] != delay + 2 * N_DIGITS:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens: expected shape (N, {delay + 2 * N_DIGITS}) for delay {delay}, got {shape}")
    rate = _check_distractor_rate("rate", rate)
    wait = slice(N_DIGITS, N_DIGITS + delay - 1)
    u = torch.rand(tokens.shape[0], delay - 1, generator=generator)
    out = tokens.clone()
    out[:, wait] = torch.where((u < rate) & (tokens[:, wait] == BLANK), DISTRACTOR, tokens[:, wait])
    return out


class CopyModel(nn.Module):
    """Token embedding -> recurrent core -> a linear read-out at every step.

    tokens (B, L) int64 in 0..9 (0..10 with ``distractors``) -> logits (B, L, 10). ``core`` maps
    (B, L, d_emb) -> (B, L, d_out).
    """

    def __init__(self, core: nn.Module, d_emb: int, distractors: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 1 if distractors else VOCAB, d_emb)
        self.core = core
        self.head = nn.Linear(int(core.d_out), VOCAB)

    def forward(self, tokens: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Any]:
        if tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError(
                f"tokens: expected shape (B, L) of integer tokens, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        out, _, tr = self.core(self.embed(tokens), trace=trace)
        logits = self.head(out)
        return (logits, tr) if trace else logits


def make_model(name: str, settings: Settings | None = None) -> CopyModel:
    """A :class:`CopyModel` whose core is named by its size: ``rim-6x48-k4`` or ``lstm-288`` (a RIM's name may
    ask for an ablation: ``rim-6x48-k4-nocomm``, ``-random``); it embeds the distractor token when
    ``settings.distractor_rate > 0``."""
    s = PROFILES["full"] if settings is None else settings
    return CopyModel(make_core(name, s.d_emb, s), s.d_emb, distractors=s.distractor_rate > 0)


def _copy_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and digit accuracy over the last 10 steps. logits (B, L, 10), targets (B, L)."""
    lg, tg = logits[:, -N_DIGITS:], targets[:, -N_DIGITS:]
    ce = F.cross_entropy(lg.reshape(-1, VOCAB), tg.reshape(-1))
    acc = (lg.argmax(-1) == tg).float().mean()
    return ce, acc


@torch.no_grad()
def evaluate(
    model: nn.Module,
    delay: int,
    n: int = 1000,
    batch_size: int = 500,
    seed: int = 12345,
    distractor_rate: float = 0.0,
) -> dict[str, float]:
    """Digit accuracy and cross-entropy over the 10 copied digits on ``n`` fresh sequences at ``delay``.

    The test sequences come from their own seed, so every model sees the same ones; ``distractor_rate``
    adds distractors to the same digit strings.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ce_sum = torch.zeros((), device=device)
    acc_sum = torch.zeros((), device=device)
    for tokens, targets in _test_batches(delay, n, batch_size, seed, distractor_rate):
        b = tokens.shape[0]
        ce, acc = _copy_loss(model(tokens.to(device)), targets.to(device))
        ce_sum += ce * b
        acc_sum += acc * b
    model.train(was_training)
    return {"acc": float(acc_sum) / n, "ce": float(ce_sum) / n}


def _test_batches(
    delay: int, n: int, batch_size: int, seed: int, distractor_rate: float = 0.0
) -> Iterator[tuple[Tensor, Tensor]]:
    """The ``n`` test sequences at ``delay`` (from their own seed, the same for every model) in batches; the
    distractors come from a generator of their own, so every rate has the same digit strings."""
    gen = torch.Generator().manual_seed(seed + delay)
    distract = torch.Generator().manual_seed(seed + delay + 1_000_003)
    for start in range(0, n, batch_size):
        tokens, targets = copying_batch(min(batch_size, n - start), delay, gen)
        if distractor_rate > 0:
            tokens = add_distractors(tokens, delay, distractor_rate, distract)
        yield tokens, targets


@torch.no_grad()
def activity_masks(model: CopyModel, tokens: Tensor) -> Tensor:
    """Which RIM modules are active at each step: tokens (L,) or (B, L) -> masks (B, L, n) bool (CPU)."""
    if not isinstance(model, CopyModel) or not isinstance(model.core, RIM):
        raise ValueError(f"model: expected a CopyModel with a RIM core, got {type(model).__name__}")
    return traced_masks(model, tokens)


@torch.no_grad()
def knockout_accuracy(
    model: CopyModel, delay: int, n: int = 500, batch_size: int = 500, seed: int = 12345
) -> Tensor:
    """Which module holds which digit: digit accuracy per position with one module's memory wiped.

    The model reads the 10 digits; then the state of one RIM module (h, and c for LSTM modules) is set back
    to its initial value (zeros), and the model runs on through the wait and the answer. The sequences are
    those of :func:`evaluate` (``n`` fresh ones at ``delay``, from their own seed).

    Returns:
        (n_modules + 1, 10) float64 on the CPU: row 0 the accuracy of each copied digit position with no
        module wiped, row ``i + 1`` with module ``i`` wiped. A position that falls to chance (1/8) when a
        module is wiped was held by that module alone.
    """
    if not isinstance(model, CopyModel) or not isinstance(model.core, RIM):
        raise ValueError(f"model: expected a CopyModel with a RIM core, got {type(model).__name__}")
    for name, value in (("delay", delay), ("n", n), ("batch_size", batch_size)):
        check_int(name, value)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_modules = model.core.n_modules
    correct = torch.zeros(n_modules + 1, N_DIGITS, dtype=torch.float64)
    for tokens, targets in _test_batches(delay, n, batch_size, seed):
        x = model.embed(tokens.to(device))
        _, read, _ = model.core(x[:, :N_DIGITS])  # the state after the last digit
        for row in range(n_modules + 1):
            h, c = read.h.clone(), None if read.c is None else read.c.clone()
            if row:  # wipe module row - 1
                h[:, row - 1] = 0
                if c is not None:
                    c[:, row - 1] = 0
            out, _, _ = model.core(x[:, N_DIGITS:], RIMState(h, c))
            guess = model.head(out[:, -N_DIGITS:]).argmax(-1).cpu()
            correct[row] += (guess == targets[:, -N_DIGITS:]).double().sum(0)
    model.train(was_training)
    return correct / n


@torch.no_grad()
def null_attention_by_token(model: CopyModel, delay: int = 200, n: int = 200) -> dict[str, Tensor]:
    """How much each module of a copying RIM attends to the null slot on each kind of input token.

    A module that ignores an input attends to the null slot (and, losing the competition, keeps its state).
    Runs ``n`` test sequences at ``delay`` (those of :func:`evaluate`).

    Returns:
        ``{"digit" | "blank" | "marker" (| "distractor"): (n_modules,) float64}``, the mean null attention
        of each module over the steps whose input is of that kind (distractors only for a model that
        embeds them).
    """
    if not isinstance(model, CopyModel) or not isinstance(model.core, RIM):
        raise ValueError(f"model: expected a CopyModel with a RIM core, got {type(model).__name__}")
    check_int("delay", delay)
    check_int("n", n)
    kinds: dict[str, Any] = {"digit": range(1, 9), "blank": (BLANK,), "marker": (MARKER,)}
    rate = 0.0
    if model.embed.num_embeddings > VOCAB:
        kinds["distractor"], rate = (DISTRACTOR,), 0.2
    tokens, _ = next(_test_batches(delay, n, n, 12345, rate))
    null = traced(model, tokens).input_attn[..., 0].double().cpu()  # (B, L, n)
    out = {}
    for kind, values in kinds.items():
        where = torch.isin(tokens, torch.tensor(list(values)))
        out[kind] = null[where].mean(0)
    return out


def run(
    settings: str | Settings | None = None,
    seeds: int | list[int] = 1,
    **options: Any,
) -> Record:
    """Train each model and seed at ``train_delay``, test at every delay in ``test_delays``.

    Training data are drawn fresh for every step (seeded by seed and epoch, so a resumed run sees the same
    data); the best epoch is the one with the lowest cross-entropy on 512 held-out sequences at the training
    delay (never at a test delay). ``settings``: Settings or a profile name (None: env MINIRIMS_PROFILE);
    ``options``: those of :func:`minirims.experiments.common.train_and_test` (``results``, ``runs_dir``,
    ``save``, ``device``, ``progress``, ``fresh``, ``trained``).

    Returns:
        The record; ``metrics[name]["acc"][str(T)]`` and ``["ce"][str(T)]`` are mean/std/values over seeds.
    """
    s = settings_of(PROFILES, settings, {})

    def make_task(s: Settings, device: torch.device) -> Task:
        bs, steps = s.batch_size, s.steps_per_epoch

        def batches(seed: int, epoch: int) -> list[tuple[Tensor, Tensor]]:
            gen = torch.Generator().manual_seed(1_000_003 * seed + epoch)
            tokens, targets = copying_batch(steps * bs, s.train_delay, gen, s.distractor_rate)
            return [
                (tokens[i : i + bs].to(device), targets[i : i + bs].to(device))
                for i in range(0, steps * bs, bs)
            ]

        def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            ce, acc = _copy_loss(model(batch[0]), batch[1])
            return ce, {"acc": acc.detach()}

        def validate(model: nn.Module) -> dict[str, float]:
            scores = evaluate(model, s.train_delay, 512, s.eval_batch_size, 777, s.distractor_rate)
            return {"val_acc": scores["acc"], "val_ce": scores["ce"]}

        def test(model: nn.Module) -> dict[Any, Any]:
            cases = [(r, d) for r in (s.distractor_rate, *s.test_distractor_rates) for d in s.test_delays]
            bar = tqdm(cases, desc="test", leave=False, disable=not options.get("progress", True))
            out: dict[Any, Any] = {
                (r, d): evaluate(model, d, s.n_eval, s.eval_batch_size, distractor_rate=r) for r, d in bar
            }
            if s.distractor_rate > 0 and isinstance(model.core, RIM):  # what the modules ignore
                null = null_attention_by_token(model, delay=max(s.test_delays), n=min(200, s.n_eval))
                out["null_attention"] = {kind: v.tolist() for kind, v in null.items()}
            return out

        def summarize(per_seed: list[dict[Any, Any]]) -> dict[str, Any]:
            def at(rate: float, key: str) -> dict[str, Any]:
                return {str(d): mean_std([r[rate, d][key] for r in per_seed]) for d in s.test_delays}

            out: dict[str, Any] = {key: at(s.distractor_rate, key) for key in ("acc", "ce")}
            if s.test_distractor_rates:
                out["acc_distract"] = {str(r): at(r, "acc") for r in s.test_distractor_rates}
            if "null_attention" in per_seed[0]:  # per kind: one list of module values per seed
                kinds = per_seed[0]["null_attention"]
                out["null_attention"] = {k: [r["null_attention"][k] for r in per_seed] for k in kinds}
            return out

        return Task(batches, loss, validate, test, summarize, select="val_ce", chance_loss=CHANCE_CE)

    return train_and_test(
        EXPERIMENT,
        s,
        seeds,
        make_model,
        make_task,
        baselines=lambda task: {"chance": {"acc": CHANCE_ACC, "ce": CHANCE_CE}},
        **options,
    )


def _models(record: Mapping[str, Any]) -> list[str]:
    return [name for name in record["metrics"] if name != "chance"]


def format_table(record: Mapping[str, Any]) -> str:
    """Digit accuracy (%) and cross-entropy per model and delay, with the uniform-guess baseline."""
    delays = [int(d) for d in record["settings"]["test_delays"]]
    width = max(12, *(len(n) + 2 for n in _models(record)))
    lines = ["model".ljust(width) + "".join(f"T={d}".rjust(14) for d in delays)]
    n_seeds = len(record["seeds"])
    for name in _models(record):
        m = record["metrics"][name]
        row = name.ljust(width)
        for d in delays:
            a = m["acc"][str(d)]
            spread = f" ±{100 * a['std']:4.1f}" if n_seeds > 1 and a["std"] is not None else ""
            row += f"{100 * a['mean']:.1f}%{spread}".rjust(14)
        lines.append(row)
        lines.append(
            "  ce".ljust(width) + "".join(f"{m['ce'][str(d)]['mean']:.3f}".rjust(14) for d in delays)
        )
        for rate, accs in m.get("acc_distract", {}).items():
            lines.append(
                f"  {float(rate):.0%} distr.".ljust(width)
                + "".join(f"{100 * accs[str(d)]['mean']:.1f}%".rjust(14) for d in delays)
            )
    lines.append("chance".ljust(width) + "".join(f"{100 * CHANCE_ACC:.1f}%".rjust(14) for _ in delays))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims copying`` (those of every experiment, and the distractor variant's)."""

    def distractors(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--distractor-rate",
            type=float,
            default=None,
            help="chance that a blank of a training wait is a distractor token (default: the profile's, 0)",
        )
        p.add_argument(
            "--test-distractor-rates",
            default=None,
            help="distractor rates to test besides the trained one, e.g. 0.2,0.5 (needs --distractor-rate)",
        )

    common.add_arguments(parser, distractors)


def main(args: argparse.Namespace) -> int:
    """``python -m minirims copying``: run from parsed arguments, print the table; returns 0."""
    extra: dict[str, Any] = {}
    if args.distractor_rate is not None:
        extra["distractor_rate"] = args.distractor_rate
    if args.test_distractor_rates is not None:
        try:
            extra["test_distractor_rates"] = tuple(float(r) for r in args.test_distractor_rates.split(","))
        except ValueError:
            raise ValueError(
                "--test-distractor-rates: expected numbers separated by commas, e.g. 0.05,0.2,0.5, "
                f"got {args.test_distractor_rates!r}"
            ) from None
    return common.run_command(sys.modules[__name__], args, extra)
