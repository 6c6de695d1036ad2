"""The core's public boundary: dtype and device against the parameters, B = 0, non-finite values, autocast.

Each check runs on every model of the core: the RIM on both paths (plain and fused, LSTM and GRU modules),
the cell, the LSTM baseline.
"""

from __future__ import annotations

import pytest
import torch

from minirims._validate import autocast_dtype, check_finite, check_like
from minirims.cell import RIMCell, RIMState
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell
from minirims.model import RIM, LSTMBaseline

SMALL = dict(
    n_modules=4, k_active=2, d_hidden=6, input_d_k=4, input_d_v=5, comm_heads=2, comm_d_k=3, comm_d_v=4
)


def boundary_rim(path: str, rnn: str = "lstm") -> RIM:
    torch.manual_seed(0)
    return RIM(5, rnn=rnn, fast=path == "fused", dropout=0.0, **SMALL).eval()


def make_cell() -> RIMCell:
    torch.manual_seed(0)
    return RIMCell(5, dropout=0.0, **SMALL).eval()


def make_lstm() -> LSTMBaseline:
    torch.manual_seed(0)
    return LSTMBaseline(5, 7)


MODELS = {
    **{
        f"rim-{rnn}-{path}": (lambda rnn=rnn, path=path: boundary_rim(path, rnn), (2, 3, 5))
        for rnn in ("lstm", "gru")
        for path in ("plain", "fused")
    },
    "cell": (make_cell, (2, 5)),
    "lstm": (make_lstm, (2, 3, 5)),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_another_dtype_is_refused_naming_both(name, dtype):
    build, shape = MODELS[name]
    model = build()
    with pytest.raises(
        ValueError, match=rf"^x: expected dtype torch.float32 \(the model's parameters\), got {dtype}$"
    ):
        model(torch.randn(*shape).to(dtype))


@pytest.mark.parametrize("name", list(MODELS))
def test_another_device_is_refused_naming_both(name):
    build, shape = MODELS[name]
    with pytest.raises(ValueError, match=r"^x: expected device cpu \(the model's parameters\), got meta$"):
        build()(torch.randn(*shape, device="meta"))


@pytest.mark.parametrize("name", list(MODELS))
def test_an_empty_batch_is_refused_by_every_model(name):
    build, shape = MODELS[name]
    empty = (0, *shape[1:])
    with pytest.raises(
        ValueError, match=rf"^x: expected a batch of at least 1 \(B >= 1\), got shape \({empty[0]}, "
    ):
        build()(torch.randn(*empty))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_refused(name, bad):
    build, shape = MODELS[name]
    x = torch.randn(*shape)
    where = (1, 2, 3) if len(shape) == 3 else (1, 3)
    x[where] = bad
    with pytest.raises(
        ValueError,
        match=rf"^x: expected finite values, got 1 NaN or infinite value\(s\) "
        rf"\(the first at index \({', '.join(map(str, where))}\): {bad}\)$",
    ):
        build()(x)


@pytest.mark.parametrize("name", ["rim-lstm-plain", "rim-lstm-fused", "cell"])
def test_a_given_state_is_checked_like_the_input(name):
    build, shape = MODELS[name]
    model = build()
    x = torch.randn(*shape)
    h = torch.zeros(2, 4, 6)
    with pytest.raises(
        ValueError,
        match=r"^state.h: expected dtype torch.float32 \(the model's parameters\), got torch.float64$",
    ):
        model(x, RIMState(h.double(), h))
    with pytest.raises(
        ValueError, match=r"^state.c: expected device cpu \(the model's parameters\), got meta$"
    ):
        model(x, RIMState(h, h.to("meta")))
    bad = h.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(
        ValueError, match=r"^state.c: expected finite values, got 1 NaN .* index \(0, 1, 2\): nan\)$"
    ):
        model(x, RIMState(h, bad))
    model(x, RIMState(h, h))  # a good state passes


def test_lstm_baseline_state_is_checked_like_the_input():
    model, x, h = make_lstm(), torch.randn(2, 3, 5), torch.zeros(2, 7)
    with pytest.raises(ValueError, match=r"^state h: expected dtype torch.float32 .*, got torch.float16$"):
        model(x, (h.half(), h))
    bad = h.clone()
    bad[1, 0] = float("inf")
    with pytest.raises(
        ValueError, match=r"^state c: expected finite values, got 1 .* index \(1, 0\): inf\)$"
    ):
        model(x, (h, bad))


def test_cell_step_checks_dtype_device_and_batch():
    cell = make_cell()
    keys, values = cell.input_attention.project_inputs(torch.randn(2, 1, 5))
    state = cell.initial_state(2)
    with pytest.raises(
        ValueError,
        match=r"^keys: expected dtype torch.float32 \(the model's parameters\), got torch.float64$",
    ):
        cell.step(keys.double(), values, state)
    with pytest.raises(
        ValueError, match=r"^values: expected device cpu \(the model's parameters\), got meta$"
    ):
        cell.step(keys, values.to("meta"), state)
    with pytest.raises(
        ValueError, match=r"^keys: expected a batch of at least 1 \(B >= 1\), got shape \(0, 1, 2, 4\)$"
    ):
        cell.step(keys[:0], values[:0], cell.initial_state(1)._replace(h=state.h[:0], c=state.c[:0]))
    with pytest.raises(ValueError, match=r"^state.h: expected dtype torch.float32 .*, got torch.bfloat16$"):
        cell.step(keys, values, state._replace(h=state.h.bfloat16()))
    h, _, _ = cell.step(keys, values, state)
    assert h.shape == (2, 4, 6)


def test_group_layers_refuse_another_dtype_or_device():
    lin = GroupLinear(3, 4, 5)
    meta = torch.randn(2, 3, 4, device="meta")
    with pytest.raises(ValueError, match=r"^x: expected device cpu \(the layer's weight\), got meta$"):
        lin(meta)  # without the check: a CPU tensor of garbage, not an error
    with pytest.raises(
        ValueError, match=r"^x: expected dtype torch.float32 \(the layer's weight\), got torch.float16$"
    ):
        lin(torch.randn(2, 3, 4).half())
    assert lin(torch.randn(0, 3, 4)).shape == (0, 3, 5)  # a layer maps an empty batch to an empty batch
    lstm, gru = GroupLSTMCell(3, 4, 5), GroupGRUCell(3, 4, 5)
    h = torch.zeros(2, 3, 5)
    with pytest.raises(
        ValueError, match=r"^state c: expected dtype torch.float32 \(the cell's weights\), got torch.float64$"
    ):
        lstm(torch.randn(2, 3, 4), (h, h.double()))
    with pytest.raises(ValueError, match=r"^h: expected device cpu \(the cell's weights\), got meta$"):
        gru(torch.randn(2, 3, 4), h.to("meta"))


@pytest.mark.parametrize("name", list(MODELS))
def test_autocast_inputs_are_accepted_and_others_named(name):
    # Under torch.autocast an input may come in autocast's dtype (an encoder that ran under autocast gives
    # bf16); the CPU stands in for CUDA here, the rule only looks at the parameters' device type.
    build, shape = MODELS[name]
    model = build()
    x = torch.randn(*shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, _ = model(x.bfloat16())
        try:
            model(x)  # the parameters' dtype is still fine: no ValueError from the boundary
        except RuntimeError as err:
            # nn.LSTM's own oneDNN kernel for a float32 input under CPU bf16 autocast is missing on some CPUs
            # (seen on an AMD EPYC without AVX-512): the boundary accepted x, torch could not run it there.
            if "primitive descriptor" not in str(err):
                raise
        with pytest.raises(
            ValueError,
            match=r"^x: expected dtype torch.float32 \(the model's parameters\) "
            r"or torch.bfloat16 \(autocast\), got torch.float16$",
        ):
            model(x.half())
    assert torch.isfinite(out.float()).all()
    with pytest.raises(ValueError, match=r"got torch.bfloat16$"):  # autocast off: refused again
        model(x.bfloat16())


def test_autocast_dtype_and_check_like_helpers():
    assert autocast_dtype("cpu") is None and autocast_dtype("meta") is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_dtype("cpu") == torch.bfloat16
        assert autocast_dtype("cuda") is None  # enabled on another device type only
    w = torch.zeros(2)
    x = torch.zeros(3, dtype=torch.float64)
    assert check_like("x", w, w) is w
    with pytest.raises(
        ValueError, match=r"^x: expected dtype torch.float32 \(the weight\), got torch.float64$"
    ):
        check_like("x", x, w, "the weight")


def test_check_finite_names_the_tensor_and_skips_none():
    check_finite(("a", torch.zeros(2)), ("b", None))
    check_finite()
    with pytest.raises(
        ValueError,
        match=r"^b: expected finite values, got 2 NaN or infinite value\(s\) "
        r"\(the first at index \(1,\): nan\)$",
    ):
        check_finite(("a", torch.zeros(2)), ("b", torch.tensor([0.0, float("nan"), float("inf")])))


def test_check_finite_reads_cpu_tensors_only(monkeypatch):
    """Reading the answer from an accelerator is a host sync per call (and a sync inside a CUDA-graph
    capture aborts it): only CPU tensors are inspected. A meta tensor stands in for a device tensor."""
    monkeypatch.setattr(torch, "isfinite", lambda t: pytest.fail("read a tensor outside CPU memory"))
    check_finite(("x", torch.full((2,), float("nan"), device="meta")))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"^x: expected finite values"):
        check_finite(("x", torch.tensor([float("nan")])))


def test_finiteness_is_checked_once_per_call_not_per_step(path, monkeypatch):
    model = boundary_rim(path)
    calls = []
    real = torch.isfinite

    def counting(t):
        calls.append(tuple(t.shape))
        return real(t)

    monkeypatch.setattr(torch, "isfinite", counting)
    for t_len in (1, 12):
        calls.clear()
        model(torch.randn(2, t_len, 5))
        assert calls == [(2, t_len, 5)]  # one check of the whole sequence, whatever T
    calls.clear()
    out, state, _ = model(torch.randn(2, 12, 5))
    calls.clear()
    model(torch.randn(2, 12, 5), state)
    assert calls == [(2, 12, 5), (2, 4, 6), (2, 4, 6)]  # x, state.h, state.c: still one host sync
