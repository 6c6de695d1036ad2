"""Bouncing-balls experiment: frame models, rollouts, training, the smoke run and the CLI."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minirims.__main__ import build_parser  # noqa: E402
from minirims.experiments import baselines, common, figures, tracking  # noqa: E402
from minirims.experiments import bouncing_balls as bb  # noqa: E402
from minirims.experiments.video import (  # noqa: E402
    FrameDecoder,
    FrameEncoder,
    FramePredictor,
    next_frame_loss,
    rollout,
    rollout_loss,
    soft_f1,
)
from minirims.model import LSTMBaseline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


#: the smoke profile's frame model sizes: 16x16 frames, channels 8-16, a 32-wide embedding
SMALL = bb.PROFILES["smoke"]


def _frames(b: int = 2, t: int = 6, size: int = 16) -> torch.Tensor:
    from minirims.experiments.data.balls import make_balls

    return make_balls(b, 4, t, seed=0).frames(size=size)


@pytest.mark.parametrize("name", ["rim-6x16-k4", "lstm-256"])
def test_model_forward_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = bb.make_model(name, SMALL)
    frames = _frames()
    logits, _, trace = model(frames, trace=True) if name.startswith("rim") else model(frames)
    assert logits.shape == frames.shape
    if name.startswith("rim"):
        assert trace.masks.shape == (2, 6, 6) and torch.all(trace.masks.sum(-1) == 4)


def test_rollout_shapes() -> None:
    torch.manual_seed(0)
    model = bb.make_model("rim-6x16-k4", SMALL)
    frames = _frames(2, 30)
    out = rollout(model, frames, n_given=15, n_future=15, trace=True)
    assert out.predictions.shape == (2, 15, 1, 16, 16)
    assert out.targets.shape == (2, 15, 1, 16, 16) and torch.equal(out.targets, frames[:, 15:30])
    assert out.bce.shape == (2, 15) and torch.all(out.bce > 0)
    assert 0 <= out.predictions.min() and out.predictions.max() <= 1
    with pytest.raises(ValueError, match="frames"):
        rollout(model, frames[:, :20], n_given=15, n_future=15)


def test_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = bb.make_model("lstm-32", SMALL)
    frames = _frames(8, 6)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = next_frame_loss(model, frames)[0].item()
    for _ in range(30):
        loss, _ = next_frame_loss(model, frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert next_frame_loss(model, frames)[0].item() < 0.8 * first


def test_smoke_run_writes_record(tmp_path) -> None:
    settings = bb.settings("smoke", models=["rim-6x16-k4", "lstm-256"])
    trained: dict[str, torch.nn.Module] = {}
    result = bb.run(
        settings, seeds=1, results=tmp_path, runs_dir=tmp_path / "runs", progress=False, trained=trained
    )
    path = tmp_path / "bouncing_balls_smoke.json"
    assert path.exists()
    record = json.loads(path.read_text())
    n_future = settings.n_future
    for model in ("rim-6x16-k4", "lstm-256"):
        for set_name in bb.TEST_SETS:
            entry = record["metrics"][model][set_name]
            assert len(entry["per_frame"]) == n_future
            assert np.all(np.isfinite(entry["per_frame"]))
        # the shared keys of every model entry: best epoch per seed, training seconds summed over seeds
        assert record["metrics"][model]["best_epoch"] == [0]
        assert isinstance(record["metrics"][model]["train_seconds"], float)
        assert record["parameters"][model] == bb.parameter_counts(settings)[model]["total"]
    assert set(trained) == {"rim-6x16-k4", "lstm-256"}  # run returns the record, trained models come here
    assert record["simulate_seconds"] > 0 and result["metrics"].keys() == record["metrics"].keys()
    examples = np.load(tmp_path / "bouncing_balls_smoke_examples.npz")
    assert examples["4 balls/rim-6x16-k4/masks"].shape == (16, 11, 6)
    assert "rim-6x16-k4" in bb.format_table(result)


def test_unknown_model_and_profile() -> None:
    with pytest.raises(ValueError, match=r"name: expected a model name like .*, got 'gru-3'"):
        bb.make_model("gru-3")
    with pytest.raises(
        ValueError, match=r"models\[0\]: expected a model name like .*, got 'transformer-2x64'"
    ):
        bb.settings("smoke", models=("transformer-2x64",))  # a kind the balls experiment does not know
    with pytest.raises(ValueError, match=r"name: expected a model name like .*, got 'rim-6-4'"):
        bb.make_model("rim-6-4")  # the old name says no size
    with pytest.raises(ValueError, match="profile"):
        bb.settings("huge")
    rim = bb.make_model("rim-6x16-k4", bb.PROFILES["smoke"])
    assert (rim.core.n_modules, rim.core.k_active, rim.core.d_out) == (6, 4, 96)
    assert bb.make_model("lstm-512", bb.PROFILES["smoke"]).core.d_out == 512
    assert bb.PROFILES["full"].models == ("rim-6x100-k4", "lstm-256", "lstm-512")


def test_every_profile_trains_by_the_same_recipe() -> None:
    # teacher forcing, BCE + a soft-F1 term, the best epoch by validation F1: what the probes chose
    for name, s in bb.PROFILES.items():
        assert (s.train_given, s.sharpen, s.select) == (s.n_frames - 1, 0.5, "f1"), name
    cpu, long = bb.PROFILES["cpu"], bb.PROFILES["long"]
    same = ("frame_size", "channels", "d_embed", "lr", "batch_size", "n_frames", "n_given")
    assert all(getattr(cpu, k) == getattr(long, k) for k in same)
    assert set(long.models) < set(cpu.models)  # the RIM and the LSTM of about its size
    assert bb.training_steps(long) > 5 * bb.training_steps(cpu)


def test_cli_parses_profile_and_seeds(capsys) -> None:
    from minirims.__main__ import main

    argv = ["bouncing-balls", "--profile", "full", "--seeds", "3", "--n-future", "35"]
    parser, _ = build_parser(argv)
    args = parser.parse_args(argv)
    assert args.profile == "full" and args.seeds == 3 and args.n_future == 35
    # an unknown profile is refused as every experiment refuses it: one line, status 2, nothing run
    assert main(["bouncing-balls", "--profile", "huge"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "python -m minirims bouncing-balls: error: profile: "
        "expected one of smoke, cpu, full, long, got 'huge'"
    ]
    assert captured.out == ""


def _tiny(name: str = "rim-6x16-k4"):
    torch.manual_seed(0)
    return bb.make_model(name, SMALL)


def test_rollout_feeds_back_its_own_predictions() -> None:
    model = _tiny()
    frames = _frames(2, 10)
    out = rollout(model, frames, n_given=4, n_future=5)
    # the future true frames are only targets: changing them changes the score, not the predictions
    other = frames.clone()
    other[:, 4:] = 1.0 - other[:, 4:]
    out2 = rollout(model, other, n_given=4, n_future=5)
    torch.testing.assert_close(out2.predictions, out.predictions)
    assert not torch.allclose(out2.bce, out.bce)
    # step by step by hand: the first prediction comes from the given frames, the next from it
    model.eval()
    with torch.no_grad():
        logits, state, _ = model(frames[:, :4])
        first = torch.sigmoid(logits[:, -1:])
        second = torch.sigmoid(model(first, state)[0])
    torch.testing.assert_close(out.predictions[:, :1], first)
    torch.testing.assert_close(out.predictions[:, 1:2], second)
    # the score is the BCE summed over the pixels of each frame
    manual = torch.nn.functional.binary_cross_entropy(out.predictions, out.targets, reduction="none")
    torch.testing.assert_close(out.bce, manual.sum(dim=(2, 3, 4)), rtol=1e-4, atol=1e-3)


def test_rollout_trace_covers_every_step_and_restores_training_mode() -> None:
    model = _tiny()
    model.train()
    out = rollout(model, _frames(3, 9), n_given=5, n_future=4, trace=True)
    assert model.training
    assert out.trace.masks.shape == (3, 5 + 4 - 1, 6)
    assert torch.all(out.trace.masks.sum(-1) == 4)
    assert rollout(_tiny("lstm-32"), _frames(1, 9), 5, 4, trace=True).trace is None


def test_encoder_signal_and_decoder_prior_at_init() -> None:
    torch.manual_seed(0)
    frames = _frames(4, 3)[:, :, 0:1].reshape(-1, 1, 16, 16)
    z = FrameEncoder(16, 32, (8, 16))(frames)
    assert z.shape == (12, 32) and z.std() > 0.1  # He init: the frame reaches the core at init
    logits = FrameDecoder(32, 16, (8, 16))(torch.zeros(2, 32))
    assert logits.shape == (2, 1, 16, 16)
    assert torch.allclose(logits, torch.full_like(logits, -2.5))  # starts at the "mostly black" prior


def test_channels_last_layers_compute_the_plain_nchw_function() -> None:
    # the encoder/decoder keep their conv weights channels-last (speed); the same weights in the default
    # layout, applied by hand, must give the same outputs and gradients
    torch.manual_seed(0)
    enc, dec = FrameEncoder(16, 32, (8, 16)).double(), FrameDecoder(32, 16, (8, 16)).double()
    assert enc.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    frames = torch.rand(5, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    z = enc(frames)
    x = frames
    for layer in enc.convs:
        x = (
            layer(x)
            if not isinstance(layer, torch.nn.Conv2d)
            else torch.nn.functional.conv2d(x, layer.weight.contiguous(), layer.bias, stride=2, padding=1)
        )
    assert torch.allclose(z, enc.fc(x), atol=1e-12)
    logits = dec(z)
    assert logits.is_contiguous() and logits.shape == (5, 1, 16, 16)
    y = dec.fc(z).view(-1, dec.top, dec.side, dec.side)
    for layer in dec.deconvs:
        y = (
            layer(y)
            if not isinstance(layer, torch.nn.ConvTranspose2d)
            else torch.nn.functional.conv_transpose2d(
                y, layer.weight.contiguous(), layer.bias, stride=2, padding=1
            )
        )
    assert torch.allclose(logits, y, atol=1e-12)
    (g_fast,) = torch.autograd.grad(logits.square().sum(), frames, retain_graph=True)
    (g_plain,) = torch.autograd.grad(y.square().sum(), frames)
    assert torch.allclose(g_fast, g_plain, atol=1e-10)


def test_frame_model_validation_messages() -> None:
    model = _tiny("lstm-32")
    with pytest.raises(
        ValueError, match=r"frames: expected shape \(B, T, 1, 16, 16\) with T >= 1, got \(2, 6, 1, 8, 8\)"
    ):
        model(torch.zeros(2, 6, 1, 8, 8))
    with pytest.raises(ValueError, match=r"frames: expected a floating-point tensor"):
        model(torch.zeros(2, 6, 1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"frames: expected at least 2 frames"):
        next_frame_loss(model, torch.zeros(2, 1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"frame_size: expected a positive multiple of 4, got 18"):
        FramePredictor(LSTMBaseline(32, 32), frame_size=18, channels=(8, 16))
    with pytest.raises(ValueError, match=r"channels: expected a non-empty tuple of positive ints"):
        FramePredictor(LSTMBaseline(32, 32), frame_size=16, channels=())
    with pytest.raises(ValueError, match=r"n_given: expected a positive int, got 0"):
        rollout(model, _frames(1, 6), n_given=0, n_future=2)


def test_settings_overrides_and_validation() -> None:
    s = bb.settings("smoke", epochs=2)
    assert s.profile == "smoke" and s.epochs == 2 and s.models == bb.PROFILES["smoke"].models
    assert s == bb.PROFILES["smoke"].replace(epochs=2) and s.replace(epochs=1) == bb.PROFILES["smoke"]
    assert bb.settings("cpu").frame_size == 32 and bb.settings("full").frame_size == 64
    with pytest.raises(ValueError, match=r"overrides: expected keys among .*, got unknown \['epoch'\]"):
        bb.settings("smoke", epoch=2)
    with pytest.raises(ValueError, match=r"n_frames: expected an int >= 2, got 1"):
        bb.settings("smoke", n_frames=1)
    with pytest.raises(ValueError, match=r"^train_given: expected an int in \[1, 11\], got 12$"):
        bb.settings("smoke", train_given=12)  # at most n_frames - 1 = 11
    with pytest.raises(ValueError, match=r"feedback_grad: expected one of True, False, got 'yes'"):
        bb.settings("smoke", feedback_grad="yes")
    with pytest.raises(ValueError, match=r"batch_size: expected a positive int, got 0"):
        bb.settings("smoke", batch_size=0)
    with pytest.raises(ValueError, match=r"seeds: expected a count >= 1 or a list"):
        bb.run("smoke", seeds=0, save=False)


def test_the_learning_rate_schedule_reaches_the_training_loop(fit_configs) -> None:
    """lr_schedule / warmup_steps are settings (checked like the others) and become fit's TrainConfig."""
    with pytest.raises(ValueError, match=r"^lr_schedule: expected one of constant, cosine, got 'step'$"):
        bb.settings("smoke", lr_schedule="step")
    with pytest.raises(ValueError, match=r"^warmup_steps: expected an int >= 0, got -1$"):
        bb.settings("smoke", warmup_steps=-1)
    seen = fit_configs(common)  # the one training loop of every experiment
    settings = bb.settings("smoke", models=["lstm-256"], lr_schedule="cosine", warmup_steps=3)
    with pytest.raises(RuntimeError, match="stop here"):
        bb.run(settings, save=False, progress=False)
    assert seen[0].lr_schedule == "cosine" and seen[0].warmup_steps == 3


def test_profile_comes_from_the_environment(smoke_profile) -> None:
    assert bb.settings().profile == "smoke"


def test_evaluation_and_baseline_shapes() -> None:
    s = bb.settings("smoke", n_test=5)
    data = bb.make_data(s)
    on = {k: v.to("cpu") for k, v in data.items()}
    scores = bb.evaluate_rollouts(_tiny(), on["4 balls"], s, batch_size=2)
    assert set(scores) == set(bb.SCORES)
    assert all(curve.shape == (s.n_future,) and np.all(np.isfinite(curve)) for curve in scores.values())
    assert np.all(scores["bce"] > 0) and np.all((0 <= scores["f1"]) & (scores["f1"] <= 1))
    assert np.all((0 <= scores["track"]) & (scores["track"] <= tracking.PENALTY * s.frame_size + 1e-9))
    # the same scores in batches of 2 or all at once
    whole = bb.evaluate_rollouts(_tiny(), on["4 balls"], s, batch_size=5)
    for key in bb.SCORES:
        np.testing.assert_allclose(whole[key], scores[key], rtol=1e-5, atol=1e-6)
    base = baselines.mean_frame_baseline(on["6-8 balls"], s)
    assert base.shape == (s.n_future,) and np.all(np.isfinite(base)) and np.all(base > 0)
    # more balls: more white pixels, more uncertainty for a guess that ignores motion
    assert baselines.mean_frame_baseline(on["4 balls"], s).mean() < base.mean()


def test_figures_and_viewer() -> None:
    truth = np.random.default_rng(0).random((8, 16, 16))
    preds = {"rim-6x16-k4": (truth * 255).astype(np.uint8), "lstm-256": truth}
    masks = np.zeros((7, 6), dtype=bool)
    masks[:, :4] = True
    assert isinstance(figures.plot_frames(truth, title="strip", every=2), Figure)
    assert isinstance(figures.plot_rollouts(truth, preds, n_given=4), Figure)
    fig = figures.show_rollout_frame(5, truth, preds, 4, masks)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    curves = {"4 balls": {"rim-6x16-k4": np.arange(4.0)}, "curtain": {"rim-6x16-k4": np.ones(4)}}
    assert len(figures.plot_bce_curves(curves, n_given=4).axes) == 2
    with pytest.raises(ValueError, match=r"t: expected an int in \[0, 7\], got 8"):
        figures.show_rollout_frame(8, truth, preds, 4)
    with pytest.raises(ValueError, match=r"masks: expected shape \(7, n\), got \(8, 6\)"):
        figures.show_rollout_frame(1, truth, preds, 4, np.zeros((8, 6), dtype=bool))
    with pytest.raises(ValueError, match=r"truth: expected frames of shape \(T, H, W\)"):
        figures.plot_rollouts(truth[0], preds, 4)
    viewer = figures.rollout_viewer(truth, preds, 4, masks, t=4)
    slider = viewer.children[0]
    assert (slider.min, slider.max, slider.value) == (0, 7, 4)
    slider.value = 6  # redraws without error
    videos = {"truth": np.stack([truth] * 20), "rim-6x16-k4": np.stack([preds["rim-6x16-k4"]] * 20)}
    grid = figures.plot_videos_at(videos, 5, n_given=4)
    assert len(grid.axes) == 2 * 16 and grid.axes[0].get_ylabel() == "truth"  # at most 16 videos
    assert "frame t+2 of 16 test videos" in grid.get_suptitle()
    with pytest.raises(ValueError, match=r"t: expected a predicted frame in \[4, 7\], got 2"):
        figures.plot_videos_at(videos, 2, n_given=4)
    with pytest.raises(ValueError, match=r"videos: expected \(V, T, H, W\) arrays of one shape"):
        figures.plot_videos_at({"truth": truth}, 5, n_given=4)


def test_cli_smoke_end_to_end(tmp_path, capsys) -> None:
    argv = ["bouncing-balls", "--profile", "smoke", "--models", "lstm-32", "--results", str(tmp_path)]
    argv += ["--no-progress", "--runs-dir", str(tmp_path / "runs"), "--n-future", "8"]
    parser, modules = build_parser(argv)
    args = parser.parse_args(argv)
    assert bb.main(args) == 0
    record = json.loads((tmp_path / "bouncing_balls_smoke.json").read_text())
    assert record["profile"] == "smoke" and record["seeds"] == [0]
    assert set(record["metrics"]) == {"lstm-32", *bb.BASELINES, *baselines.REFERENCES}
    assert record["settings"]["frame_size"] == 16 and record["provenance"]["device"] == "cpu"
    examples = np.load(tmp_path / "bouncing_balls_smoke_examples.npz")
    assert record["settings"]["n_future"] == 8  # --n-future: the test's rollout, 6 given + 8 predicted
    assert len(record["metrics"]["lstm-32"]["curtain"]["per_frame"]) == 8
    assert examples["curtain/truth"].shape == (16, 14, 16, 16) and examples["curtain/truth"].dtype == np.uint8
    for guess in ("constant-velocity", "last-frame"):
        assert examples[f"curtain/{guess}"].shape == (16, 14, 16, 16)
    assert (tmp_path / "bouncing_balls_smoke.png").exists()  # the record's figure beside it
    out = capsys.readouterr().out
    assert "profile smoke" in out and "mean-frame" in out and "last-frame" in out
    for key in ("f1", "track"):  # every entry scores the picture beside the BCE, per frame and per seed
        for name in ("lstm-32", "last-frame", "constant-velocity"):
            entry = record["metrics"][name]["4 balls"][key]
            assert len(entry["per_frame"]) == 8 and len(entry["per_frame_per_seed"]) == 1
    curves = figures.record_curves(record, "f1")
    assert set(curves) == set(bb.TEST_SETS) and set(curves["curtain"]) == set(record["metrics"])
    fig = figures.plot_balls_scores(record)
    assert len(fig.axes) == 9 and fig.axes[0].get_ylabel().startswith("foreground F1")
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)  # one, below the plots
    old = json.loads(json.dumps(record))  # a record from before F1: only its BCE row is drawn
    for entry in old["metrics"].values():
        for s in bb.TEST_SETS:
            entry[s].pop("f1"), entry[s].pop("track")
    assert len(figures.plot_balls_scores(old).axes) == 3
    with pytest.raises(ValueError, match="score: expected one of bce, f1, track, got 'iou'"):
        figures.record_curves(record, "iou")


def test_rollout_loss_is_teacher_forcing_at_t_minus_1_and_feeds_back_otherwise() -> None:
    torch.manual_seed(0)
    model = bb.make_model("lstm-32", SMALL)
    frames = _frames(3, 8)
    tf, _ = next_frame_loss(model, frames)
    same, metrics = rollout_loss(model, frames, n_given=7)
    torch.testing.assert_close(same, tf)
    assert "bce_rollout" not in metrics
    fed, metrics = rollout_loss(model, frames, n_given=3)
    assert not torch.allclose(fed, tf) and metrics["bce_rollout"].shape == ()
    # the fed-back frames are the model's own predictions: the loss at n_given matches the rollout's BCE
    r = rollout(model, frames, n_given=3, n_future=5)
    with torch.no_grad():
        _, m = rollout_loss(model.eval(), frames, n_given=3)
    torch.testing.assert_close(m["bce_rollout"], r.bce.mean(), rtol=1e-5, atol=1e-4)
    model.train()
    # with feedback_grad the gradient also reaches the encoder through the predictions: grads differ
    grads = []
    for flag in (True, False):
        model.zero_grad()
        rollout_loss(model, frames, 3, feedback_grad=flag)[0].backward()
        grads.append(model.encoder.fc[1].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match=r"n_given: expected an int in \[1, 7\]"):
        rollout_loss(model, frames, n_given=8)
    with pytest.raises(ValueError, match=r"n_given: expected an int in \[1, 7\]"):
        rollout_loss(model, frames, n_given=True)


def test_slots_let_the_rims_input_attention_choose_a_position() -> None:
    s = bb.settings("smoke", slots=True, slot_dim=8)
    rim, lstm = bb.make_model("rim-6x16-k4", s), bb.make_model("lstm-32", s)
    side = s.frame_size // 2 ** len(s.channels)
    assert rim.encoder.slots and rim.encoder.n_slots == side * side and rim.core.d_in == 8
    assert not lstm.encoder.slots  # an LSTM reads one vector, slots or not
    frames = _frames(2, 5)
    z = rim.encoder(frames[:, 0])
    assert z.shape == (2, side * side, 8)
    logits, _, trace = rim(frames, trace=True)
    assert logits.shape == frames.shape and trace.input_attn.shape[-1] == 1 + side * side  # null + positions
    # a slot is its position's features: changing the frame far from a position leaves that slot unchanged
    moved = frames[:, 0].clone()
    moved[..., :8, :8] = 1 - moved[..., :8, :8]  # the top-left quarter
    changed = (rim.encoder(moved) - z).abs().amax(-1)[0].view(side, side)
    assert changed[-1, -1] == 0 and changed[0, 0] > 0
    with pytest.raises(ValueError, match="slots: expected True or False, got 'yes'"):
        FrameEncoder(16, 8, (8, 16), slots="yes")


def test_sharpening_adds_one_minus_soft_f1_and_binary_feedback_feeds_sharp_frames() -> None:
    torch.manual_seed(0)
    model = bb.make_model("lstm-32", SMALL).eval()
    frames = _frames(3, 8)
    with torch.no_grad():
        plain, _ = rollout_loss(model, frames, n_given=3)
        sharp, m = rollout_loss(model, frames, n_given=3, sharpen=0.5)
        logits, _, _ = model(frames[:, :-1])  # teacher forcing: the soft F1 of the next-frame logits
        tf, tf_m = rollout_loss(model, frames, n_given=7, sharpen=2.0)
    assert 0 < float(m["soft_f1"]) < 1
    torch.testing.assert_close(sharp, plain + 0.5 * (1 - m["soft_f1"]))
    expected = soft_f1(logits[:, :, 0], frames[:, 1:, 0]).mean()
    torch.testing.assert_close(tf_m["soft_f1"], expected)
    # soft F1 is F1 when the probabilities are 0 or 1, and 1 for two empty frames
    truth = frames[:, 1:, 0]
    torch.testing.assert_close(
        soft_f1(torch.where(truth > 0.5, 30.0, -30.0), (truth > 0.5).float()), torch.ones(3, 7)
    )
    assert float(soft_f1(torch.full((4, 4), -50.0), torch.zeros(4, 4))) == 1.0
    # binary feedback: the model reads its predictions thresholded at 0.5, so the rollouts differ
    r = rollout(model, frames, n_given=3, n_future=5, feedback="binary")
    assert not torch.allclose(r.predictions, rollout(model, frames, n_given=3, n_future=5).predictions)
    with pytest.raises(ValueError, match="feedback: expected one of \\('probs', 'binary'\\), got 'hard'"):
        rollout(model, frames, n_given=3, n_future=5, feedback="hard")
    with pytest.raises(ValueError, match="sharpen: expected a finite number >= 0, got -1"):
        rollout_loss(model, frames, n_given=3, sharpen=-1)
    with pytest.raises(ValueError, match="sharpen: expected a number in \\[0, 100\\], got -0.5"):
        bb.settings("smoke", sharpen=-0.5)
    with pytest.raises(ValueError, match="select: expected one of"):
        bb.settings("smoke", select="mse")


def test_last_frame_baseline_spans_copy_to_mean_and_its_blend_is_tuned() -> None:
    s = bb.settings("smoke", n_test=6, n_val=8)
    on = {k: v.to("cpu") for k, v in bb.make_data(s).items()}
    mean = baselines.mean_frame_baseline(on["4 balls"], s)
    # blend 1: every pixel at the mean brightness, i.e. the mean-frame guess
    np.testing.assert_allclose(baselines.last_frame_baseline(on["4 balls"], s, 1.0), mean, rtol=1e-9)
    hard = baselines.last_frame_baseline(on["4 balls"], s, 0.0)
    # a hard copy is wrong by more and more pixels as the balls move away
    assert hard[-1] > hard[0] and hard.shape == (s.n_future,)
    blend = baselines.fit_last_frame_blend(on["val"], s)
    assert blend.shape == (s.n_future,) and set(blend) <= set(baselines.BLENDS)
    tuned = baselines.last_frame_baseline(on["val"], s, blend)
    for (
        fixed
    ) in baselines.BLENDS:  # per frame, the tuned blend is the grid's best on the videos it was tuned on
        assert np.all(tuned <= baselines.last_frame_baseline(on["val"], s, fixed) + 1e-9)
    with pytest.raises(ValueError, match=r"blend: expected a float or 6 floats in \[0, 1\]"):
        baselines.last_frame_baseline(on["4 balls"], s, 1.5)
    with pytest.raises(ValueError, match=r"blend: expected a float or 6 floats in \[0, 1\]"):
        baselines.last_frame_baseline(on["4 balls"], s, [0.1, 0.2])
    # the guess itself, still re-exported by the experiment: (1 - a) * last given frame + a * mean brightness
    frames = on["4 balls"].batch(torch.arange(2), s.frame_size, s.n_given + s.n_future)
    guess = bb.last_frame_guess(frames, s.n_given, s.n_future, 0.25)
    assert bb.last_frame_guess is baselines.last_frame_guess and guess.shape == (2, 6, 1, 16, 16)
    mean_b = frames[:, : s.n_given].mean(dim=(1, 2, 3, 4))
    expected = 0.75 * frames[:, s.n_given - 1] + 0.25 * mean_b.view(2, 1, 1, 1)
    torch.testing.assert_close(guess[:, 3], expected)
    assert baselines.BASELINES == bb.BASELINES == ("mean-frame", "last-frame")


def test_test_videos_are_the_training_length_or_longer_with_the_same_start() -> None:
    from minirims.experiments.data.balls import make_sets

    short = make_sets(4, 3, n_frames=6, seed=1, n_val=2)
    long = make_sets(4, 3, n_frames=6, seed=1, n_val=2, test_frames=20)
    assert long["train"].n_frames == 6 and long["4 balls"].n_frames == 20 and long["val"].n_frames == 20
    np.testing.assert_array_equal(long["train"].positions, short["train"].positions)
    for name in ("4 balls", "6-8 balls", "curtain"):
        np.testing.assert_array_equal(long[name].positions[:, :6], short[name].positions)
    # a 35-frame rollout (the paper's long test) from the settings alone
    s = bb.settings("smoke", n_future=35, n_test=2, n_train=4, n_val=2)
    data = bb.make_data(s)
    assert data["4 balls"].n_frames == 6 + 35 and data["train"].n_frames == s.n_frames


def test_a_longer_test_reuses_the_trained_checkpoints(tmp_path) -> None:
    kw = dict(seeds=1, results=tmp_path, progress=False, runs_dir=tmp_path / "runs")
    settings = bb.settings("smoke", models=["lstm-8"])
    first = bb.run(settings, **kw)
    longer = bb.run(settings.replace(n_future=10), **kw)  # the 35-frame test of the paper, at smoke size
    assert longer["metrics"]["lstm-8"]["best_epoch"] == first["metrics"]["lstm-8"]["best_epoch"]
    assert len(longer["metrics"]["lstm-8"]["4 balls"]["per_frame"]) == 10
    # the same trained weights: the first 6 rollout frames score the same
    np.testing.assert_allclose(
        longer["metrics"]["lstm-8"]["4 balls"]["per_frame"][:6],
        first["metrics"]["lstm-8"]["4 balls"]["per_frame"],
        rtol=1e-5,
    )
    assert len(list((tmp_path / "runs").rglob("*.pt"))) == 1  # one checkpoint, not two
    train = bb.settings("smoke", n_future=35, n_test=3).training_dict()
    assert "n_future" not in train and "n_test" not in train and "models" not in train
    assert train == bb.settings("smoke").training_dict()
    with pytest.raises(ValueError, match=r"^n_given: expected an int in \[1, 11\], got 12$"):
        bb.settings("smoke", n_given=12, n_future=1)  # at most n_frames - 1 = 11


def test_short_settings_parameter_counts_and_switches_at_bounces() -> None:
    s = bb.settings("smoke")
    text = bb.describe_settings(s)
    assert len(text.splitlines()) == 2 and "48 videos of 12 frames" in text and "rim-6x16-k4" in text
    assert "lr 0.001\n" in text  # a constant rate says no more
    cosine = bb.describe_settings(bb.settings("smoke", lr_schedule="cosine", warmup_steps=7))
    assert "lr 0.001 (cosine, 7 warm-up steps)\n" in cosine
    counts = bb.parameter_counts(s)
    assert set(counts) == set(s.models)
    for c in counts.values():
        assert c["total"] == c["encoder"] + c["core"] + c["decoder"] > 0
    assert (
        counts["rim-6x16-k4"]["encoder"] == counts["lstm-256"]["encoder"]
    )  # the same encoder for every core
    torch.manual_seed(0)
    model = bb.make_model("rim-6x16-k4", s)
    balls = bb.make_data(s)["4 balls"]
    out = bb.switches_at_bounces(model, balls, s, n_videos=8)
    assert out["n_videos"] == 8 and sum(out["steps"].values()) == 8 * (balls.n_frames - 1)
    rates = [r for r in out["rate"].values() if r == r]
    assert rates and all(0 <= r <= 6 for r in rates)
    with pytest.raises(ValueError, match="model: expected a FramePredictor with a RIM core, got LSTMBase"):
        bb.switches_at_bounces(bb.make_model("lstm-256", s), balls, s)
    with pytest.raises(ValueError, match="n_videos: expected a positive int, got 0"):
        bb.switches_at_bounces(model, balls, s, n_videos=0)


def test_verdict_counts_frames_below_the_baselines_and_the_lstms() -> None:
    def entry(values):  # the same numbers as BCE and as tracking error (lower is better), negated as F1
        f1 = {"per_frame": [-v for v in values]}
        return {
            s: {"per_frame": list(values), "f1": f1, "track": {"per_frame": list(values)}}
            for s in bb.TEST_SETS
        }

    record = {
        "settings": {"n_future": 4},
        "metrics": {
            "rim-6x100-k4": entry([1, 2, 9, 3]),
            "lstm-256": entry([2, 1, 9, 4]),
            "lstm-512": entry([3, 3, 9, 5]),
            "mean-frame": entry([5, 5, 5, 5]),
            "last-frame": entry([4, 6, 8, 9]),
        },
    }
    for score in bb.SCORES:  # each score knows which way is better
        v = bb.verdict(record, score)["4 balls"]
        assert v["rim-6x100-k4"] == {
            "beats_baselines": 2,
            "frames_beating_baselines": 3,
            "beats_lstms": [1, 4],
            "ties_or_beats_lstms": [1, 3, 4],
        }
        assert v["lstm-256"] == {"beats_baselines": 2, "frames_beating_baselines": 3}
    text = bb.verdict_table(record)
    assert text.startswith("by foreground F1:")
    assert "rim-6x100-k4  better than both baselines for the first 2 of 4 frames" in text
    assert "better than every LSTM at 2 of 4 frames (1, 4)" in text
    with pytest.raises(ValueError, match="score: expected one of bce, f1, track, got 'mse'"):
        bb.verdict(record, "mse")
    for entry_ in record["metrics"].values():
        for s in bb.TEST_SETS:
            del entry_[s]["f1"]
    with pytest.raises(ValueError, match="the record holds no 'f1' for rim-6x100-k4, lstm-256"):
        bb.verdict(record)
    assert "tracking error" in bb.format_table(record) and "foreground F1" not in bb.format_table(record)
