"""The shared training loop: seeding, profiles, best-epoch selection, checkpoints that resume exactly."""

from __future__ import annotations

import pickle
import platform
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from minirims.experiments.train import (
    FitResult,
    TrainConfig,
    batch_indices,
    checkpoint_epoch,
    cpu_info,
    denormals_flushed,
    epoch_generator,
    fit,
    pick_device,
    resolve_profile,
    seed_everything,
)


def _toy_problem(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _toy_model() -> nn.Module:
    # Dropout makes the run consume the torch RNG, so resuming must restore it.
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))


class _Interrupt(Exception):
    pass


def _pieces(x: torch.Tensor, y: torch.Tensor, interrupt_at: tuple[int, int] | None = None):
    def train_batches(epoch: int):
        for step, idx in enumerate(batch_indices(len(x), 16, seed=3, epoch=epoch)):
            if interrupt_at == (epoch, step):
                raise _Interrupt
            # python and numpy RNGs are used too, so their states must survive a resume
            noise = 0.01 * random.random() + 0.01 * float(np.random.rand())
            yield x[idx] + noise, y[idx]

    def loss_fn(model, batch):
        xb, yb = batch
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        return loss, {"acc": (logits.argmax(-1) == yb).float().mean()}

    def evaluate(model):
        return {"val_acc": (model(x).argmax(-1) == y).float().mean().item()}

    return train_batches, loss_fn, evaluate


def test_resolve_profile(monkeypatch):
    monkeypatch.delenv("MINIRIMS_PROFILE", raising=False)
    assert resolve_profile("smoke") == "smoke"
    assert resolve_profile(None) == ("full" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("MINIRIMS_PROFILE", "smoke")
    assert resolve_profile(None) == "smoke"
    assert resolve_profile("cpu") == "cpu"  # an explicit argument beats the environment
    with pytest.raises(ValueError, match=r"profile: expected one of smoke, cpu, full, long, got 'huge'"):
        resolve_profile("huge")
    monkeypatch.setenv("MINIRIMS_PROFILE", "tiny")
    with pytest.raises(
        ValueError, match=r"MINIRIMS_PROFILE: expected one of smoke, cpu, full, long, got 'tiny'"
    ):
        resolve_profile(None)


def test_pick_device_and_seed():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: expected"):
        pick_device("banana")
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1))
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1)) == a
    with pytest.raises(ValueError, match="seed: expected a non-negative int, got -1"):
        seed_everything(-1)


def test_batch_order_depends_only_on_seed_and_epoch():
    a = torch.cat(batch_indices(10, 4, seed=1, epoch=2))
    torch.rand(100)  # global RNG use must not change the order
    assert torch.equal(a, torch.cat(batch_indices(10, 4, seed=1, epoch=2)))
    assert not torch.equal(a, torch.cat(batch_indices(10, 4, seed=1, epoch=3)))
    assert sorted(a.tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(10, 4, 0, 0, drop_last=True)] == [4, 4]
    assert torch.equal(torch.cat(batch_indices(5, 2, 0, 0, shuffle=False)), torch.arange(5))
    g1, g2 = epoch_generator(0, 1), epoch_generator(0, 1)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        batch_indices(10, 0, 0, 0)


def test_config_validation():
    with pytest.raises(ValueError, match="epochs: expected a positive int, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr: expected a finite positive float, got -1.0"):
        TrainConfig(epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="grad_clip: expected a finite positive float or None, got 0.0"):
        TrainConfig(epochs=1, grad_clip=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 1.7}, "epochs: expected a positive int, got 1.7"),
        ({"epochs": True}, "epochs: expected a positive int, got True"),
        ({"lr": float("inf")}, "lr: expected a finite positive float, got inf"),
        ({"lr": True}, "lr: expected a finite positive float, got True"),
        ({"lr": float("nan")}, "lr: expected a finite positive float, got nan"),
        ({"weight_decay": float("nan")}, "weight_decay: expected a finite float >= 0, got nan"),
        ({"weight_decay": -0.1}, "weight_decay: expected a finite float >= 0, got -0.1"),
        ({"grad_clip": float("inf")}, "grad_clip: expected a finite positive float or None, got inf"),
        ({"grad_clip": True}, "grad_clip: expected a finite positive float or None, got True"),
        ({"amp": 1}, "amp: expected True or False, got 1"),
        ({"restore_best": "yes"}, "restore_best: expected True or False, got 'yes'"),
        ({"seed": 1.0}, "seed: expected a non-negative int, got 1.0"),
    ],
)
def test_config_refuses_values_it_would_mangle(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrainConfig(**{"epochs": 1, **kwargs})


def test_fit_lowers_the_loss_and_selects_the_best_epoch():
    x, y = _toy_problem()
    train_batches, loss_fn, evaluate = _pieces(x, y)
    torch.manual_seed(0)
    model = _toy_model()
    res = fit(model, train_batches, loss_fn, evaluate, TrainConfig(epochs=6, lr=1e-2, progress=False))
    assert isinstance(res, FitResult)
    losses = [row["train_loss"] for row in res.history]
    assert losses[-1] < 0.7 * losses[0]
    accs = [row["val_acc"] for row in res.history]
    assert res.best_epoch == int(np.argmax(accs))
    assert res.best_metrics["val_acc"] == max(accs)
    assert set(res.history[0]) >= {"epoch", "train_loss", "train_acc", "val_acc", "seconds"}
    # restore_best: the model now holds the best epoch's weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, res.best_state[k])


def test_fit_validates_select_and_mode():
    x, y = _toy_problem(32)
    train_batches, loss_fn, evaluate = _pieces(x, y)
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(
        ValueError, match=r"select: expected a key returned by evaluate\(\), one of \['val_acc'\]"
    ):
        fit(_toy_model(), train_batches, loss_fn, evaluate, cfg, select="val_loss")
    with pytest.raises(ValueError, match="mode: expected 'max' or 'min', got 'up'"):
        fit(_toy_model(), train_batches, loss_fn, evaluate, cfg, mode="up")


def test_interrupted_run_resumes_bit_exact(tmp_path):
    x, y = _toy_problem()
    cfg = TrainConfig(epochs=4, lr=5e-3, seed=11, progress=False)

    torch.manual_seed(1)
    ref_model = _toy_model()
    ref = fit(ref_model, *_pieces(x, y), cfg, checkpoint=tmp_path / "ref.pt")

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(1)
    with pytest.raises(_Interrupt):  # killed in the middle of epoch 2: epochs 0 and 1 are checkpointed
        fit(_toy_model(), *_pieces(x, y, interrupt_at=(2, 3)), cfg, checkpoint=ckpt)
    assert ckpt.exists() and not list(tmp_path.glob(".*tmp*"))
    torch.manual_seed(123)  # whatever happened in between must not matter
    random.random()
    model = _toy_model()  # fresh weights: the checkpoint restores them
    res = fit(model, *_pieces(x, y), cfg, checkpoint=ckpt)

    assert res.resumed_from == 2
    assert res.best_epoch == ref.best_epoch
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in res.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in ref.history]
    for k, v in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    # a finished checkpoint returns at once with the same result
    again = fit(_toy_model(), *_pieces(x, y), cfg, checkpoint=ckpt)
    assert again.resumed_from == 4 and again.best_epoch == ref.best_epoch


def test_checkpoint_of_another_model_is_refused(tmp_path):
    x, y = _toy_problem(32)
    cfg = TrainConfig(epochs=1, progress=False)
    fit(_toy_model(), *_pieces(x, y), cfg, checkpoint=tmp_path / "c.pt")
    other = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"checkpoint: .*c\.pt does not match the model: .*--fresh"):
        fit(other, *_pieces(x, y), cfg, checkpoint=tmp_path / "c.pt")


class _RunsCode:
    """Unpickling this runs ``pathlib.Path(<marker>).touch()``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    x, y = _toy_problem(32)
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": "minirims.fit", "version": 2, "payload": _RunsCode(marker)}, ckpt)
    with pytest.raises(ValueError, match=r"checkpoint: cannot read .*evil\.pt .*delete it, or .*--fresh"):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)
    assert not marker.exists()


def test_checkpoints_hold_only_plain_values(tmp_path):
    x, y = _toy_problem(32)
    fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)  # raises if anything needs a full unpickler
    assert ckpt["format"] == "minirims.fit" and ckpt["version"] == 2 and ckpt["epoch"] == 1
    assert ckpt["settings"] == {} and ckpt["config"]["epochs"] == 1


def test_checkpoint_epoch_counts_finished_epochs_and_is_zero_without_a_readable_checkpoint(tmp_path):
    x, y = _toy_problem(32)
    ckpt = tmp_path / "c.pt"
    assert checkpoint_epoch(ckpt) == 0  # not written yet
    fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=2, progress=False), checkpoint=ckpt)
    assert checkpoint_epoch(ckpt) == 2 and checkpoint_epoch(str(ckpt)) == 2
    ckpt.write_bytes(b"not a checkpoint at all")
    assert checkpoint_epoch(ckpt) == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", pickle.dumps({"version": 1}, protocol=2)],
    ids=["empty", "garbage", "plain-pickle"],
)
def test_a_corrupt_checkpoint_names_the_file_and_what_to_do(tmp_path, content):
    x, y = _toy_problem(32)
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(content)
    with pytest.raises(ValueError, match=r"checkpoint: cannot read .*broken\.pt.*delete it, or start over"):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)


def test_an_old_format_checkpoint_is_refused_with_what_to_do(tmp_path):
    x, y = _toy_problem(32)
    ckpt = tmp_path / "v1.pt"
    torch.save({"version": 1, "rng": {"numpy": np.random.get_state()}}, ckpt)  # v1 kept numpy's tuple
    with pytest.raises(
        ValueError, match=r"cannot read .*v1\.pt safely .*written by an older minirims.*--fresh"
    ):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)


def test_a_foreign_checkpoint_names_the_file_and_what_to_do(tmp_path):
    x, y = _toy_problem(32)
    ckpt = tmp_path / "other.pt"
    torch.save({"version": 1, "model": {}}, ckpt)  # loads safely, but is no fit checkpoint (or an old one)
    with pytest.raises(ValueError, match=r"expected a minirims fit checkpoint .* in .*other\.pt.*--fresh"):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)
    torch.save([1, 2], ckpt)
    with pytest.raises(ValueError, match=r"got a list without the minirims format mark"):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)
    torch.save({"format": "minirims.fit", "version": 2, "epoch": 1}, ckpt)
    with pytest.raises(ValueError, match=r"other\.pt is incomplete \(no best_epoch, .*\); delete it"):
        fit(_toy_model(), *_pieces(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt)


def test_resume_only_with_the_same_settings(tmp_path):
    x, y = _toy_problem(32)
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=2, lr=5e-3, progress=False)
    first = fit(
        _toy_model(), *_pieces(x, y), cfg, checkpoint=ckpt, settings={"data_seed": 0, "sizes": (1, 2)}
    )
    # the same settings (a tuple saved is a list loaded: both are plain) resume the finished run at once
    same = fit(_toy_model(), *_pieces(x, y), cfg, checkpoint=ckpt, settings={"data_seed": 0, "sizes": [1, 2]})
    assert same.resumed_from == 2 and same.history == first.history
    # fewer epochs than the checkpoint holds: refused, not reported as a 1-epoch run
    with pytest.raises(ValueError, match=r"c\.pt was written with other settings: epochs \(saved 2, now 1\)"):
        fit(
            _toy_model(),
            *_pieces(x, y),
            TrainConfig(epochs=1, lr=5e-3, progress=False),
            checkpoint=ckpt,
            settings={"data_seed": 0, "sizes": [1, 2]},
        )
    with pytest.raises(ValueError, match=r"lr \(saved 0.005, now 0.001\).*fresh=True \(--fresh"):
        fit(
            _toy_model(),
            *_pieces(x, y),
            TrainConfig(epochs=2, lr=1e-3, progress=False),
            checkpoint=ckpt,
            settings={"data_seed": 0, "sizes": [1, 2]},
        )
    with pytest.raises(ValueError, match=r"data_seed \(saved 0, now 1\); extra \(saved absent, now 3\)"):
        fit(
            _toy_model(),
            *_pieces(x, y),
            cfg,
            checkpoint=ckpt,
            settings={"data_seed": 1, "extra": 3, "sizes": [1, 2]},
        )
    # progress and log_every change only what a run shows: they do not block a resume
    shown = TrainConfig(epochs=2, lr=5e-3, progress=False, log_every=3)
    assert (
        fit(
            _toy_model(), *_pieces(x, y), shown, checkpoint=ckpt, settings={"data_seed": 0, "sizes": [1, 2]}
        ).resumed_from
        == 2
    )
    # fresh=True starts over with the new settings and replaces the checkpoint
    one = TrainConfig(epochs=1, lr=5e-3, progress=False)
    res = fit(_toy_model(), *_pieces(x, y), one, checkpoint=ckpt, settings={"data_seed": 1}, fresh=True)
    assert res.resumed_from == 0 and len(res.history) == 1
    assert (
        fit(_toy_model(), *_pieces(x, y), one, checkpoint=ckpt, settings={"data_seed": 1}).resumed_from == 1
    )


def test_fit_validates_settings_and_fresh(tmp_path):
    x, y = _toy_problem(32)
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"settings: expected plain values"):
        fit(_toy_model(), *_pieces(x, y), cfg, settings={"device": torch.device("cpu")})
    with pytest.raises(ValueError, match=r"settings: expected a dict of str -> plain values, got list"):
        fit(_toy_model(), *_pieces(x, y), cfg, settings=[1])
    with pytest.raises(ValueError, match=r"fresh: expected True or False, got 1"):
        fit(_toy_model(), *_pieces(x, y), cfg, fresh=1)


# --- learning-rate schedule -----------------------------------------------------------------------------


def test_learning_rate_warms_up_then_holds_or_decays():
    from minirims.experiments.train import learning_rate

    const = TrainConfig(epochs=1, lr=1e-2, warmup_steps=4)
    assert [learning_rate(const, s, None) for s in range(6)] == pytest.approx(
        [2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2]
    )
    cos = TrainConfig(epochs=1, lr=1e-2, lr_schedule="cosine", warmup_steps=2)
    rates = [learning_rate(cos, s, 12) for s in range(12)]
    assert rates[:3] == pytest.approx([5e-3, 1e-2, 1e-2])  # step 2 starts the decay at the full rate
    assert rates[7] == pytest.approx(5e-3)  # half way through the 10 decay steps
    assert all(a > b for a, b in zip(rates[2:], rates[3:], strict=False)) and 0 < rates[-1] < 3e-4
    with pytest.raises(ValueError, match="total_steps: expected a positive int for lr_schedule='cosine'"):
        learning_rate(cos, 5, None)
    with pytest.raises(ValueError, match="step: expected an int >= 0, got -1"):
        learning_rate(cos, -1, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_schedule": "linear"}, "lr_schedule: expected one of constant, cosine, got 'linear'"),
        ({"warmup_steps": -1}, "warmup_steps: expected an int >= 0, got -1"),
        ({"warmup_steps": 2.0}, "warmup_steps: expected an int >= 0, got 2.0"),
    ],
)
def test_config_refuses_bad_schedules(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrainConfig(**{"epochs": 1, **kwargs})


def _sized_pieces(x, y, interrupt_at=None):
    train_batches, loss_fn, evaluate = _pieces(x, y, interrupt_at)

    class Sized:
        def __init__(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return len(batch_indices(len(x), 16, seed=3, epoch=self.epoch))

        def __iter__(self):
            return iter(train_batches(self.epoch))

    return Sized, loss_fn, evaluate


def test_fit_follows_the_schedule_at_every_step(monkeypatch):
    from minirims.experiments import train as train_mod

    seen: list[float] = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(train_mod.torch.optim, "Adam", Recording)
    x, y = _toy_problem()  # 96 rows, batches of 16: 6 steps per epoch
    cfg = TrainConfig(epochs=3, lr=1e-2, lr_schedule="cosine", warmup_steps=3, progress=False)
    fit(_toy_model(), *_sized_pieces(x, y), cfg)
    assert seen == pytest.approx([train_mod.learning_rate(cfg, s, 18) for s in range(18)])
    assert seen[2] == pytest.approx(1e-2) and seen[-1] < 1e-3


def test_schedule_needs_sized_batches_and_resumes_bit_exact(tmp_path):
    x, y = _toy_problem()
    cfg = TrainConfig(epochs=3, lr=5e-3, lr_schedule="cosine", warmup_steps=4, progress=False)
    with pytest.raises(ValueError, match="train_batches: expected a sized collection"):
        fit(_toy_model(), *_pieces(x, y), cfg)
    torch.manual_seed(1)
    ref_model = _toy_model()
    fit(ref_model, *_sized_pieces(x, y), cfg)
    ckpt = tmp_path / "run.pt"
    torch.manual_seed(1)
    with pytest.raises(_Interrupt):
        fit(_toy_model(), *_sized_pieces(x, y, interrupt_at=(1, 2)), cfg, checkpoint=ckpt)
    model = _toy_model()
    assert fit(model, *_sized_pieces(x, y), cfg, checkpoint=ckpt).resumed_from == 1
    for k, v in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # another schedule is another run: the checkpoint is refused, naming the key
    with pytest.raises(ValueError, match=r"lr_schedule \(saved 'cosine', now absent\)"):
        other = TrainConfig(epochs=3, lr=5e-3, warmup_steps=4, progress=False)
        fit(_toy_model(), *_sized_pieces(x, y), other, checkpoint=ckpt)


# --- the parts of fit --------------------------------------------------------------------------------------


def test_record_epoch_keeps_the_first_best_and_never_a_nan():
    from minirims.experiments.train import _Progress, _record_epoch

    model = nn.Linear(2, 1)
    progress = _Progress()
    for epoch, acc in enumerate([0.5, 0.7, float("nan"), 0.7, 0.6]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        _record_epoch(progress, {"epoch": epoch, "val_acc": acc, "seconds": 1.0}, model, "val_acc", "max")
    assert (progress.epoch, progress.best_epoch, progress.best_value, progress.wall_time) == (5, 1, 0.7, 5.0)
    assert torch.equal(progress.best_state["weight"], torch.full((1, 2), 1.0))  # a copy, not the live weights
    last = _Progress()
    for epoch in range(3):
        _record_epoch(last, {"epoch": epoch, "seconds": 0.0}, model, None, "max")
    assert last.best_epoch == 2 and len(last.history) == 3


def test_train_step_returns_detached_float_scalars_and_steps_the_optimizer():
    from minirims.experiments.train import _Loop, _train_step

    x, y = _toy_problem(16)
    _, loss_fn, _ = _pieces(x, y)
    model = _toy_model()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    out = _train_step(_Loop(model, params, optimizer, loss_fn, TrainConfig(epochs=1), False), (x, y))
    assert set(out) == {"loss", "acc"}
    assert all(v.shape == () and v.dtype == torch.float32 and not v.requires_grad for v in out.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))


def _flushes() -> bool:
    """Whether a product of normal floats that lands in the denormal range comes out as zero right now."""
    return float(torch.tensor([1e-20]) * torch.tensor([1e-20])) == 0.0


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_denormals_are_flushed_inside_the_block_only():
    assert not _flushes()
    with denormals_flushed("cpu") as on:
        assert on and _flushes()
        with denormals_flushed("cpu"):  # nested: the outer block stays flushed after the inner one
            assert _flushes()
        assert _flushes()
    assert not _flushes()
    with denormals_flushed("cpu", enabled=False) as on:
        assert not on and not _flushes()
    with denormals_flushed("cuda") as on:  # never touches the CPU flag for a GPU run
        assert not on and not _flushes()
    with pytest.raises(ValueError, match="enabled: expected True or False, got 'yes'"):
        with denormals_flushed("cpu", enabled="yes"):
            pass


class _TinyRecurrent(nn.Module):
    """A small RIM reading 8-step sequences of the toy problem's features: enough steps for small states."""

    def __init__(self) -> None:
        super().__init__()
        from minirims.model import RIM

        self.core = RIM(2, 3, 2, 8, input_d_k=8, input_d_v=8, comm_heads=1, dropout=0.0)
        self.head = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _, _ = self.core(x.view(len(x), 4, 2).repeat(1, 2, 1))
        return self.head(out[:, -1])


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_flushing_denormals_leaves_a_seeded_run_within_tolerance():
    x, y = _toy_problem(64)
    train_batches, loss_fn, evaluate = _pieces(x, y)
    seen = []

    def probing_loss(model, batch):
        seen.append(_flushes())
        return loss_fn(model, batch)

    runs = {}
    for flush in (True, False):
        seen.clear()
        torch.manual_seed(0)
        model = _TinyRecurrent()
        cfg = TrainConfig(epochs=2, lr=1e-2, progress=False)
        res = fit(model, train_batches, probing_loss, evaluate, cfg, flush_denormals=flush)
        assert seen and all(s == flush for s in seen)  # every training step ran with the flag as asked
        runs[flush] = res
    assert not _flushes()  # switched off again after the run
    for a, b in zip(runs[True].history, runs[False].history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1 / 64)
    for k, v in runs[True].best_state.items():
        torch.testing.assert_close(v, runs[False].best_state[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="flush_denormals: expected True or False, got 1"):
        fit(_toy_model(), train_batches, loss_fn, evaluate, TrainConfig(epochs=1), flush_denormals=1)


def test_cpu_info_names_the_cpu_and_its_speed_flags():
    info = cpu_info()
    assert isinstance(info["model"], str) and info["model"]
    assert isinstance(info["flags"], list) and all(isinstance(f, str) for f in info["flags"])
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sse3" in info["flags"]  # every x86-64 CPU this course meets has it
