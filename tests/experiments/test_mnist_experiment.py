"""The sequential-MNIST resolution experiment: models, profiles, a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from minirims.experiments import common, figures
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.common import count_parameters, seed_list
from minirims.experiments.transformer import CausalTransformer

SMOKE = mr.PROFILES["smoke"]
RIM, LSTM = SMOKE.models  # "rim-6x12-k4", "lstm-72"
TINY = {"n_train": 32, "n_valid": 16, "n_test": 4, "batch_size": 16, "eval_batch_size": 16, "epochs": 1}


def test_make_model_names_and_parameter_counts() -> None:
    names = mr.PROFILES["full"].models
    assert names == (
        "rim-6x100-k4",
        "rim-6x100-k5",
        "rim-6x100-k6",
        "lstm-300",
        "lstm-600",
        "transformer-4x128",
    )
    full = {name: count_parameters(mr.make_model(name)) for name in names}  # default settings: full
    # RIM 6x100: ~1.6M (6 separate LSTM blocks with 400-wide reads); LSTM-600 > LSTM-300 (~4x)
    assert 1_000_000 < full["rim-6x100-k4"] < 2_500_000
    assert full["rim-6x100-k4"] == full["rim-6x100-k5"] == full["rim-6x100-k6"]  # k does not change weights
    assert 3.5 < full["lstm-600"] / full["lstm-300"] < 4.1
    assert 100_000 < full["transformer-4x128"] < 2_000_000
    model = mr.make_model("rim-6x100-k4")
    assert model.core.n_modules == 6 and model.core.k_active == 4 and model.core.d_out == 600
    assert mr.make_model("lstm-600").core.d_out == 600
    tf = mr.make_model("transformer-4x128").core
    assert tf.d_out == 128 and len(tf.encoder.layers) == 4
    assert mr.make_model("rim-4x8-k2", SMOKE).core.d_out == 32  # any size the name says
    cpu = mr.settings("cpu")
    assert cpu.models == ("rim-6x32-k4", "lstm-192")
    assert mr.make_model(cpu.models[0], cpu).core.d_out == mr.make_model(cpu.models[1], cpu).core.d_out == 192


@pytest.mark.parametrize("name", [*SMOKE.models, "transformer-1x16"])
def test_forward_shapes_at_each_resolution(name: str) -> None:
    torch.manual_seed(0)
    model = mr.make_model(name, SMOKE).eval()
    for s in (14, 24):
        logits = model(torch.randint(0, 2, (1, s * s)))
        assert logits.shape == (1, 10) and torch.isfinite(logits).all()


def test_activity_masks_shape_and_k_active() -> None:
    model = mr.make_model(RIM, SMOKE)
    masks = mr.activity_masks(model, torch.randint(0, 2, (196,)))
    assert masks.shape == (1, 196, 6) and masks.dtype == torch.bool
    assert masks.sum(-1).eq(4).all()
    with pytest.raises(
        ValueError,
        match="^model: expected an MNISTClassifier with a RIM core, got MNISTClassifier with a LSTMBaseline "
        "core$",
    ):
        mr.activity_masks(mr.make_model(LSTM, SMOKE), torch.zeros(196, dtype=torch.long))
    with pytest.raises(ValueError, match="^model: expected an MNISTClassifier with a RIM core, got Linear$"):
        mr.foreground_activity(torch.nn.Linear(2, 2), torch.zeros(2, 196, dtype=torch.long))


def test_transformer_is_causal_and_extrapolates() -> None:
    torch.manual_seed(0)
    tf = CausalTransformer(8, 16, 1, 2).eval()
    x = torch.randn(2, 30, 8)
    full, _, _ = tf(x)
    prefix, _, _ = tf(x[:, :10])
    assert full.shape == (2, 30, 16) and torch.allclose(full[:, :10], prefix, atol=1e-5)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, 8\), got \(2, 30, 7\)"):
        tf(torch.randn(2, 30, 7))


def test_unknown_names_raise() -> None:
    with pytest.raises(
        ValueError,
        match=r"^name: expected a model name like 'rim-6x48-k4' or 'lstm-288' or 'transformer-2x64', "
        r"got 'gru-7'$",
    ):
        mr.make_model("gru-7")
    for bad in ("rim-6-4", "lstm-0", "transformer-0x16", "rim-6x0-k4", "lstm"):  # old names, zero sizes
        with pytest.raises(ValueError, match=rf"^name: expected a model name like .*, got '{bad}'$"):
            mr.make_model(bad, SMOKE)
    with pytest.raises(ValueError, match="profile: expected one of smoke, cpu, full, long, got 'huge'"):
        mr.settings("huge")
    with pytest.raises(ValueError, match="overrides: expected keys"):
        mr.settings("smoke", n_trian=3)
    with pytest.raises(ValueError, match=r"^models\[1\]: expected"):  # checked with the run's settings
        mr.settings("smoke", models=["lstm-72", "gru-999"])
    with pytest.raises(ValueError, match=r"d_model: expected an even multiple of n_heads=2, got 15"):
        mr.run(mr.settings("smoke", models=["transformer-1x15"]), save=False)  # built before the data load


def test_classifier_rejects_bad_tokens() -> None:
    model = mr.make_model(LSTM, SMOKE)
    with pytest.raises(ValueError, match=r"tokens: expected shape \(B, T\) of integer tokens, got \(2, 5\)"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"tokens: expected shape \(B, T\) of integer tokens, got \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tokens: expected pixel tokens in \{0, 1\}, got values in \[0, 2"):
        model(torch.tensor([[0, 1, 2]]))


def test_training_lowers_the_loss_on_a_tiny_subset() -> None:
    torch.manual_seed(0)
    x, y = torch.randint(0, 2, (16, 25)), torch.arange(16) % 10
    model = mr.make_model(LSTM, SMOKE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_tiny_run_end_to_end_writes_a_record(tmp_path: Path) -> None:
    trained: dict[str, torch.nn.Module] = {}
    record = mr.run(
        mr.settings("smoke", **TINY),
        seeds=1,
        results=tmp_path / "results",
        runs_dir=tmp_path / "runs",
        progress=False,
        trained=trained,
    )
    path = tmp_path / "results" / "mnist_resolution_smoke.json"
    saved = json.loads(path.read_text())
    for key in (
        "experiment",
        "profile",
        "settings",
        "seeds",
        "provenance",
        "wall_time",
        "parameters",
        "metrics",
    ):
        assert key in saved
    assert saved["seeds"] == [0] and saved["settings"]["n_train"] == 32
    for name in (RIM, LSTM):
        acc = saved["metrics"][name]["acc"]
        assert set(acc) == {"14", "16", "19", "24"}
        assert all(0.0 <= a["mean"] <= 1.0 and len(a["values"]) == 1 for a in acc.values())
        assert len(saved["curves"][name]["0"]) == 1 and "val_acc" in saved["curves"][name]["0"][0]
        assert saved["parameters"][name] == count_parameters(trained[name])
        assert saved["metrics"][name]["train_seconds"] > 0  # rounded to ms
        assert saved["metrics"][name]["best_epoch"] == [0]
        assert not trained[name].training  # trained models come back in eval mode, on the CPU
    assert saved["paper_table1"]["rim-6x100-k4"] == {"16": 90.0, "19": 73.4, "24": 38.1}
    assert "14x14" in mr.format_table(record)
    assert list((tmp_path / "runs").glob(f"mnist_resolution_smoke_*/{RIM}_seed0.pt"))


def test_cli_accepts_profile_seeds_models(monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    mr.add_arguments(parser)
    args = parser.parse_args(
        ["--profile", "cpu", "--seeds", "3", "--models", "rim-6x32-k4,lstm-600", "lstm-300"]
    )
    assert (args.profile, args.seeds, args.models) == ("cpu", 3, ["rim-6x32-k4,lstm-600", "lstm-300"])
    seen = {}

    def fake_run(settings, seeds, **options):
        seen.update(settings=settings, seeds=seeds, **options)
        raise RuntimeError("stop here")

    monkeypatch.setattr(mr, "run", fake_run)
    with pytest.raises(RuntimeError, match="stop here"):
        mr.main(args)
    # space- and comma-separated names alike, in order; the profile's other settings stay
    assert seen["settings"].models == ("rim-6x32-k4", "lstm-600", "lstm-300")
    assert seen["settings"].profile == "cpu" and seen["settings"].n_valid == mr.PROFILES["cpu"].n_valid
    assert seen["seeds"] == [0, 1, 2] and seen["save"] is True


def test_seed_lists_are_shared_and_validated() -> None:
    assert seed_list(3) == [0, 1, 2] and seed_list([4, 7]) == [4, 7]
    with pytest.raises(ValueError, match=r"seeds: expected a count >= 1 or a list of seeds, got 0"):
        mr.run("smoke", seeds=0)
    with pytest.raises(
        ValueError, match=r"seeds: expected a count >= 1 or a list of non-negative ints, got \[\]"
    ):
        mr.run("smoke", seeds=[])


def test_the_learning_rate_schedule_reaches_the_training_loop(fit_configs):
    """lr_schedule / warmup_steps are settings (checked like the others) and become fit's TrainConfig."""
    with pytest.raises(ValueError, match=r"^lr_schedule: expected one of constant, cosine, got 'step'$"):
        mr.settings("smoke", lr_schedule="step")
    with pytest.raises(ValueError, match=r"^warmup_steps: expected an int >= 0, got -1$"):
        mr.settings("smoke", warmup_steps=-1)
    seen = fit_configs(common)  # the one training loop of every experiment
    with pytest.raises(RuntimeError, match="stop here"):
        mr.run(
            mr.settings("smoke", models=[LSTM], lr_schedule="cosine", warmup_steps=3, n_train=64, n_test=8),
            save=False,
            progress=False,
        )
    assert seen[0].lr_schedule == "cosine" and seen[0].warmup_steps == 3


def test_plot_accuracy_draws_every_model_and_chance() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads((Path(__file__).parents[2] / "results" / "mnist_resolution_cpu.json").read_text())
    fig = figures.plot_accuracy(record, paper=False)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert set(record["metrics"]) <= set(labels)
    assert "chance (10.0%)" in labels
    chance = [ln for ln in ax.get_lines() if ln.get_label() == "chance (10.0%)"]
    assert len(chance) == 1 and set(chance[0].get_ydata()) == {10.0}
    plt.close(fig)
    # with the paper: a RIM of 6 modules is drawn beside the paper's RIM with the same k
    fig = figures.plot_accuracy(record)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "rim-6x100-k4 (paper)" in labels and figures.paper_name("rim-6x32-k4") == "rim-6x100-k4"
    plt.close(fig)
    assert "the paper's Table 1" in mr.format_table(record)
