"""Figures and the step explorer: right number of axes and images, input validation, a widget that redraws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minirims.course import viz  # noqa: E402
from minirims.model import RIM, Trace  # noqa: E402

B, T, N, M, H = 3, 7, 5, 2, 2


@pytest.fixture(scope="module")
def trace() -> Trace:
    torch.manual_seed(0)
    rim = RIM(
        4, n_modules=N, k_active=2, d_hidden=6, input_d_k=4, input_d_v=5, comm_heads=H, comm_d_k=3, comm_d_v=3
    )
    with torch.no_grad():
        _, _, record = rim.eval()(torch.randn(B, T, M, 4), trace=True)
    return record


def images(fig: Figure) -> int:
    return sum(len(ax.images) for ax in fig.axes)


def test_plot_attention_heatmap_with_and_without_colorbar():
    w = torch.softmax(torch.randn(4, 3), dim=-1)
    fig = viz.plot_attention(w, col_labels=["null", "a", "b"], title="input attention")
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and images(fig) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "input attention"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["null", "a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["M0", "M1", "M2", "M3"]
    assert len(ax.texts) == 12  # small maps are annotated
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy(), rtol=1e-6)
    fig = viz.plot_attention(np.eye(12), colorbar=False)
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) == 0  # 144 cells: no numbers


def test_plot_attention_into_given_axes():
    fig = Figure()
    axes = fig.subplots(1, 2)
    out = viz.plot_attention(np.full((2, 2), 0.5), ax=axes[1], colorbar=False)
    assert out is fig and len(axes[1].images) == 1 and len(axes[0].images) == 0


def test_plot_attention_validation():
    with pytest.raises(
        ValueError, match=r"weights: expected a 2-d array of shape \(R, C\), got shape \(2, 3, 4\)"
    ):
        viz.plot_attention(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="col_labels: expected 3 labels, got 2"):
        viz.plot_attention(np.zeros((2, 3)), col_labels=["a", "b"])
    with pytest.raises(ValueError, match="row_labels: expected a sequence of 2 labels, got a string"):
        viz.plot_attention(np.zeros((2, 3)), row_labels="ab")
    with pytest.raises(ValueError, match="ax: expected a matplotlib Axes or None, got str"):
        viz.plot_attention(np.zeros((2, 3)), ax="left")


def test_plot_activity_raster_and_input_strip(trace):
    masks = trace.masks[0]  # (T, n)
    fig = viz.plot_activity(masks)
    assert len(fig.axes) == 1 and images(fig) == 1
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), masks.T.numpy().astype(float))
    fig = viz.plot_activity(masks, inputs=np.arange(T), t_marker=3, title="who wins")
    assert len(fig.axes) == 2 and images(fig) == 2
    assert fig.axes[0].get_title() == "who wins"  # title above the input strip
    fig = viz.plot_activity(masks.int(), inputs=torch.randn(T, 4))
    assert len(fig.axes) == 2


def test_plot_activity_into_given_axes_appends_strip():
    fig = Figure()
    ax = fig.add_subplot()
    out = viz.plot_activity(np.ones((4, 3), dtype=bool), inputs=np.zeros(4), ax=ax)
    assert out is fig and len(fig.axes) == 2


def test_plot_activity_validation():
    with pytest.raises(
        ValueError, match=r"masks: expected a 2-d array of shape \(T, n\), got shape \(3, 4, 5\)"
    ):
        viz.plot_activity(np.zeros((3, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="masks: expected a bool .* got dtype float64"):
        viz.plot_activity(np.full((3, 4), 0.5))
    with pytest.raises(
        ValueError, match=r"inputs: expected shape \(3,\) or \(3, d\) \(T from masks\), got \(4,\)"
    ):
        viz.plot_activity(np.zeros((3, 4), dtype=bool), inputs=np.zeros(4))
    with pytest.raises(ValueError, match=r"t_marker: expected an int in \[0, 2\], got 3"):
        viz.plot_activity(np.zeros((3, 4), dtype=bool), t_marker=3)
    with pytest.raises(ValueError, match="module_labels: expected 4 labels, got 1"):
        viz.plot_activity(np.zeros((3, 4), dtype=bool), module_labels=["a"])


def test_show_step_panels(trace):
    fig = viz.show_step(trace, 1, 4)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and images(fig) == 3
    raster, inp, comm = fig.axes
    np.testing.assert_allclose(inp.images[0].get_array(), trace.input_attn[1, 4].numpy(), rtol=1e-6)
    np.testing.assert_allclose(comm.images[0].get_array(), trace.comm_attn[1, 4].mean(0).numpy(), rtol=1e-5)
    assert [t.get_text() for t in inp.get_xticklabels()] == ["null", "x1", "x2"]
    active = trace.masks[1, 4].tolist()
    weights = [label.get_fontweight() for label in inp.get_yticklabels()]
    assert [w == "bold" for w in weights] == active
    assert "t=4" in inp.get_title()
    fig = viz.show_step(trace, 0, 0, inputs=torch.randn(B, T), slot_labels=["null", "left", "right"])
    assert len(fig.axes) == 4 and images(fig) == 4


def test_show_step_validation(trace):
    with pytest.raises(ValueError, match=r"example: expected an int in \[0, 2\], got 3"):
        viz.show_step(trace, 3, 0)
    with pytest.raises(ValueError, match=r"t: expected an int in \[0, 6\], got -1"):
        viz.show_step(trace, 0, -1)
    with pytest.raises(ValueError, match="trace: expected a minirims.model.Trace"):
        viz.show_step((1, 2, 3), 0, 0)
    bad = trace._replace(masks=trace.masks.float())
    with pytest.raises(ValueError, match="trace.masks: expected dtype bool, got float32"):
        viz.show_step(bad, 0, 0)
    bad = trace._replace(input_attn=trace.input_attn[:, :-1])
    with pytest.raises(
        ValueError, match=r"trace.input_attn: expected shape \(3, 7, 5, 1\+m\), got \(3, 6, 5, 3\)"
    ):
        viz.show_step(bad, 0, 0)
    bad = trace._replace(comm_attn=trace.comm_attn[..., :-1])
    with pytest.raises(ValueError, match=r"trace.comm_attn: expected shape \(3, 7, H, 5, 5\)"):
        viz.show_step(bad, 0, 0)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(3, 7\) or \(3, 7, d\), got \(7,\)"):
        viz.show_step(trace, 0, 0, inputs=np.zeros(T))


def test_step_explorer_builds_widget_and_redraws(trace, monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    calls = []
    real = viz.show_step

    def spy(tr, example, t, **kwargs):
        calls.append((example, t))
        return real(tr, example, t, **kwargs)

    monkeypatch.setattr(viz, "show_step", spy)
    box = viz.step_explorer(trace, t=2)
    assert isinstance(box, widgets.VBox)
    controls, out = box.children
    picker, slider = controls.children
    assert isinstance(slider, widgets.IntSlider) and (slider.min, slider.max, slider.value) == (0, T - 1, 2)
    assert isinstance(picker, widgets.Dropdown) and [v for _, v in picker.options] == list(range(B))
    assert isinstance(out, widgets.Output)
    assert calls[-1] == (0, 2)
    slider.value = 5
    assert calls[-1] == (0, 5)
    picker.value = 2
    assert calls[-1] == (2, 5)


def test_step_explorer_validation(trace):
    with pytest.raises(ValueError, match=r"t: expected an int in \[0, 6\], got 7"):
        viz.step_explorer(trace, t=7)
    with pytest.raises(ValueError, match="trace: expected a minirims.model.Trace"):
        viz.step_explorer(None)


# ------------------------------------------------------------------------- drawn ideas (03, 04, 05)


def test_plot_competition_three_panels_and_winners():
    scores = torch.tensor([[0.0, 2.0], [0.0, -1.0], [0.0, 0.5], [0.0, 1.0]])
    fig = viz.plot_competition(scores, k=2, title="one step")
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and images(fig) == 2
    bars = fig.axes[2].patches
    blue = [
        i
        for i, bar in enumerate(bars)
        if np.allclose(bar.get_facecolor()[:3], matplotlib.colors.to_rgb(viz.ACTIVE_COLOR))
    ]
    assert blue == [0, 3]  # the two highest input scores = the two smallest null attentions
    assert fig._suptitle.get_text() == "one step"
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["null", "x"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": np.zeros((3,)), "k": 1}, "scores: expected a 2-d array"),
        ({"scores": np.zeros((3, 1)), "k": 1}, "at least 2 columns"),
        ({"scores": np.full((3, 2), np.nan), "k": 1}, "finite"),
        ({"scores": np.zeros((3, 2)), "k": 4}, r"k: expected an int in \[1, 3\]"),
        ({"scores": np.zeros((3, 2)), "k": True}, "k: expected"),
        ({"scores": np.zeros((3, 2)), "k": 1, "slot_labels": ["a"]}, "slot_labels: expected 2 labels"),
    ],
)
def test_plot_competition_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_competition(**kwargs)


def test_plot_communication_draws_readers_only():
    attn = torch.softmax(torch.randn(4, 4), dim=-1)
    mask = torch.tensor([True, False, True, False])
    fig = viz.plot_communication(attn, mask, gate=torch.rand(4))
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("keeps h̃") == 2 and sum(t.startswith("gate ") for t in texts) == 2


@pytest.mark.parametrize(
    ("attn", "mask", "gate", "message"),
    [
        (np.ones((3, 4)) / 4, [1, 0, 1], None, "square"),
        (-np.ones((3, 3)), [1, 0, 1], None, "non-negative"),
        (np.ones((3, 3)) / 3, [1, 0], None, r"mask: expected a bool array of shape \(3,\)"),
        (np.ones((3, 3)) / 3, [1, 0, 2], None, "mask: expected a bool"),
        (np.ones((3, 3)) / 3, [1, 0, 1], [0.5], r"gate: expected an array of shape \(3,\)"),
    ],
)
def test_plot_communication_validation(attn, mask, gate, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_communication(attn, np.array(mask), gate=gate)


def test_plot_rim_step_diagram():
    fig = viz.plot_rim_step(6, active=[1, 3, 4, 5])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.startswith("LSTM") for t in texts) == 6
    assert any("masked" in t for t in texts) and any("competition" in t for t in texts)


@pytest.mark.parametrize(
    ("n", "active", "message"),
    [
        (1, (0,), r"n: expected an int in \[2, 8\]"),
        (9, (0,), "n: expected"),
        (4, (), "active: expected 1 to 4 distinct"),
        (4, (0, 0), "distinct"),
        (4, (4,), "distinct module indices in"),
        (4, 3, "sequence of module indices"),
    ],
)
def test_plot_rim_step_validation(n, active, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_rim_step(n, active)
