"""Figures and ipywidgets explorers for the course.

Every function here returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``. New figures
are closed in pyplot as soon as they are made, so a notebook cell that ends with ``viz.plot_attention(w)``
shows the figure exactly once (as the cell's value) and no figure piles up in pyplot's registry. When you pass
``ax=`` (an axes from ``plt.subplots``), the function draws there and returns ``ax.figure``.

- :func:`plot_attention`: a heatmap of attention weights, e.g. modules x input slots.
- :func:`plot_activity`: which modules are active at each time step (a modules x time raster).
- :func:`show_step`: one time step of a :class:`~minirims.model.Trace`: activity, input attention,
  communication attention.
- :func:`step_explorer`: an ipywidgets explorer (time-step slider, example picker) that calls
  :func:`show_step`.

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
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_attention", "plot_activity", "show_step", "step_explorer"]

ACTIVE_COLOR = "#1f5fa8"
ACTIVITY_CMAP = ListedColormap(["#f2f2f2", ACTIVE_COLOR])
ATTENTION_CMAP = "viridis"
_ANNOTATE_MAX_CELLS = 100  # write the numbers into heatmaps up to this many cells


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array; ValueError naming ``name`` otherwise."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        x = x.numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected an array or tensor, got {type(x).__name__}") from err
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a numeric array or tensor, got {type(x).__name__}")
    return arr


def _check_ndim(name: str, arr: np.ndarray, ndim: int, shape: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array of shape {shape}, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name}: expected a non-empty array of shape {shape}, got shape {arr.shape}")


def _check_labels(name: str, labels: Sequence[str] | None, size: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ValueError(f"{name}: expected a sequence of {size} labels, got a string")
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(f"{name}: expected {size} labels, got {len(labels)}")
    return labels


def _figure(figsize: tuple[float, float]) -> Figure:
    """A new Figure that is *not* left open in pyplot, so a notebook shows it once: when it is returned.

    It is made by pyplot (which loads the notebook's backend and, in Jupyter, the inline display of
    figures) and closed at once; a closed figure can still be displayed, saved and drawn on.
    """
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


def _module_labels(n: int) -> list[str]:
    return [f"M{i}" for i in range(n)]


def _slot_labels(n_slots: int) -> list[str]:
    if n_slots == 2:
        return ["null", "x"]
    return ["null"] + [f"x{j}" for j in range(1, n_slots)]


def _heatmap(
    ax: Axes,
    w: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    vmin: float,
    vmax: float,
    annotate: bool,
) -> Any:
    image = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(w.shape[1]), col_labels)
    ax.set_yticks(range(w.shape[0]), row_labels)
    ax.tick_params(length=0)
    if annotate:
        middle = vmin + 0.6 * (vmax - vmin)
        for (i, j), value in np.ndenumerate(w):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > middle else "white",
            )
    return image


def plot_attention(
    weights: Any,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "attention weights",
    ax: Axes | None = None,
    *,
    xlabel: str | None = "attends to",
    ylabel: str | None = "module",
    vmin: float = 0.0,
    vmax: float | None = 1.0,
    annotate: bool | None = None,
    colorbar: bool = True,
    active_rows: Any | None = None,
    figsize: tuple[float, float] = (5.0, 3.0),
) -> Figure:
    """Heatmap of attention weights: one row per query (e.g. module), one column per key (e.g. slot).

    Args:
        weights: (R, C) weights, e.g. a module's attention over [null, inputs] (n, 1+m) or the communication
            attention (n, n). Rows usually sum to 1.
        row_labels: R labels (default ``M0, M1, ...``).
        col_labels: C labels (default ``0, 1, ...``).
        title: axes title.
        ax: draw into this axes; a new figure is made when None.
        xlabel, ylabel: axis labels (None for none).
        vmin, vmax: colour scale (``vmax=None``: the maximum of ``weights``).
        annotate: write the values into the cells (default: when there are at most 100 cells).
        colorbar: add a colour bar (one more axes in the figure).
        active_rows: optional (R,) bool, e.g. the active modules; their labels are drawn in bold blue.
        figsize: size of a new figure.

    Returns:
        The Figure.
    """
    w = _to_numpy("weights", weights).astype(np.float64)
    _check_ndim("weights", w, 2, "(R, C)")
    rows = _check_labels("row_labels", row_labels, w.shape[0]) or _module_labels(w.shape[0])
    cols = _check_labels("col_labels", col_labels, w.shape[1]) or [str(j) for j in range(w.shape[1])]
    active = None
    if active_rows is not None:
        active = _to_numpy("active_rows", active_rows)
        if active.shape != (w.shape[0],) or not np.isin(active, (0, 1)).all():
            raise ValueError(
                f"active_rows: expected a bool array of shape ({w.shape[0]},), got {active.shape}"
            )
    top = float(np.nanmax(w)) if vmax is None else float(vmax)
    if not top > vmin:
        top = vmin + 1.0
    fig, ax = _new_axes(ax, figsize)
    annotate = w.size <= _ANNOTATE_MAX_CELLS if annotate is None else annotate
    image = _heatmap(ax, w, rows, cols, vmin, top, annotate)
    if active is not None:
        _mark_active_rows(ax, active.astype(bool))
    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    return fig


def _raster(ax: Axes, masks: np.ndarray, labels: list[str]) -> Any:
    """Draw a (T, n) bool mask as n rows (modules) x T columns (time)."""
    image = ax.imshow(
        masks.T.astype(np.float64), cmap=ACTIVITY_CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest"
    )
    ax.set_yticks(range(masks.shape[1]), labels)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step t")
    ax.tick_params(axis="y", length=0)
    # thin white lines between modules make rows easy to follow
    ax.set_yticks(np.arange(-0.5, masks.shape[1]), minor=True)
    ax.grid(which="minor", axis="y", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    return image


def _input_strip(ax: Axes, inputs: np.ndarray, label: str) -> None:
    strip = inputs[:, None] if inputs.ndim == 1 else inputs
    ax.imshow(strip.T.astype(np.float64), cmap="Greys", aspect="auto", interpolation="nearest")
    ax.set_yticks([0] if strip.shape[1] == 1 else [], [label] if strip.shape[1] == 1 else [])
    if strip.shape[1] > 1:
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    ax.tick_params(axis="both", length=0, labelbottom=False)


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
        masks: (T, n) bool (or 0/1), True where module i is active at step t. For a batch, pass one
            example: ``trace.masks[b]``.
        inputs: optional (T,) or (T, d) input sequence, drawn as a grey strip above the raster so you can see
            what the modules were reacting to (adds one axes).
        title: title of the figure.
        module_labels: n labels (default ``M0, M1, ...``).
        input_label: label of the input strip.
        t_marker: optional time step to outline.
        ax: draw into this axes (the input strip is appended above it); a new figure when None.
        figsize: size of a new figure.

    Returns:
        The Figure (1 axes, or 2 with ``inputs``).
    """
    m = _to_numpy("masks", masks)
    _check_ndim("masks", m, 2, "(T, n)")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"masks: expected a bool (or 0/1) array of shape (T, n), got dtype {m.dtype}")
        m = m.astype(bool)
    t_len, n = m.shape
    labels = _check_labels("module_labels", module_labels, n) or _module_labels(n)
    strip = None
    if inputs is not None:
        strip = _to_numpy("inputs", inputs)
        if strip.ndim not in (1, 2) or strip.shape[0] != t_len or 0 in strip.shape:
            raise ValueError(
                f"inputs: expected shape ({t_len},) or ({t_len}, d) (T from masks), got {strip.shape}"
            )
    if t_marker is not None and (isinstance(t_marker, bool) or not 0 <= int(t_marker) < t_len):
        raise ValueError(f"t_marker: expected an int in [0, {t_len - 1}], got {t_marker!r}")
    if ax is None:
        fig = _figure(figsize)
        if strip is not None:
            height = 1 if strip.ndim == 1 else min(3, strip.shape[1])
            top, ax = fig.subplots(2, 1, sharex=True, height_ratios=[height, max(n, 2)])
        else:
            top, ax = None, fig.add_subplot()
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
    _raster(ax, masks, labels)
    if t_marker is not None:
        n = masks.shape[1]
        ax.add_patch(Rectangle((t_marker - 0.5, -0.5), 1, n, fill=False, edgecolor="#d62728", linewidth=2))
    if top is not None and strip is not None:
        _input_strip(top, strip, input_label)
        top.set_title(title)
    else:
        ax.set_title(title)


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


def _check_index(name: str, value: Any, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < size:
        raise ValueError(f"{name}: expected an int in [0, {size - 1}], got {value!r}")
    return int(value)


def _mark_active_rows(ax: Axes, active: np.ndarray) -> None:
    """Bold, coloured tick labels for active modules."""
    for label, is_active in zip(ax.get_yticklabels(), active, strict=True):
        label.set_color(ACTIVE_COLOR if is_active else "#999999")
        label.set_fontweight("bold" if is_active else "normal")


def show_step(
    trace: Any,
    example: int,
    t: int,
    *,
    inputs: Any | None = None,
    slot_labels: Sequence[str] | None = None,
    figsize: tuple[float, float] = (10.0, 3.0),
) -> Figure:
    """Draw time step ``t`` of one example of a RIM trace.

    Three panels: (1) the activity raster of the whole sequence with step ``t`` outlined, (2) the input
    attention at ``t`` (modules x [null, inputs]), (3) the communication attention at ``t`` averaged over
    heads (reading module x read module). Active modules are bold blue in (2) and (3); the rows of inactive
    modules in (3) are faded, because an inactive module discards what it reads.

    Args:
        trace: a :class:`~minirims.model.Trace` with masks (B, T, n) bool, input_attn (B, T, n, 1+m) and
            comm_attn (B, T, H, n, n), e.g. from ``RIM(...)(x, trace=True)[2]``.
        example: which sequence of the batch, in [0, B).
        t: which time step, in [0, T).
        inputs: optional (B, T) or (B, T, d) inputs, drawn as a strip above the raster (one more axes).
        slot_labels: 1+m labels for the input slots (default ``null, x`` or ``null, x1, ...``).
        figsize: figure size.

    Returns:
        The Figure (3 axes, 4 with ``inputs``).
    """
    masks, input_attn, comm_attn = _trace_arrays(trace)
    b, t_len, n = masks.shape
    example = _check_index("example", example, b)
    t = _check_index("t", t, t_len)
    slots = _check_labels("slot_labels", slot_labels, input_attn.shape[-1]) or _slot_labels(
        input_attn.shape[-1]
    )
    strip = None
    if inputs is not None:
        strip = _to_numpy("inputs", inputs)
        if strip.ndim not in (2, 3) or strip.shape[:2] != (b, t_len):
            raise ValueError(f"inputs: expected shape ({b}, {t_len}) or ({b}, {t_len}, d), got {strip.shape}")
        strip = strip[example]
    fig = _figure(figsize)
    grid = fig.add_gridspec(1, 3, width_ratios=[2.2, 1.0, 1.3])
    if strip is None:
        ax_strip, ax_raster = None, fig.add_subplot(grid[0])
    else:
        height = 1 if strip.ndim == 1 else min(3, strip.shape[1])
        left = grid[0].subgridspec(2, 1, height_ratios=[height, max(n, 2)], hspace=0.02)
        ax_raster = fig.add_subplot(left[1])
        ax_strip = fig.add_subplot(left[0], sharex=ax_raster)
    active = masks[example, t]
    _draw_activity(
        ax_raster,
        ax_strip,
        masks[example],
        strip,
        _module_labels(n),
        t,
        f"example {example}: active modules",
        "input",
    )
    ax_in = fig.add_subplot(grid[1])
    labels = _module_labels(n)
    _heatmap(
        ax_in,
        input_attn[example, t],
        labels,
        slots,
        0.0,
        1.0,
        input_attn.shape[-1] * n <= _ANNOTATE_MAX_CELLS,
    )
    ax_in.set_title(f"input attention, t={t}")
    ax_in.set_xlabel("slot")
    _mark_active_rows(ax_in, active)
    ax_comm = fig.add_subplot(grid[2])
    comm = comm_attn[example, t].mean(axis=0)
    image = _heatmap(ax_comm, comm, labels, labels, 0.0, 1.0, n * n <= _ANNOTATE_MAX_CELLS)
    image.set_alpha(np.where(active[:, None], 1.0, 0.3) * np.ones_like(comm))
    ax_comm.set_title(f"communication, t={t}")
    ax_comm.set_xlabel("reads from module")
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
    """An ipywidgets explorer over a RIM trace: a time-step slider and an example picker above
    :func:`show_step`'s figure.

    Args:
        trace: a :class:`~minirims.model.Trace` (see :func:`show_step`).
        inputs: optional (B, T) or (B, T, d) inputs shown above the raster.
        slot_labels: 1+m input slot labels.
        example, t: where to start.
        figsize: figure size.

    Returns:
        An ``ipywidgets.VBox`` (display it, or leave it as the last expression of a cell). Its ``children``
        are the controls (``HBox`` of the example ``Dropdown`` and the ``IntSlider`` for t) and the ``Output``
        holding the figure.
    """
    masks, _, _ = _trace_arrays(trace)
    b, t_len, _ = masks.shape
    example = _check_index("example", example, b)
    t = _check_index("t", t, t_len)
    show_step(trace, example, t, inputs=inputs, slot_labels=slot_labels, figsize=figsize)  # validate early
    widgets = importlib.import_module("ipywidgets")
    display = importlib.import_module("IPython.display").display
    picker = widgets.Dropdown(
        options=[(f"example {i}", i) for i in range(b)], value=example, description="example"
    )
    slider = widgets.IntSlider(
        value=t,
        min=0,
        max=t_len - 1,
        step=1,
        description="t",
        continuous_update=False,
        layout=widgets.Layout(width="420px"),
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
