"""Figures and ipywidgets explorers for the course.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``. New figures are
closed in pyplot as soon as they are made, so a cell that ends with ``viz.plot_attention(w)`` shows the figure
once (as the cell's value). With ``ax=`` (an axes from ``plt.subplots``) a function draws there and returns
``ax.figure``; ``figsize`` is the size of a new figure, ``title`` its title.

- :func:`plot_attention`: a heatmap of attention weights, e.g. modules x input slots.
- :func:`plot_activity`: which modules are active at each time step (a modules x time raster).
- :func:`show_step`: one time step of a :class:`~minirims.model.Trace`; :func:`step_explorer` scrubs through
  them with a time-step slider and an example picker.
- :func:`plot_competition`, :func:`plot_communication`, :func:`plot_rim_step`: the competition, the
  communication and one whole RIM step (after the paper's Figure 1), drawn out.

Inputs may be torch tensors (any device) or numpy arrays. Shapes: B batch, T time, n modules, m input slots
(input attention has 1+m columns, the null slot first), H heads.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_attention",
    "plot_activity",
    "show_step",
    "step_explorer",
    "plot_competition",
    "plot_communication",
    "plot_rim_step",
]

ACTIVE_COLOR = "#1f5fa8"
INACTIVE_COLOR = "#b5b5b5"
_NULL_COLOR = "#c0504d"
ACTIVITY_CMAP = ListedColormap(["#f2f2f2", ACTIVE_COLOR])
_ANNOTATE_MAX_CELLS = 100  # write the numbers into heatmaps up to this many cells


# ------------------------------------------------------------------------------------- inputs and axes


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array; ValueError naming ``name`` otherwise."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a numeric array or tensor, got {type(x).__name__}")
    return arr


def _check_ndim(name: str, arr: np.ndarray, ndim: int, shape: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array of shape {shape}, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name}: expected a non-empty array of shape {shape}, got shape {arr.shape}")


def _check_int(name: str, value: Any, low: int, high: int, what: str = "") -> int:
    """``value`` as an int; ValueError naming ``name`` unless it is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"{name}: expected an int in [{low}, {high}]{what}, got {value!r}")
    return int(value)


def _labels(name: str, labels: Sequence[str] | None, size: int, default: list[str]) -> list[str]:
    """``labels`` as ``size`` strings (``default`` when None); ValueError naming ``name`` otherwise."""
    if labels is None:
        return default
    if isinstance(labels, str):
        raise ValueError(f"{name}: expected a sequence of {size} labels, got a string")
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(f"{name}: expected {size} labels, got {len(labels)}")
    return labels


def _module_labels(n: int) -> list[str]:
    return [f"M{i}" for i in range(n)]


def _slot_labels(n_slots: int) -> list[str]:
    return ["null", "x"] if n_slots == 2 else ["null"] + [f"x{j}" for j in range(1, n_slots)]


def _figure(figsize: tuple[float, float]) -> Figure:
    """A new Figure made by pyplot (so Jupyter's inline display works) and closed there at once; a closed
    figure can still be displayed, saved and drawn on."""
    plt = importlib.import_module("matplotlib.pyplot")
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _figure(figsize)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise ValueError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


# ------------------------------------------------------------------------------- heatmaps and rasters


def _heatmap(
    ax: Axes,
    w: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: Any = "viridis",
    text_color: str | None = None,
) -> Any:
    """Draw ``w`` with its labels; up to 100 cells, write the values in, in ``text_color`` (default: black on
    light cells, white on dark ones)."""
    image = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(w.shape[1]), col_labels)
    ax.set_yticks(range(w.shape[0]), row_labels)
    ax.tick_params(length=0)
    if w.size <= _ANNOTATE_MAX_CELLS:
        middle = vmin + 0.6 * (vmax - vmin)
        for (i, j), value in np.ndenumerate(w):
            color = text_color or ("black" if value > middle else "white")
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    return image


def _mark_active_rows(ax: Axes, active: np.ndarray) -> None:
    """Bold, coloured tick labels for active modules."""
    for label, is_active in zip(ax.get_yticklabels(), active, strict=True):
        label.set_color(ACTIVE_COLOR if is_active else "#999999")
        label.set_fontweight("bold" if is_active else "normal")


def plot_attention(
    weights: Any,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "attention weights",
    ax: Axes | None = None,
    *,
    xlabel: str | None = "attends to",
    ylabel: str | None = "module",
    colorbar: bool = True,
    figsize: tuple[float, float] = (5.0, 3.0),
) -> Figure:
    """Heatmap of attention weights (colour scale 0 to 1), values written in when there are at most 100 cells.

    ``weights`` (R, C): one row per query, one column per key, e.g. a module's attention over [null, inputs]
    (n, 1+m) or the communication attention (n, n). ``row_labels``: R labels (default ``M0, M1, ...``);
    ``col_labels``: C labels (default ``0, 1, ...``); ``xlabel``, ``ylabel``: None for none; ``colorbar``
    adds one more axes.
    """
    w = _to_numpy("weights", weights).astype(np.float64)
    _check_ndim("weights", w, 2, "(R, C)")
    rows = _labels("row_labels", row_labels, w.shape[0], _module_labels(w.shape[0]))
    cols = _labels("col_labels", col_labels, w.shape[1], [str(j) for j in range(w.shape[1])])
    fig, ax = _new_axes(ax, figsize)
    image = _heatmap(ax, w, rows, cols)
    ax.set(title=title, xlabel=xlabel or "", ylabel=ylabel or "")
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    return fig


def plot_activity(
    masks: Any,
    inputs: Any | None = None,
    *,
    title: str = "active modules",
    module_labels: Sequence[str] | None = None,
    input_label: str = "input",
    t_marker: int | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (6.0, 2.6),
) -> Figure:
    """Which modules are active at each time step: a modules x time raster (dark = active).

    Args:
        masks: (T, n) bool (or 0/1), True where module i is active at step t; for a batch, pass one example:
            ``trace.masks[b]``.
        inputs: optional (T,) or (T, d) input sequence, drawn as a grey strip above the raster (one more
            axes; with ``ax``, appended above it).
        module_labels: n labels (default ``M0, M1, ...``); ``input_label``: the strip's label.
        t_marker: optional time step to outline.
    """
    m = _to_numpy("masks", masks)
    _check_ndim("masks", m, 2, "(T, n)")
    if m.dtype != np.bool_ and not np.isin(m, (0, 1)).all():
        raise ValueError(f"masks: expected a bool (or 0/1) array of shape (T, n), got dtype {m.dtype}")
    m = m.astype(bool)
    t_len, n = m.shape
    labels = _labels("module_labels", module_labels, n, _module_labels(n))
    strip = None
    if inputs is not None:
        strip = _to_numpy("inputs", inputs)
        if strip.ndim not in (1, 2) or strip.shape[0] != t_len or 0 in strip.shape:
            raise ValueError(
                f"inputs: expected shape ({t_len},) or ({t_len}, d) (T from masks), got {strip.shape}"
            )
    if t_marker is not None:
        t_marker = _check_int("t_marker", t_marker, 0, t_len - 1)
    if ax is None and strip is not None:  # a new figure, the strip above the raster
        fig = _figure(figsize)
        height = 1 if strip.ndim == 1 else min(3, strip.shape[1])
        top, ax = fig.subplots(2, 1, sharex=True, height_ratios=[height, max(n, 2)])
    else:
        fig, ax = _new_axes(ax, figsize)
        top = None
        if strip is not None:
            from mpl_toolkits.axes_grid1 import make_axes_locatable

            top = make_axes_locatable(ax).append_axes("top", size="20%", pad=0.08, sharex=ax)
    _draw_activity(ax, top, m, strip, labels, t_marker, title, input_label)
    return fig


def _draw_activity(
    ax: Axes,
    top: Axes | None,
    masks: np.ndarray,
    strip: np.ndarray | None,
    labels: list[str],
    t_marker: int | None,
    title: str,
    input_label: str,
) -> None:
    """The (T, n) masks as n rows x T columns on ``ax``, step ``t_marker`` outlined, and the inputs as a grey
    strip on ``top``, which then carries the title."""
    ax.imshow(
        masks.T.astype(np.float64), cmap=ACTIVITY_CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest"
    )
    n = masks.shape[1]
    ax.set_yticks(range(n), labels)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step t")
    ax.set_yticks(np.arange(-0.5, n), minor=True)  # thin white lines between modules
    ax.grid(which="minor", axis="y", color="white", linewidth=1.0)
    ax.tick_params(which="both", axis="y", length=0)
    if t_marker is not None:
        ax.add_patch(Rectangle((t_marker - 0.5, -0.5), 1, n, fill=False, edgecolor="#d62728", linewidth=2))
    if top is None:
        ax.set_title(title)
        return
    strip = strip[:, None] if strip.ndim == 1 else strip
    top.imshow(strip.T.astype(np.float64), cmap="Greys", aspect="auto", interpolation="nearest")
    if strip.shape[1] == 1:
        top.set_yticks([0], [input_label])
    else:
        top.set_yticks([])
        top.set_ylabel(input_label, rotation=0, ha="right", va="center")
    top.tick_params(axis="both", length=0, labelbottom=False)
    top.set_title(title)


# ------------------------------------------------------------------------------------ a trace, step by step


def _trace_arrays(trace: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """masks (B, T, n) bool, input_attn (B, T, n, 1+m), comm_attn (B, T, H, n, n) as numpy; validated."""
    try:
        masks, input_attn, comm_attn = trace.masks, trace.input_attn, trace.comm_attn
    except AttributeError:
        raise ValueError(
            "trace: expected a minirims.model.Trace (masks, input_attn, comm_attn), "
            f"got {type(trace).__name__}"
        ) from None
    masks = _to_numpy("trace.masks", masks)
    _check_ndim("trace.masks", masks, 3, "(B, T, n)")
    if masks.dtype != np.bool_:
        raise ValueError(f"trace.masks: expected dtype bool, got {masks.dtype}")
    b, t_len, n = masks.shape
    input_attn = _to_numpy("trace.input_attn", input_attn)
    if input_attn.ndim != 4 or input_attn.shape[:3] != (b, t_len, n) or input_attn.shape[3] < 2:
        raise ValueError(f"trace.input_attn: expected shape ({b}, {t_len}, {n}, 1+m), got {input_attn.shape}")
    comm_attn = _to_numpy("trace.comm_attn", comm_attn)
    if comm_attn.ndim != 5 or comm_attn.shape[:2] != (b, t_len) or comm_attn.shape[3:] != (n, n):
        raise ValueError(
            f"trace.comm_attn: expected shape ({b}, {t_len}, H, {n}, {n}), got {comm_attn.shape}"
        )
    return masks, input_attn, comm_attn


def show_step(
    trace: Any,
    example: int,
    t: int,
    *,
    inputs: Any | None = None,
    slot_labels: Sequence[str] | None = None,
    figsize: tuple[float, float] = (10.0, 3.0),
) -> Figure:
    """Draw time step ``t`` (in [0, T)) of sequence ``example`` (in [0, B)) of a RIM trace.

    Three panels: the activity raster of the whole sequence with step ``t`` outlined, the input attention at
    ``t`` (modules x [null, inputs]) and the communication attention at ``t`` averaged over heads (reading
    module x read module). Active modules are bold blue; in the last panel the rows of inactive modules are
    faded, because an inactive module discards what it reads.

    Args:
        trace: a :class:`~minirims.model.Trace` with masks (B, T, n) bool, input_attn (B, T, n, 1+m) and
            comm_attn (B, T, H, n, n), e.g. from ``RIM(...)(x, trace=True)[2]``.
        inputs: optional (B, T) or (B, T, d) inputs, drawn as a strip above the raster (one more axes).
        slot_labels: 1+m labels for the input slots (default ``null, x`` or ``null, x1, ...``).
    """
    masks, input_attn, comm_attn = _trace_arrays(trace)
    b, t_len, n = masks.shape
    example = _check_int("example", example, 0, b - 1)
    t = _check_int("t", t, 0, t_len - 1)
    slots = _labels("slot_labels", slot_labels, input_attn.shape[-1], _slot_labels(input_attn.shape[-1]))
    strip = None
    if inputs is not None:
        strip = _to_numpy("inputs", inputs)
        if strip.ndim not in (2, 3) or strip.shape[:2] != (b, t_len):
            raise ValueError(f"inputs: expected shape ({b}, {t_len}) or ({b}, {t_len}, d), got {strip.shape}")
        strip = strip[example]
    fig = _figure(figsize)
    grid = fig.add_gridspec(1, 3, width_ratios=[2.2, 1.0, 1.3])
    ax_strip = None
    if strip is None:
        ax_raster = fig.add_subplot(grid[0])
    else:
        height = 1 if strip.ndim == 1 else min(3, strip.shape[1])
        left = grid[0].subgridspec(2, 1, height_ratios=[height, max(n, 2)], hspace=0.02)
        ax_raster = fig.add_subplot(left[1])
        ax_strip = fig.add_subplot(left[0], sharex=ax_raster)
    labels, active = _module_labels(n), masks[example, t]
    title = f"example {example}: active modules"
    _draw_activity(ax_raster, ax_strip, masks[example], strip, labels, t, title, "input")
    ax_in = fig.add_subplot(grid[1])
    _heatmap(ax_in, input_attn[example, t], labels, slots)
    ax_in.set(title=f"input attention, t={t}", xlabel="slot")
    _mark_active_rows(ax_in, active)
    ax_comm = fig.add_subplot(grid[2])
    comm = comm_attn[example, t].mean(axis=0)
    image = _heatmap(ax_comm, comm, labels, labels)
    image.set_alpha(np.where(active[:, None], 1.0, 0.3) * np.ones_like(comm))
    ax_comm.set(title=f"communication, t={t}", xlabel="reads from module")
    _mark_active_rows(ax_comm, active)
    return fig


def step_explorer(
    trace: Any,
    *,
    inputs: Any | None = None,
    slot_labels: Sequence[str] | None = None,
    example: int = 0,
    t: int = 0,
    figsize: tuple[float, float] = (10.0, 3.0),
) -> Any:
    """An ipywidgets explorer of a RIM trace: an example ``Dropdown`` and a time-step ``IntSlider`` (starting
    at ``example`` and ``t``) above an ``Output`` holding :func:`show_step`'s figure (same arguments).

    Returns an ``ipywidgets.VBox([HBox([dropdown, slider]), output])``: display it, or leave it as the last
    expression of a cell.
    """
    show_step(trace, example, t, inputs=inputs, slot_labels=slot_labels, figsize=figsize)  # validates
    b, t_len = trace.masks.shape[:2]
    widgets = importlib.import_module("ipywidgets")
    display = importlib.import_module("IPython.display").display
    picker = widgets.Dropdown(
        options=[(f"example {i}", i) for i in range(b)], value=example, description="example"
    )
    slider = widgets.IntSlider(
        value=t, min=0, max=t_len - 1, description="t", continuous_update=False, layout={"width": "420px"}
    )
    out = widgets.Output()

    def draw(_change: Any = None) -> None:
        fig = show_step(
            trace, picker.value, slider.value, inputs=inputs, slot_labels=slot_labels, figsize=figsize
        )
        with out:
            out.clear_output(wait=True)
            display(fig)

    picker.observe(draw, names="value")
    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([picker, slider]), out])


# ----------------------------------------------------------- drawn ideas: competition, communication, a step


def plot_competition(
    scores: Any,
    k: int,
    slot_labels: Sequence[str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 3.0),
) -> Figure:
    """The competition of one step in three panels: the scores (null column outlined), their softmax over the
    slots (the winners' rows in bold blue), and a bar per module of its attention to the null slot, the k
    smallest (the winners) in blue.

    Args:
        scores: (n, 1+m) scores ``q_i . k_j / sqrt(d_k)`` of every module over [null, x_1..x_m], the null
            slot first (its column is exactly 0 when keys have no bias).
        k: how many modules win (1 <= k <= n).
        slot_labels: 1+m labels (default ``null, x`` or ``null, x1, ...``).
    """
    s = _to_numpy("scores", scores).astype(np.float64)
    _check_ndim("scores", s, 2, "(n, 1+m)")
    n, slots = s.shape
    if slots < 2:
        raise ValueError(
            f"scores: expected at least 2 columns (the null slot and one input), got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: expected finite values")
    k = _check_int("k", k, 1, n, " (the number of active modules)")
    cols = _labels("slot_labels", slot_labels, slots, _slot_labels(slots))
    z = np.exp(s - s.max(axis=-1, keepdims=True))
    attn = z / z.sum(axis=-1, keepdims=True)
    null = attn[:, 0]
    winners = np.zeros(n, dtype=bool)
    winners[np.argsort(null, kind="stable")[:k]] = True
    rows = _module_labels(n)

    fig = _figure(figsize)
    ax_s, ax_a, ax_n = fig.subplots(1, 3, gridspec_kw={"width_ratios": [slots, slots, 3]})
    bound = max(1e-9, float(np.abs(s).max()))
    _heatmap(ax_s, s, rows, cols, -bound, bound, cmap="RdBu_r", text_color="black")
    ax_s.set_title("1. scores q·k/√d\n(null column: exactly 0)", fontsize=9)
    ax_s.set_ylabel("module")
    _heatmap(ax_a, attn, rows, cols)
    _mark_active_rows(ax_a, winners)
    ax_a.set_title("2. softmax over the slots\n(one row per module)", fontsize=9)
    for ax in (ax_s, ax_a):
        ax.add_patch(Rectangle((-0.5, -0.5), 1, n, fill=False, ec=_NULL_COLOR, lw=2))
    ax_n.barh(range(n), null, color=[ACTIVE_COLOR if w else INACTIVE_COLOR for w in winners])
    ax_n.set_yticks(range(n), rows)
    _mark_active_rows(ax_n, winners)
    ax_n.invert_yaxis()
    ax_n.set_xlim(0, 1)
    ax_n.axvline(np.sort(null)[k - 1], color=_NULL_COLOR, ls="--", lw=1)
    ax_n.set_xlabel("attention to null")
    ax_n.set_title(f"3. top-k: the {k} smallest\nwin (blue)", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _node(ax: Axes, x: float, y: float, text: str, color: str, width: float = 0.7) -> None:
    box = FancyBboxPatch(
        (x - width / 2, y - 0.22), width, 0.44, boxstyle="round,pad=0.04", fc=color, ec="0.25"
    )
    ax.add_patch(box)
    ax.text(
        x, y, text, ha="center", va="center", fontsize=8, color="white" if color == ACTIVE_COLOR else "black"
    )


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], **style: Any) -> None:
    props = {"arrowstyle": "-|>", "mutation_scale": 9, "lw": 1.0, "color": "0.3", "shrinkA": 0, "shrinkB": 0}
    ax.add_patch(FancyArrowPatch(start, end, **{**props, **style}))


def plot_communication(
    attn: Any,
    mask: Any,
    gate: Any | None = None,
    title: str = "communication: active modules read from all modules",
    figsize: tuple[float, float] = (7.0, 3.2),
) -> Figure:
    """The communication of one step as a graph: module j (top) -> module i (bottom), width ~ attn[i, j].

    Args:
        attn: (n, n) attention of reading module i (row) over all modules j (column), e.g. the mean over
            heads; rows sum to 1.
        mask: (n,) bool, the active modules. Only they read (their arrows are drawn, in blue); the inactive
            modules keep their state (a grey dashed line straight down), but every module can be read.
        gate: optional (n,) mean gate sigma(g(a)) per module, written under the readers.
    """
    w = _to_numpy("attn", attn).astype(np.float64)
    _check_ndim("attn", w, 2, "(n, n)")
    n = w.shape[0]
    if w.shape != (n, n):
        raise ValueError(f"attn: expected a square (n, n) array, got shape {w.shape}")
    if np.any(w < -1e-6) or not np.all(np.isfinite(w)):
        raise ValueError("attn: expected finite, non-negative attention weights")
    active = _to_numpy("mask", mask)
    if active.shape != (n,) or not np.isin(active, (0, 1)).all():
        raise ValueError(f"mask: expected a bool array of shape ({n},), got shape {active.shape}")
    active = active.astype(bool)
    gates = None if gate is None else _to_numpy("gate", gate).astype(np.float64)
    if gates is not None and gates.shape != (n,):
        raise ValueError(f"gate: expected an array of shape ({n},), got shape {gates.shape}")
    fig, ax = _new_axes(None, figsize)
    top, bottom = 2.0, 0.4
    scale = 5.0 / max(1e-9, float(w[active].max())) if active.any() else 0.0
    for i in range(n):
        if not active[i]:
            _arrow(ax, (i, top - 0.25), (i, bottom + 0.25), color=INACTIVE_COLOR, ls="--")
            continue
        for j in range(n):
            if w[i, j] * scale >= 0.15:
                alpha = 0.35 + 0.6 * w[i, j] / max(1e-9, float(w[i].max()))
                style = {"color": ACTIVE_COLOR, "lw": w[i, j] * scale, "alpha": alpha, "arrowstyle": "-"}
                _arrow(ax, (j, top - 0.25), (i, bottom + 0.25), **style)
    for i in range(n):
        _node(ax, i, top, f"h̃{i}", "#e8e8e8")
        _node(ax, i, bottom, f"M{i}", ACTIVE_COLOR if active[i] else "#f2f2f2")
        below = ("reads" if gates is None else f"gate {gates[i]:.2f}") if active[i] else "keeps h̃"
        ax.text(i, bottom - 0.4, below, ha="center", va="top", fontsize=7, color="0.3")
    ax.text(-0.6, top + 0.45, "every module offers keys and values", fontsize=8, color="0.3")
    ax.text(
        -0.6, bottom - 0.85, "active modules (blue) read; line width = attention", fontsize=8, color="0.3"
    )
    ax.set(xlim=(-0.7, n - 0.3), ylim=(bottom - 1.0, top + 0.7))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return fig


def plot_rim_step(
    n: int = 4, active: Sequence[int] = (0, 2), figsize: tuple[float, float] = (9.0, 4.2)
) -> Figure:
    """One RIM step of ``n`` modules (2 to 8), ``active`` the indices of the active ones, as a diagram (after
    Figure 1 of Goyal et al., arXiv 1909.10893).

    Left to right: the input and the null slot; the competition (the winners marked); each module's own
    recurrent cell, run by the active modules; the communication among modules (active readers only); the
    new state, where inactive modules carry their old state over.
    """
    n = _check_int("n", n, 2, 8)
    try:
        chosen = [int(a) for a in active]
    except TypeError as err:
        raise ValueError(
            f"active: expected a sequence of module indices, got {type(active).__name__}"
        ) from err
    if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= a < n for a in chosen):
        raise ValueError(f"active: expected 1 to {n} distinct module indices in [0, {n - 1}], got {chosen}")
    mask = np.isin(np.arange(n), chosen)
    fig, ax = _new_axes(None, figsize)
    ys = np.linspace(n - 1, 0, n) * 0.75
    mid = float(ys.mean())
    col = {"in": 0.0, "h": 2.0, "cell": 4.4, "comm": 6.6, "out": 8.6}
    _node(ax, col["in"], mid + 0.45, "x_t", "#fde0c5", 0.8)
    _node(ax, col["in"], mid - 0.45, "null 0", "#f2f2f2", 0.8)
    for i, y in enumerate(ys):
        on = mask[i]
        _node(ax, col["h"], y, f"h{i}", "#f2f2f2", 0.6)
        _node(ax, col["cell"], y, f"LSTM{i}", "#cfe8d5" if on else "#f2f2f2", 1.3)
        _node(ax, col["out"], y, f"h{i}′", ACTIVE_COLOR if on else "#f2f2f2", 0.6)
        x_in, to_h = col["in"] + 0.42, (col["h"] - 0.32, y)
        _arrow(ax, (x_in, mid - 0.45), to_h, color=INACTIVE_COLOR, lw=0.6, ls=":", arrowstyle="-")
        # competition: every module queries the input; winners read it
        style = {"color": ACTIVE_COLOR, "lw": 1.6} if on else {"color": INACTIVE_COLOR, "lw": 0.8}
        _arrow(ax, (x_in, mid + 0.45), to_h, arrowstyle="-", **style)
        if on:
            _arrow(ax, (col["h"] + 0.32, y), (col["cell"] - 0.67, y), color=ACTIVE_COLOR, lw=1.5)
            _arrow(ax, (col["cell"] + 0.67, y), (col["out"] - 0.32, y), color=ACTIVE_COLOR, lw=1.5)
        else:
            bend = {"connectionstyle": "arc3,rad=-0.12", "shrinkA": 2, "shrinkB": 2}
            _arrow(ax, (col["h"] + 0.32, y), (col["out"] - 0.32, y), color=INACTIVE_COLOR, ls="--", **bend)
    # communication: active modules read from all modules (after their cells)
    for i in np.flatnonzero(mask):
        for j in range(n):
            if i != j:
                _arrow(
                    ax, (col["comm"], ys[j]), (col["comm"] + 0.5, ys[i]), color="#7a5aa6", lw=0.8, alpha=0.6
                )
    top = float(ys.max()) + 0.7
    for key, text in [
        ("in", "input + null"),
        ("h", "1. competition:\nk least-null win"),
        ("cell", "2. independent\ndynamics"),
        ("comm", "3. communication\n(active read all)"),
        ("out", "4. masked\nupdate"),
    ]:
        x = col[key] + (0.25 if key == "comm" else 0.0)
        ax.text(x, top, text, ha="center", va="bottom", fontsize=8, fontweight="bold")
    note = "inactive modules (grey): the result of their cell is unused, the state is carried over (dashed)"
    ax.text(col["h"], float(ys.min()) - 0.75, note, ha="left", fontsize=8, color="0.35")
    ax.set(xlim=(-0.7, col["out"] + 0.6), ylim=(float(ys.min()) - 0.95, top + 0.55))
    ax.axis("off")
    return fig
