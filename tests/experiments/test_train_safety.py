"""Training that goes wrong says so where it happens: divergence, impossible checkpoints, killed saves,
devices."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from minirims.experiments import train
from minirims.experiments.train import (
    TrainConfig,
    TrainingDiverged,
    atomic_torch_save,
    batch_indices,
    fit,
    pick_device,
    remove_stale_temp_files,
)


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))


def _run(x, y, on_step=None):
    """fit's pieces; ``on_step(model, step, loss) -> loss`` may spoil a step (``step`` counts every call)."""
    calls = [0]

    def batches(epoch: int):
        return [(x[i], y[i]) for i in batch_indices(len(x), 16, seed=0, epoch=epoch)]

    def loss_fn(model, batch):
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        if on_step is not None:
            loss = on_step(model, calls[0], loss)
        calls[0] += 1
        return loss, {}

    return batches, loss_fn, lambda model: {}


# ------------------------------------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["mps", "meta", "xpu", "cpu:1", "banana", "cuda:x"])
def test_only_cpu_and_cuda_devices_are_accepted(device):
    with pytest.raises(ValueError, match=rf"^device: expected 'cpu', 'cuda' or 'cuda:N'.*got '{device}'$"):
        pick_device(device)


def test_a_cuda_device_that_is_not_here_is_refused():
    with pytest.raises(ValueError, match=r"^device: expected an available device, got 'cuda:99'"):
        pick_device("cuda:99")
    assert pick_device("cpu:0") == torch.device("cpu:0")


# ------------------------------------------------------------------------------------------------ divergence
def test_a_huge_learning_rate_on_a_rim_is_divergence_not_bad_input(tmp_path, one_thread):
    from minirims.experiments import copying as cp

    s = cp.settings("smoke", models=["rim-6x8-k4"])
    model = cp.make_model("rim-6x8-k4", s)
    data = [cp.copying_batch(16, 10, torch.Generator().manual_seed(i)) for i in range(30)]

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch[0]).flatten(0, 1), batch[1].flatten()), {}

    ckpt = tmp_path / "rim.pt"
    config = TrainConfig(epochs=2, lr=1e30, progress=False, log_every=25)
    with pytest.raises(TrainingDiverged) as err:
        fit(
            model,
            lambda e: data,
            loss_fn,
            lambda m: {},
            config,
            checkpoint=ckpt,
            select=None,
            desc="rim seed 0",
        )
    message = str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FloatingPointError)
    assert message.startswith("training diverged (rim seed 0) in epoch 1 of 2: ")
    assert re.search(r"the loss became (nan|inf) at step \d+", message) or "became NaN or infinite" in message
    assert "try a lower learning rate (it is 1e+30; --lr on the command line)" in message
    assert "expected finite values" not in message and "\n" not in message
    assert not ckpt.exists()  # a diverged epoch is never checkpointed


def test_a_nan_loss_names_its_step_and_the_parameters_it_spoiled():
    x, y = _data()

    def spoil(model, step, loss):
        return loss * float("nan") if step == 4 else loss

    with pytest.raises(TrainingDiverged) as err:
        fit(_model(), *_run(x, y, spoil), TrainConfig(epochs=1, progress=False, log_every=3), select=None)
    message = str(err.value)
    assert "in epoch 1 of 1: the loss became nan at step 5" in message
    assert "parameters 0.weight, 0.bias, 2.weight and 1 more became NaN or infinite" in message


def test_a_parameter_spoiled_by_the_last_step_is_caught_before_the_checkpoint(tmp_path):
    x, y = _data()  # 6 steps per epoch: the last step of epoch 2 (call 11) leaves an infinite weight

    def spoil(model, step, loss):
        if step == 11:
            with torch.no_grad():
                model[2].bias[0] = math.inf
        return loss

    ckpt = tmp_path / "toy.pt"
    config = TrainConfig(epochs=3, progress=False, grad_clip=None, log_every=100)
    with pytest.raises(TrainingDiverged) as err:
        fit(_model(), *_run(x, y, spoil), config, checkpoint=ckpt, select=None)
    message = str(err.value)
    assert "in epoch 2 of 3: parameters 2.bias became NaN or infinite by step 6" in message
    assert "or clip the gradients (grad_clip)" in message  # no clipping in this run
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # the healthy epoch stays the one to resume


def test_a_step_that_fails_in_a_healthy_run_keeps_its_own_error():
    x, y = _data()

    def fail(model, step, loss):
        if step == 2:
            raise ValueError("batch: expected something else")
        return loss

    with pytest.raises(ValueError, match=r"^batch: expected something else$") as err:
        fit(_model(), *_run(x, y, fail), TrainConfig(epochs=1, progress=False), select=None)
    assert not isinstance(err.value, TrainingDiverged)


def test_divergence_checks_add_no_host_sync_per_step(monkeypatch):
    x, y = _data(16 * 40)  # 40 steps, read every 10
    reads = {"item": 0, "__bool__": 0, "__float__": 0}

    def ours() -> bool:  # a read made by the training loop itself (Adam on the CPU reads its step counts)
        return sys._getframe(2).f_code.co_filename == train.__file__

    def counted(name: str):
        method = getattr(torch.Tensor, name)

        def read(self):
            reads[name] += ours()
            return method(self)

        return read

    for name in reads:
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    fit(_model(), *_run(x, y), TrainConfig(epochs=1, progress=False, log_every=10), select=None)
    # the loss sum read at 4 log intervals and at the end of the epoch; the parameters checked once
    assert reads == {"item": 5, "__bool__": 1, "__float__": 0}


def test_an_absurd_final_loss_is_flagged_in_the_record(capsys):
    from minirims.experiments import common

    curves = {"0": [{"train_loss": 2.0}], "1": [{"train_loss": 5.0e4}]}
    warning = common._absurd_loss("lstm-48", curves, math.log(8))
    assert warning.startswith("lstm-48 ended with a training loss of 5e+04 (seed 1), far above the trivial")
    assert "try a lower --lr" in warning
    assert common._absurd_loss("lstm-48", {"0": [{"train_loss": 2.3}]}, math.log(8)) is None
    assert common._absurd_loss("lstm-48", curves, None) is None  # no trivial loss known: nothing to say


def test_a_run_that_learned_nothing_says_so_and_a_healthy_one_does_not(tmp_path, capsys, one_thread):
    from minirims.experiments import copying as cp

    s = cp.settings("smoke", models=["lstm-48"], epochs=1)
    healthy = cp.run(s, save=False, runs_dir=tmp_path, progress=False)
    assert "warning" not in healthy["metrics"]["lstm-48"] and "warning" not in capsys.readouterr().err
    wild = cp.run(s.replace(lr=1.0), save=False, runs_dir=tmp_path, progress=False)
    warning = wild["metrics"]["lstm-48"]["warning"]
    assert "far above the trivial predictor's 2.08" in warning
    assert f"warning: {warning}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture
def one_epoch_checkpoint(tmp_path):
    """A checkpoint after epoch 1 of 2 (written by the current code) and a function that runs fit on it."""
    x, y = _data()
    ckpt = tmp_path / "toy.pt"
    config = TrainConfig(epochs=2, progress=False)
    pieces = _run(x, y)

    def interrupted(epoch: int):
        if epoch == 1:
            raise KeyboardInterrupt
        return pieces[0](epoch)

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), interrupted, pieces[1], pieces[2], config, checkpoint=ckpt, select=None)
    return ckpt, lambda: fit(_model(), *_run(x, y), config, checkpoint=ckpt, select=None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epoch", -5, r"epoch: expected an int in 0\.\.2 \(the epochs completed\), got -5"),
        ("epoch", 3, r"epoch: expected an int in 0\.\.2 \(the epochs completed\), got 3"),
        ("epoch", True, r"epoch: expected an int in 0\.\.2 \(the epochs completed\), got True"),
        ("epoch", 1.0, r"epoch: expected an int in 0\.\.2 \(the epochs completed\), got 1\.0"),
        ("history", [], r"history: expected a list of 1 rows \(one per completed epoch\), got 0 rows"),
        ("history", {"0": 1}, r"history: expected a list of 1 rows \(one per completed epoch\), got dict"),
        ("history", [{"epoch": 4}], r"history\[0\]: expected a row with 'epoch': 0, got \{'epoch': 4\}"),
        ("best_epoch", 5, r"best_epoch: expected an int in 0\.\.0, got 5"),
        ("best_epoch", -1, r"best_epoch: expected an int in 0\.\.0, got -1"),
        ("wall_time", float("nan"), r"wall_time: expected a finite number of seconds >= 0, got nan"),
        ("wall_time", -3.0, r"wall_time: expected a finite number of seconds >= 0, got -3\.0"),
        ("best_state", {}, r"best_state: expected the best epoch's weights of this model"),
        ("best_state", {"0.weight": torch.zeros(2)}, r"best_state: expected the best epoch's weights"),
    ],
)
def test_impossible_checkpoint_progress_is_refused_naming_the_file(
    one_epoch_checkpoint, field, value, message
):
    ckpt, resume = one_epoch_checkpoint
    saved = torch.load(ckpt, weights_only=True)
    torch.save({**saved, field: value}, ckpt)
    with pytest.raises(
        ValueError, match=rf"^checkpoint: {re.escape(str(ckpt))} holds impossible progress \("
    ) as err:
        resume()
    assert re.search(message, str(err.value)), str(err.value)
    assert str(err.value).endswith("delete it, or start over with fresh=True (--fresh on the command line)")


def test_a_checkpoint_written_now_still_resumes(one_epoch_checkpoint):
    ckpt, resume = one_epoch_checkpoint
    assert torch.load(ckpt, weights_only=True)["version"] == 2
    result = resume()
    assert result.resumed_from == 1 and len(result.history) == 2


def test_a_checkpoint_that_cannot_be_written_stops_in_one_line(tmp_path, monkeypatch):
    def read_only(obj, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(train, "atomic_torch_save", read_only)
    x, y = _data()
    ckpt = tmp_path / "toy.pt"
    with pytest.raises(
        ValueError, match=rf"^checkpoint: could not write {re.escape(str(ckpt))} after epoch 1 "
    ):
        fit(_model(), *_run(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt, select=None)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_killed_saves_are_removed_by_the_next_run(tmp_path):
    ckpt = tmp_path / "toy.pt"
    saver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a live process
    dead = tmp_path / f".toy.pt.tmp-{_dead_pid()}"  # a save killed half way
    live = tmp_path / f".toy.pt.tmp-{saver.pid}"  # another live process saving right now: left alone
    old = tmp_path / f".toy.pt.tmp-{saver.pid + 10**6}"  # no such process
    stale = tmp_path / ".toy.pt.tmp-1"  # pid 1 lives, but this file is two hours old: a reused pid
    other = tmp_path / ".other.pt.tmp-999999"  # another file's: not this run's to remove
    for path in (dead, live, old, stale, other):
        path.write_bytes(b"half a checkpoint")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    x, y = _data()
    try:
        fit(_model(), *_run(x, y), TrainConfig(epochs=1, progress=False), checkpoint=ckpt, select=None)
    finally:
        saver.kill()
        saver.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ckpt.name, live.name, other.name])
    assert remove_stale_temp_files(tmp_path / "nowhere" / "x.pt") == []


def test_a_killed_record_save_is_cleaned_up_too(tmp_path):
    from minirims.experiments import common

    target = tmp_path / "copying_smoke.json"
    dead = tmp_path / f".copying_smoke.json.tmp-{_dead_pid()}"
    dead.write_text("{")
    common.save_record({"experiment": "copying", "profile": "smoke", "metrics": {}}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_saves_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    from minirims.experiments import common
    from minirims.experiments.data import mnist

    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def logged_replace(src, dst):
        events.append(f"replace {os.path.basename(src)}")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "a.pt")
    common.save_record({"experiment": "copying", "profile": "smoke"}, tmp_path / "r.json")
    mnist._atomic_write(tmp_path / "m.bin", lambda f: f.write(b"data"))
    pid = os.getpid()
    tmp = [e.removeprefix("replace ") for e in events if e.startswith("replace")]
    assert tmp[:2] == [f".a.pt.tmp-{pid}", f".r.json.tmp-{pid}"] and tmp[2].startswith(".m.bin-")
    for name in tmp:  # each temporary file reached the disk before it took the final name
        assert events.index(f"fsync {name}") < events.index(f"replace {name}")
