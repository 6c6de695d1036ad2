"""What a GPU run relies on, checked on the CPU: the state's dtype under autocast, no host sync per call on an
accelerator, and a compiled step that never falls back to plain code without a word.

CPU autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``) stands in for CUDA's: the same checks, the
same casts. The compile tests use the ``eager`` backend (dynamo only, no code generation: seconds, not a
minute of inductor).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import minirims.fast as fast
from minirims._validate import check_finite
from minirims.cell import RIMCell
from minirims.experiments.video import FramePredictor, rollout, rollout_loss
from minirims.model import RIM, LSTMBaseline

pytestmark = pytest.mark.usefixtures("one_thread")

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
#: a small RIM: 6 modules, 4 active, 8 units each (outputs 6 * 8)
SMALL = dict(
    n_modules=6, k_active=4, d_hidden=8, input_d_k=4, input_d_v=6, comm_heads=2, comm_d_k=3, comm_d_v=5
)


class CudnnLikeLSTM(torch.nn.LSTM):
    """``nn.LSTM`` under the rule autocast applies to cuDNN's LSTM on a GPU: it runs in float16 whenever
    autocast is on, whatever autocast's dtype (state and outputs come back in float16)."""

    def forward(self, x, hx=None):  # noqa: ANN001, ANN201
        if not torch.is_autocast_enabled("cpu"):
            return super().forward(x, hx)
        with torch.autocast("cpu", enabled=False):
            params = {name: p.half() for name, p in self.named_parameters()}
            hx = None if hx is None else tuple(t.half() for t in hx)
            return torch.func.functional_call(self, params, (x.half(), hx))


def _cudnn_like(lstm: LSTMBaseline) -> LSTMBaseline:
    fake = CudnnLikeLSTM(lstm.d_in, lstm.d_hidden, batch_first=True)
    fake.load_state_dict(lstm.lstm.state_dict())
    lstm.lstm = fake
    return lstm


def _cores() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "lstm": LSTMBaseline(5, 12),
        "lstm-cudnn-rule": _cudnn_like(LSTMBaseline(5, 12)),
        "rim-plain": RIM(5, **SMALL, fast=False),
        "rim-fused": RIM(5, **SMALL),
        "rim-gru": RIM(5, **SMALL, rnn="gru"),
    }


@pytest.mark.parametrize("name", ["lstm", "lstm-cudnn-rule", "rim-plain", "rim-fused", "rim-gru"])
def test_under_autocast_the_state_stays_in_the_parameters_dtype_and_can_be_fed_back(name):
    core = _cores()[name].train()
    x = torch.randn(3, 4, 5)
    with torch.autocast(**BF16):
        out, state, _ = core(x)  # no state given: it starts in float32, not in autocast's dtype
        assert all(t.dtype == torch.float32 for t in state if t is not None)
        out2, state2, _ = core(out[:, -1:, :5].to(torch.bfloat16), state)  # fed back, as a rollout does
        assert all(t.dtype == torch.float32 for t in state2 if t is not None)
        loss = out2.float().square().mean() + out.float().square().mean()
    loss.backward()
    grads = [p.grad for p in core.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_the_rim_state_accumulates_in_float32_under_autocast():
    """The initial state is made in the parameters' dtype, not in the input's: a bf16 input (an encoder that
    ran under autocast) must not start a bf16 cell state."""
    for core in (_cores()["rim-plain"], _cores()["rim-fused"]):
        with torch.autocast(**BF16):
            _, state, _ = core(torch.randn(2, 3, 5).to(torch.bfloat16))
        assert state.h.dtype == state.c.dtype == torch.float32
    cell = RIMCell(5, **SMALL)
    with torch.autocast(**BF16):
        _, state, _ = cell(torch.randn(2, 5).to(torch.bfloat16))
    assert state.h.dtype == state.c.dtype == torch.float32


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_the_lstm_runs_in_autocasts_dtype_whatever_it_is(amp):
    """Left to autocast, cuDNN's LSTM runs in float16 even under bf16 autocast (and CPU autocast hands oneDNN
    mixed dtypes it refuses): the baseline casts itself, so it trains in the dtype the record says."""
    torch.manual_seed(0)
    lstm = LSTMBaseline(5, 12)
    x = torch.randn(3, 4, 5)
    with torch.autocast("cpu", dtype=amp):
        out, (h, c), _ = lstm(x)
    assert out.dtype == amp and h.dtype == c.dtype == torch.float32
    ref, _, _ = lstm(x)  # float32, autocast off
    assert torch.allclose(out.float(), ref, atol=5e-2)
    out.float().sum().backward()
    assert lstm.lstm.weight_hh_l0.grad.dtype == torch.float32
    # the module's own weights are untouched (the casts are temporary, inside autograd)
    assert lstm.lstm.weight_hh_l0.dtype == torch.float32
    assert lstm.lstm._flat_weights[0] is lstm.lstm.weight_ih_l0


def test_the_lstm_trains_in_bf16_where_autocasts_rule_would_pick_float16():
    """MNIST's LSTM on a GPU: under bf16 autocast, cuDNN's rule would train it in float16 without the loss
    scaling float16 needs. The baseline runs it in bf16 with autocast off, so the rule never applies."""
    lstm = _cores()["lstm-cudnn-rule"]
    with torch.autocast(**BF16):
        out, (h, c), _ = lstm(torch.randn(3, 4, 5))
    assert out.dtype == torch.bfloat16 and h.dtype == c.dtype == torch.float32


def test_float32_without_autocast_is_unchanged():
    """Outside autocast the baseline calls nn.LSTM as before (an explicit zero state is the default's)."""
    torch.manual_seed(0)
    lstm = LSTMBaseline(5, 12)
    x = torch.randn(3, 4, 5)
    out, (h, c), _ = lstm(x)
    ref, (h_ref, c_ref) = lstm.lstm(x)
    assert torch.equal(out, ref) and torch.equal(h, h_ref[0]) and torch.equal(c, c_ref[0])


@pytest.mark.parametrize("name", ["lstm", "lstm-cudnn-rule", "rim-fused", "rim-plain"])
def test_a_balls_rollout_runs_under_autocast(name):
    """The bouncing-balls training step and test rollout feed the state back one frame per call; under
    autocast the LSTM's state came back in another dtype and the second call refused it."""
    torch.manual_seed(0)
    model = FramePredictor(_cores()[name], frame_size=16, channels=(4, 8)).train()
    frames = (torch.rand(2, 6, 1, 16, 16) > 0.9).float()
    with torch.autocast(**BF16):
        loss, metrics = rollout_loss(model, frames, n_given=3)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and "bce_rollout" in metrics
    loss.backward()
    with torch.autocast(**BF16):
        result = rollout(model, frames, n_given=3, n_future=3)
    assert result.bce.shape == (2, 3) and torch.isfinite(result.bce).all()


def test_finiteness_is_read_on_the_cpu_only():
    """Reading a check's answer from an accelerator is a host sync per call; tensors outside CPU memory are
    not inspected (a meta tensor stands in: reading it would raise)."""
    nan = torch.tensor([float("nan")])
    check_finite(("x", torch.full((2,), float("nan"), device="meta")))
    with pytest.raises(ValueError, match=r"^x: expected finite values"):
        check_finite(("a", torch.full((2,), float("nan"), device="meta")), ("x", nan))
    rim = RIM(5, **SMALL).to("meta")
    out, _, _ = rim(torch.full((2, 3, 5), float("nan"), device="meta"))
    assert out.shape == (2, 3, 6 * 8)


def _limit_name() -> str:
    config = torch._dynamo.config
    return "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with the ``eager`` backend and a fresh cache of compiled steps; dynamo reset and its
    recompile limit restored after (by hand: monkeypatch's undo deletes a setting of torch's config)."""
    torch._dynamo.reset()
    limit = getattr(torch._dynamo.config, _limit_name())
    monkeypatch.setattr(fast, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(fast, "_COMPILED", {})
    monkeypatch.setattr(fast, "_WARNED", set())
    yield
    setattr(torch._dynamo.config, _limit_name(), limit)
    torch._dynamo.reset()


def test_compiling_raises_torchs_recompile_limit_and_never_lowers_it(eager_compile, monkeypatch):
    config, name = torch._dynamo.config, _limit_name()
    setattr(config, name, 8)
    fast._compiled("steps")
    assert getattr(config, name) == fast.RECOMPILE_LIMIT >= 3 * 7  # three RIMs of ~7 shapes each
    setattr(config, name, 1000)
    monkeypatch.setattr(fast, "_COMPILED", {})
    fast._compiled("steps")
    assert getattr(config, name) == 1000


def test_past_the_recompile_limit_the_step_runs_plain_with_one_warning(eager_compile, monkeypatch):
    monkeypatch.setattr(fast, "RECOMPILE_LIMIT", 1)
    setattr(torch._dynamo.config, _limit_name(), 1)
    torch.manual_seed(0)
    rim = RIM(5, **SMALL, dropout=0.0).train()
    xs = [torch.randn(b, 9, 5) for b in (2, 3, 4)]  # three batch sizes: three shapes
    expected = [rim(x)[0] for x in xs]
    rim.compile_step = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [rim(x)[0] for x in xs]
    mine = [w for w in caught if "minirims.fast" in str(w.message)]
    assert len(mine) == 1 and issubclass(mine[0].category, RuntimeWarning)
    assert "runs uncompiled" in str(mine[0].message)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b)
    F.mse_loss(got[-1], torch.zeros_like(got[-1])).backward()  # the plain fallback trains too
