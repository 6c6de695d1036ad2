"""Every figure of the experiments: accuracy per delay or resolution, video frames and rollouts, BCE curves.

::

    plot_accuracy(record, ax=None, title=None, paper=True)   # copying (per delay) or MNIST (per size)
    plot_bce_curves(curves, title="", n_given=None, ylabel=...)   # balls: one score per rollout frame
    plot_balls_scores(record, scores=("f1", "track", "bce"))      # balls: every score, every test set
    plot_record(record)                                      # the figure a command saves beside a record
    plot_knockout(accuracy)                                  # copying: digits lost with one module wiped
    plot_distractors(record)                                 # copying: accuracy against the distractor rate
    plot_flip_robustness(record)                             # MNIST accuracy with background pixels flipped
    plot_foreground(record, model)                           # each module's activity on stroke / background
    plot_rl_probe(record, window=10)                         # RL: learning curves and the shifted tests
    plot_frames(frames, title="", every=1, max_frames=16)    # a strip of video frames
    plot_rollouts(truth, predictions, n_given, every=2)      # the paper's Figure 6
    plot_videos_at(videos, t, n_given, max_videos=16)         # one rollout frame of many videos
    show_rollout_frame(t, truth, predictions, n_given, masks=None)   # one step of a rollout
    rollout_viewer(truth, predictions, n_given, masks=None, t=0)     # an ipywidgets slider over the steps

Each returns a matplotlib Figure (the viewer a widget).

Every line of a trained model is drawn beside the trivial predictors of its record (chance; the mean and
last frames), grey and dashed; the bouncing balls' constant-velocity reference (it knows the true positions)
is grey and dash-dotted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from minirims.experiments.baselines import BASELINES, REFERENCES
from minirims.experiments.common import parse_model_name

__all__ = [
    "PAPER_TABLE1",
    "plot_accuracy",
    "plot_balls_scores",
    "plot_bce_curves",
    "plot_distractors",
    "plot_flip_robustness",
    "plot_foreground",
    "plot_frames",
    "plot_knockout",
    "plot_record",
    "plot_rl_probe",
    "plot_rollouts",
    "plot_videos_at",
    "record_curves",
    "rollout_viewer",
    "show_rollout_frame",
]

#: The paper's Table 1 (sequential MNIST, test accuracy %, mean of 3 runs) at 16 / 19 / 24.
PAPER_TABLE1: dict[str, dict[int, float]] = {
    "rim-6x100-k6": {16: 85.5, 19: 56.2, 24: 30.9},
    "rim-6x100-k5": {16: 88.3, 19: 43.1, 24: 22.1},
    "rim-6x100-k4": {16: 90.0, 19: 73.4, 24: 38.1},
    "lstm-300": {16: 86.8, 19: 42.3, 24: 25.2},
    "lstm-600": {16: 84.5, 19: 52.2, 24: 21.9},
    "transformer": {16: 91.2, 19: 51.6, 24: 22.9},
}


def paper_name(name: str) -> str | None:
    """The paper's model that ``name`` stands for in Table 1: a RIM of 6 modules with the same k (the paper's
    modules have 100 units), or the same LSTM size; None if there is none."""
    if name.startswith("rim-6x") and f"rim-6x100-{name.rsplit('-', 1)[-1]}" in PAPER_TABLE1:
        return f"rim-6x100-{name.rsplit('-', 1)[-1]}"
    return name if name in PAPER_TABLE1 else None


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_accuracy(
    record: Mapping[str, Any], ax: Any = None, title: str | None = None, paper: bool = True
) -> Any:
    """Accuracy (%) per test condition, one line per model (error bars: std over seeds), chance dashed.

    A copying record is drawn against the delay T (digit accuracy over the copied digits), an MNIST record
    against the test resolution (with ``paper``, the paper's Table 1 dashed in the model's colour).
    """
    settings, metrics = record["settings"], record["metrics"]
    copying = record["experiment"] == "copying"
    xs = [int(x) for x in settings["test_delays" if copying else "test_sizes"]]
    fig, ax = _axes(ax, (6.0, 3.4 if copying else 3.6))
    for name, m in metrics.items():
        if name == "chance":
            continue
        acc = m["acc"]
        mean = [100 * acc[str(x)]["mean"] for x in xs]
        std = [100 * (acc[str(x)]["std"] or 0.0) for x in xs]
        line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=name)
        ref = paper_name(name) if paper and not copying else None
        if ref is not None:
            ys = [PAPER_TABLE1[ref][s] for s in (16, 19, 24)]
            ax.plot([16, 19, 24], ys, ls="--", color=line[0].get_color(), alpha=0.6, label=f"{ref} (paper)")
    chance = 1 / 8 if copying else 1 / 10
    ax.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance ({100 * chance:.1f}%)")
    trained_at = int(settings["train_delay" if copying else "train_size"])
    ax.axvline(trained_at, color="grey", lw=0.8, ls=":")
    if copying:
        ax.set_xlabel(f"delay T (trained at T = {trained_at})")
        ax.set_ylabel("digit accuracy (%)")
    else:
        ax.set_xticks(xs, [f"{s}x{s}" for s in xs])
        ax.set_xlabel(f"test resolution (trained on {trained_at}x{trained_at})")
        ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title(title or f"{record['experiment'].replace('_', ' ')}, {record['profile']} profile")
    ax.legend(fontsize=7, ncol=1 if copying else 2)
    fig.tight_layout()
    return fig


#: the bouncing-balls scores: (axis label, which way is better)
BALLS_SCORES = {
    "bce": ("BCE per frame", "lower"),
    "f1": ("foreground F1", "higher"),
    "track": ("tracking error (pixels)", "lower"),
}


def plot_knockout(accuracy: Any, title: str = "", ax: Any = None) -> Any:
    """Digit accuracy per copied position with one RIM module's memory wiped (a heat map).

    ``accuracy``: (n_modules + 1, n_positions) from :func:`minirims.experiments.copying.knockout_accuracy`,
    row 0 with no module wiped. Returns the figure.
    """
    acc = np.asarray(accuracy, dtype=float)
    if acc.ndim != 2 or acc.shape[0] < 2:
        raise ValueError(f"accuracy: expected shape (n_modules + 1, n_positions), got {acc.shape}")
    n_rows, n_pos = acc.shape
    fig, ax = _axes(ax, (0.55 * n_pos + 2.2, 0.4 * n_rows + 1.2))
    im = ax.imshow(acc, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(acc):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    ax.set_xticks(range(n_pos), [str(j + 1) for j in range(n_pos)])
    ax.set_yticks(range(n_rows), ["none wiped"] + [f"module {i} wiped" for i in range(n_rows - 1)])
    ax.set_xlabel("copied digit (position)")
    ax.set_title(title or "digit accuracy with one module's memory wiped after the digits")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="accuracy")
    return fig


def plot_distractors(record: Mapping[str, Any]) -> Any:
    """A copying record with distractor tests: digit accuracy (%) against the distractor rate, one panel per
    test delay, one line per model (error bars: std over seeds), the training rate dotted, chance dashed."""
    import matplotlib.pyplot as plt

    settings, metrics = record["settings"], record["metrics"]
    trained = float(settings["distractor_rate"])
    rates = [trained, *(float(r) for r in settings["test_distractor_rates"])]
    if len(rates) < 2:
        raise ValueError("record: expected a copying record with test_distractor_rates, got none")
    order = np.argsort(rates)
    delays = [str(d) for d in settings["test_delays"]]
    fig, axes = plt.subplots(
        1, len(delays), figsize=(2.4 * len(delays) + 0.8, 2.9), sharey=True, squeeze=False
    )
    for ax, delay in zip(axes[0], delays, strict=True):
        for name, m in metrics.items():
            if name == "chance":
                continue
            cells = [
                m["acc"][delay],
                *(m["acc_distract"][str(r)][delay] for r in settings["test_distractor_rates"]),
            ]
            mean = np.array([100 * c["mean"] for c in cells])[order]
            std = np.array([100 * (c["std"] or 0.0) for c in cells])[order]
            ax.errorbar(100 * np.array(rates)[order], mean, yerr=std, marker="o", capsize=3, label=name)
        ax.axhline(100 / 8, color="grey", ls="--", lw=1, label="chance")
        ax.axvline(100 * trained, color="grey", ls=":", lw=0.8)
        ax.set_title(f"T = {delay}", fontsize=9)
        ax.set_xlabel("distractors in the wait (%)")
        ax.set_ylim(0, 102)
    axes[0][0].set_ylabel("digit accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(
        f"copying with distractors (trained at {100 * trained:.0f}%), {record['profile']} profile",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_flip_robustness(record: Mapping[str, Any]) -> Any:
    """MNIST accuracy (%) against the share of background pixels flipped, one panel per test size, one line
    per model, chance dashed. ``record``: a ``mechanisms`` record (:mod:`minirims.experiments.mechanisms`)."""
    import matplotlib.pyplot as plt

    acc = record["metrics"]["acc_flipped"]
    sizes = list(next(iter(acc.values())))
    fig, axes = plt.subplots(1, len(sizes), figsize=(2.6 * len(sizes) + 0.6, 2.9), sharey=True)
    for ax, size in zip(np.atleast_1d(axes), sizes, strict=True):
        for name, by_size in acc.items():
            rates = [float(r) for r in by_size[size]]
            ax.plot(
                [100 * r for r in rates], [100 * a for a in by_size[size].values()], marker="o", label=name
            )
        ax.axhline(100 * record["metrics"]["chance"], color="grey", ls="--", lw=1, label="chance")
        ax.set_title(f"{size}x{size}" + (" (trained)" if size == sizes[0] else ""), fontsize=9)
        ax.set_xlabel("background pixels flipped (%)")
        ax.set_ylim(0, 100)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy (%)")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(
        f"MNIST with background noise no model saw, {record['profile']} reference models", fontsize=10
    )
    fig.tight_layout()
    return fig


def plot_foreground(record: Mapping[str, Any], model: str | None = None) -> Any:
    """Each RIM module's share of active steps on stroke pixels and on background pixels, at every test size
    (bars: stroke filled, background hatched; the dotted line is k / n, a module that ignores its input)."""
    import matplotlib.pyplot as plt

    fg = record["metrics"]["foreground"]
    name = model if model is not None else next(iter(fg))
    if name not in fg:
        raise ValueError(f"model: expected one of {sorted(fg)}, got {name!r}")
    sizes = list(fg[name])
    act = np.asarray([fg[name][s] for s in sizes])  # (sizes, n, 2)
    n = act.shape[1]
    fig, ax = plt.subplots(figsize=(1.3 * n + 1.5, 3.0))
    width = 0.8 / len(sizes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, size in enumerate(sizes):
        x = np.arange(n) + (i - (len(sizes) - 1) / 2) * width
        ax.bar(x - width / 4, act[i, :, 0], width / 2, color=colors[i], label=f"{size}x{size} stroke")
        ax.bar(
            x + width / 4,
            act[i, :, 1],
            width / 2,
            color="w",
            edgecolor=colors[i],
            hatch="///",
            label=f"{size}x{size} background",
        )
    spec = parse_model_name(name)
    ax.axhline(spec["k"] / spec["n"], color="grey", ls=":", lw=1)
    ax.set_xticks(range(n), [f"module {i}" for i in range(n)])
    ax.set_ylabel("share of pixels where active")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{name}: is a module active on the digit or on the background?", fontsize=10)
    ax.legend(fontsize=6, ncol=len(sizes), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig


def record_curves(record: Mapping[str, Any], score: str = "bce") -> dict[str, dict[str, np.ndarray]]:
    """Per-frame rollout ``score`` ("bce", "f1" or "track") from a bouncing-balls record:
    {test set: {model: (n_future,)}}; models whose entry lacks the score (an older record) are left out."""
    if score not in BALLS_SCORES:
        raise ValueError(f"score: expected one of {', '.join(BALLS_SCORES)}, got {score!r}")
    sets = [
        s for s in next(iter(record["metrics"].values())) if isinstance(s, str) and " " in s or s == "curtain"
    ]
    out: dict[str, dict[str, np.ndarray]] = {}
    for s in sets:
        out[s] = {}
        for m, e in record["metrics"].items():
            if score == "bce":
                out[s][m] = np.asarray(e[s]["per_frame"])
            elif score in e[s]:
                out[s][m] = np.asarray(e[s][score]["per_frame"])
    return out


def plot_balls_scores(record: Mapping[str, Any], scores: tuple[str, ...] = ("f1", "track", "bce")) -> Any:
    """Every score of a bouncing-balls record per rollout frame: a row per score, a column per test set."""
    every = {s: record_curves(record, s) for s in scores}
    curves = {s: c for s, c in every.items() if all(c.values())}  # an older record holds only BCE
    scores = tuple(curves)
    seeds = len(record["seeds"])
    n_sets = len(next(iter(curves.values())))
    fig = _figure((3.4 * n_sets, 2.5 * len(scores) + 0.4))
    axes = fig.subplots(len(scores), n_sets, squeeze=False)
    n_given = record["settings"]["n_given"]
    for row, score in zip(axes, scores, strict=True):
        ylabel = f"{BALLS_SCORES[score][0]} ({BALLS_SCORES[score][1]} is better)"
        _draw_curves(row, curves[score], n_given, ylabel, legend=False)
        if score == "f1":
            for ax in row:
                ax.set_ylim(-0.02, 1.02)
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()  # one legend, below: no curve hides behind it
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=7)
    fig.suptitle(f"bouncing balls, {record['profile']} profile, {seeds} seed(s)", fontsize=10)
    return fig


def plot_rl_probe(record: Mapping[str, Any], window: int = 10) -> Any:
    """An RL probe record: left, each agent's mean episode return over training (a running mean of
    ``window`` rollouts; thin lines per seed, thick their mean); right, the return on each test environment
    (dots per seed, bar the mean), the random policy grey and dashed in both."""
    import matplotlib.pyplot as plt

    if record.get("experiment") != "rl_probe":
        raise ValueError(f"record: expected an rl_probe record, got {record.get('experiment')!r}")
    window = int(window)
    if window < 1:
        raise ValueError(f"window: expected a positive int, got {window}")
    metrics, curves = record["metrics"], record["curves"]
    tests = list(metrics["random"]["return"])
    models = [m for m in metrics if m != "random"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), width_ratios=(3, 2))
    for i, name in enumerate(models):
        color = f"C{i}"
        runs = []
        for rows in curves[name].values():
            steps = np.array([r["steps"] for r in rows], dtype=float)
            ret = np.array([r["return"] for r in rows], dtype=float)
            ended = np.isfinite(ret).astype(float)  # rollouts in which an episode ended
            kernel = np.ones(min(window, len(ret)))
            total = np.convolve(np.nan_to_num(ret), kernel, "same")
            count = np.convolve(ended, kernel, "same")
            smooth = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            left.plot(steps, smooth, color=color, lw=0.6, alpha=0.5)
            runs.append(smooth)
        left.plot(
            steps, np.nanmean(np.stack(runs), 0), color=color, lw=2, label=f"{name} ({len(runs)} seeds)"
        )
    train_random = metrics["random"]["return"][tests[0]]
    left.axhline(train_random, color="grey", ls="--", lw=1, label=f"random policy ({tests[0]})")
    left.set_xlabel("environment steps")
    left.set_ylabel("episode return")
    left.set_title("training", fontsize=9)
    left.legend(fontsize=7)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(tests))
    for i, name in enumerate(models):
        cells = [metrics[name]["return"][t] for t in tests]
        at = x + (i - (len(models) - 1) / 2) * width  # this model's bar in each test's group
        right.bar(at, [c["mean"] for c in cells], width, color=f"C{i}", alpha=0.6, label=name)
        for where, c in zip(at, cells, strict=True):
            right.plot(np.full(len(c["values"]), where), c["values"], "k.", ms=3)
    for j, t in enumerate(tests):
        right.plot([j - 0.45, j + 0.45], [metrics["random"]["return"][t]] * 2, color="grey", ls="--", lw=1)
    right.set_xticks(x, tests, fontsize=8)
    right.set_ylabel("mean episode return")
    right.set_title("tests (dots: seeds; grey dashed: random policy)", fontsize=9)
    right.legend(fontsize=7)
    fig.suptitle(f"RL probe, {record['profile']} profile: PPO with each core", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_record(record: Mapping[str, Any]) -> Any:
    """The figure of a record that ``python -m minirims <experiment>`` saves beside it."""
    seeds = len(record["seeds"])
    title = f"{record['experiment'].replace('_', ' ')}, {record['profile']} profile, {seeds} seed(s)"
    if record["experiment"] == "bouncing_balls":
        return plot_balls_scores(record)
    if record["experiment"] == "rl_probe":
        return plot_rl_probe(record)
    return plot_accuracy(record, title=title)


def _figure(figsize: tuple[float, float]) -> Any:
    """A Figure closed in pyplot at once, so a notebook shows it once: when a cell returns it."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _video(name: str, x: Any) -> np.ndarray:
    """(T, H, W) or (T, 1, H, W) frames (tensor or array; uint8 0-255 or float 0-1) -> float (T, H, W)."""
    arr = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected frames of shape (T, H, W) or (T, 1, H, W), got {arr.shape}")
    return arr / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)


def plot_frames(frames: Any, title: str = "", every: int = 1, max_frames: int = 16) -> Any:
    """A strip of frames, left to right: frames 0, every, 2*every, ... (at most ``max_frames``)."""
    video = _video("frames", frames)
    shown = list(range(0, len(video), max(1, every)))[:max_frames]
    fig = _figure((1.0 * len(shown), 1.35))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, t in zip(axes, shown, strict=False):
        ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"t={t}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_rollouts(
    truth: Any, predictions: dict[str, Any], n_given: int, every: int = 2, title: str = ""
) -> Any:
    """The paper's figure: ground truth and each model's rollout, one row each, frames left to right.

    Args:
        truth: (T, H, W) true video.
        predictions: model name -> (T, H, W) video whose first ``n_given`` frames are the given truth and the
            rest the model's rollout (as returned by :func:`example_rollouts`).
        n_given: number of given frames; only frames from ``n_given - 2`` on are drawn, a red frame marks the
            predicted ones.
        every: draw every ``every``-th frame.
    """
    rows = {"ground truth": _video("truth", truth)}
    rows.update({name: _video(f"predictions[{name!r}]", v) for name, v in predictions.items()})
    t_len = len(rows["ground truth"])
    shown = list(range(max(0, n_given - 2), t_len, max(1, every)))
    fig = _figure((0.8 * len(shown) + 1.2, 0.85 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(shown), squeeze=False)
    for r, (name, video) in enumerate(rows.items()):
        for c, t in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r > 0 and t >= n_given:
                for spine in ax.spines.values():
                    spine.set_color("tab:red")
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title or f"{n_given} frames given, then rolled out (red: predicted)", fontsize=10)
    return fig


def plot_videos_at(
    videos: dict[str, Any], t: int, n_given: int, max_videos: int = 16, title: str = ""
) -> Any:
    """One frame ``t`` of many videos: a row per predictor (truth first), a column per video.

    A rollout judged on one video can be lucky; this shows the same moment of every example at once.

    Args:
        videos: name -> (V, T, H, W) videos (uint8 0-255 or float 0-1), the truth's first; e.g. the
            ``"<set>/..."`` arrays of :func:`example_rollouts` for one set.
        t: the frame shown, in [n_given, T) (a predicted frame).
        n_given: given frames (the title counts the rollout step from them).
        max_videos: at most this many columns.
    """
    if not isinstance(videos, dict) or not videos:
        raise ValueError(
            f"videos: expected a non-empty dict of (V, T, H, W) arrays, got {type(videos).__name__}"
        )
    arrays = {name: np.asarray(v) for name, v in videos.items()}
    shapes = {a.shape[:2] for a in arrays.values()}
    if any(a.ndim != 4 for a in arrays.values()) or len(shapes) != 1:
        got = {name: a.shape for name, a in arrays.items()}
        raise ValueError(f"videos: expected (V, T, H, W) arrays of one shape, got {got}")
    n_videos, n_frames = shapes.pop()
    if isinstance(t, bool) or not isinstance(t, int) or not n_given <= t < n_frames:
        raise ValueError(f"t: expected a predicted frame in [{n_given}, {n_frames - 1}], got {t!r}")
    shown = min(n_videos, max_videos)
    fig = _figure((0.62 * shown + 1.4, 0.7 * len(arrays) + 0.5))
    axes = fig.subplots(len(arrays), shown, squeeze=False)
    for r, (name, a) in enumerate(arrays.items()):
        scale = 255.0 if a.dtype == np.uint8 else 1.0
        for c in range(shown):
            ax = axes[r, c]
            ax.imshow(a[c, t] / scale, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    step = t - n_given + 1
    fig.suptitle(title or f"frame t+{step} of {shown} test videos", fontsize=10)
    return fig


def _draw_curves(
    axes: Any, curves: dict[str, dict[str, Any]], n_given: int | None, ylabel: str, legend: bool = True
) -> None:
    for ax, (set_name, by_model) in zip(axes, curves.items(), strict=False):
        for model, values in by_model.items():
            y = np.asarray(values, dtype=np.float64)
            x = np.arange(1, len(y) + 1) + (n_given - 1 if n_given else 0)
            if model in BASELINES:  # the trivial predictors: grey, dashed, no markers
                style = {
                    "color": "0.45",
                    "linestyle": "--" if model == BASELINES[0] else ":",
                    "linewidth": 1.5,
                }
                ax.plot(x, y, label=f"{model} (baseline)", **style)
            elif model in REFERENCES:  # knows the true positions: a line to compare with
                ax.plot(x, y, color="0.6", linestyle="-.", linewidth=1.2, label=f"{model} (knows positions)")
            else:
                ax.plot(x, y, marker="o", markersize=3, label=model)
        ax.set_title(set_name, fontsize=10)
        ax.set_xlabel("frame" if n_given else "rollout step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel, fontsize=9)
    if legend:
        axes[0].legend(fontsize=7)


def plot_bce_curves(
    curves: dict[str, dict[str, Any]],
    title: str = "",
    n_given: int | None = None,
    ylabel: str = "BCE per frame",
) -> Any:
    """One score of each predicted frame (BCE by default), one panel per test set, one line per model.

    Args:
        curves: {test set: {model: (n_future,) per-frame values}} (see :func:`record_curves`).
        n_given: when given, the x axis shows absolute frame numbers (n_given + i), else rollout steps.
        ylabel: the score's name.
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            f"curves: expected a non-empty dict {{test set: {{model: per-frame values}}}}, got {curves!r}"
        )
    fig = _figure((3.4 * len(curves), 2.8))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    _draw_curves(axes, curves, n_given, ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_rollout_frame(
    t: int, truth: Any, predictions: dict[str, Any], n_given: int, masks: Any | None = None
) -> Any:
    """One time step of a rollout: the true frame and every model's frame at ``t`` side by side.

    Args:
        t: frame index in [0, T).
        truth, predictions, n_given: as in :func:`plot_rollouts`.
        masks: optional (T-1, n) bool, the RIM's active modules at each step; step t-1 produced frame t, so
            the panel shows which modules were active while predicting the frame on screen.
    """
    rows = {"ground truth": _video("truth", truth)}
    rows.update({name: _video(f"predictions[{name!r}]", v) for name, v in predictions.items()})
    t_len = len(rows["ground truth"])
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < t_len:
        raise ValueError(f"t: expected an int in [0, {t_len - 1}], got {t!r}")
    extra = masks is not None
    fig = _figure((1.9 * (len(rows) + extra), 2.3))
    axes = fig.subplots(1, len(rows) + extra, squeeze=False)[0]
    phase = "given" if t < n_given else f"predicted ({t - n_given + 1} of {t_len - n_given})"
    for ax, (name, video) in zip(axes, rows.items(), strict=False):
        ax.imshow(video[t], cmap="gray", vmin=0, vmax=1)
        ax.set_title(name if name == "ground truth" else f"{name}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    if extra:
        m = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
        if m.ndim != 2 or m.shape[0] != t_len - 1:
            raise ValueError(f"masks: expected shape ({t_len - 1}, n), got {m.shape}")
        ax = axes[-1]
        active = m[t - 1].astype(bool) if t > 0 else np.zeros(m.shape[1], dtype=bool)
        ax.barh(np.arange(m.shape[1]), active.astype(float), color=np.where(active, "#1f5fa8", "#dddddd"))
        ax.set_yticks(np.arange(m.shape[1]), [f"M{i}" for i in range(m.shape[1])], fontsize=8)
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_xlim(0, 1)
        ax.set_title("active RIM modules", fontsize=9)
    fig.suptitle(f"t = {t}: {phase}", fontsize=10)
    return fig


def rollout_viewer(
    truth: Any, predictions: dict[str, Any], n_given: int, masks: Any | None = None, t: int = 0
):
    """An ipywidgets slider over the frames of a rollout; each move redraws :func:`show_rollout_frame`."""
    show_rollout_frame(t, truth, predictions, n_given, masks)  # validate early
    import ipywidgets as widgets
    from IPython.display import display

    t_len = len(_video("truth", truth))
    slider = widgets.IntSlider(value=t, min=0, max=t_len - 1, description="t", continuous_update=False)
    out = widgets.Output()

    def draw(_change: Any = None) -> None:
        fig = show_rollout_frame(slider.value, truth, predictions, n_given, masks)
        with out:
            out.clear_output(wait=True)
            display(fig)

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([slider, out])
