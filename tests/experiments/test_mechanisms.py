"""Measurements on trained models (notebook 09): background flips, foreground activity, null attention."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from minirims.experiments import copying as cp  # noqa: E402
from minirims.experiments import figures, mechanisms  # noqa: E402
from minirims.experiments import mnist_resolution as mr  # noqa: E402

MNIST_SMOKE = mr.settings("smoke")
COPY_SMOKE = cp.settings("smoke")


def digits(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit-like images: a bright square on black, at a random place; labels 0..9."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):
        r, c = torch.randint(2, 18, (2,), generator=g).tolist()
        images[i, r : r + 8, c : c + 6] = 255
    return images, torch.randint(0, 10, (n,), generator=g)


def mnist_model(name: str) -> mr.MNISTClassifier:
    torch.manual_seed(0)
    return mr.make_model(name, MNIST_SMOKE).eval()


def test_flip_background_only_turns_background_on_and_nests_across_rates():
    tokens = (torch.rand(50, 196, generator=torch.Generator().manual_seed(1)) < 0.2).to(torch.uint8)
    low = mr.flip_background(tokens, 0.1, torch.Generator().manual_seed(2))
    high = mr.flip_background(tokens, 0.4, torch.Generator().manual_seed(2))
    assert low.dtype == tokens.dtype and low.shape == tokens.shape
    assert (low >= tokens).all() and (
        high >= low
    ).all()  # only 0 -> 1, and a higher rate keeps a lower's flips
    flipped = (low != tokens).sum() / (tokens == 0).sum()
    assert abs(flipped.item() - 0.1) < 0.02
    assert torch.equal(mr.flip_background(tokens, 0.0), tokens)
    assert (mr.flip_background(tokens, 1.0) == 1).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mr.flip_background(torch.zeros(3, 4), 0.1), r"^tokens: expected shape \(N, T\) of integer"),
        (
            lambda: mr.flip_background(torch.zeros(3, dtype=torch.long), 0.1),
            r"^tokens: expected shape \(N, T\)",
        ),
        (
            lambda: mr.flip_background(torch.zeros(3, 4, dtype=torch.long), 1.5),
            r"^rate: expected a number in",
        ),
        (
            lambda: mr.foreground_activity(mnist_model("lstm-16"), torch.zeros(2, 196, dtype=torch.long)),
            "^model:",
        ),
        (
            lambda: mr.foreground_activity(mnist_model("rim-6x8-k4"), torch.zeros(2, 196, dtype=torch.long)),
            r"^tokens: expected both stroke \(1\) and background \(0\) pixels",
        ),
        (lambda: mechanisms.mnist_foreground(mnist_model("rim-6x8-k4"), torch.zeros(2, 14, 14)), "^images:"),
        (
            lambda: mechanisms.mnist_robustness({}, *digits(), rates=(0.0, 2.0)),
            r"^rates\[1\]: expected a number in \[0, 1\], got 2.0$",
        ),
        (
            lambda: mechanisms.mnist_robustness({}, digits()[0], torch.zeros(3)),
            r"^labels: expected shape \(12,\)",
        ),
        (lambda: mechanisms.copying_null_attention(cp.make_model("lstm-48", COPY_SMOKE)), "^model: expected"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_robustness_at_rate_zero_is_the_plain_accuracy_and_noise_reaches_the_models(one_thread):
    images, labels = digits()
    models = {"rim-6x8-k4": mnist_model("rim-6x8-k4"), "lstm-16": mnist_model("lstm-16")}
    acc = mechanisms.mnist_robustness(
        models, images, labels, sizes=(14, 16), rates=(0.0, 0.5), progress=False
    )
    assert (
        set(acc) == set(models) and set(acc["lstm-16"]) == {14, 16} and set(acc["lstm-16"][14]) == {0.0, 0.5}
    )
    plain = mr.evaluate_accuracy(models["lstm-16"], mr.pixel_sequences(images, 16), labels)
    assert acc["lstm-16"][16][0.0] == plain
    # the noise changes what the models see: their logits differ with half the background flipped
    tokens = mr.pixel_sequences(images, 14)
    noisy = mr.flip_background(tokens, 0.5, torch.Generator().manual_seed(14))
    assert not torch.allclose(models["rim-6x8-k4"](tokens), models["rim-6x8-k4"](noisy))


def test_foreground_activity_counts_each_kind_of_pixel(one_thread):
    model = mnist_model("rim-6x8-k4")
    images, _ = digits(6)
    tokens = mr.pixel_sequences(images, 14)
    act = mr.foreground_activity(model, tokens, batch_size=4)
    assert act.shape == (6, 2) and act.dtype == torch.float64 and ((act >= 0) & (act <= 1)).all()
    masks = mr.activity_masks(model, tokens).double()
    stroke = tokens == 1
    torch.testing.assert_close(act[:, 0], masks[stroke].mean(0))
    torch.testing.assert_close(act[:, 1], masks[~stroke].mean(0))
    # k = 4 of 6 modules are active at every step: the shares, weighted by the pixels, sum to k
    share = stroke.double().mean()
    assert ((share * act[:, 0] + (1 - share) * act[:, 1]).sum() - 4).abs() < 1e-9
    per_size = mechanisms.mnist_foreground(model, images, sizes=(14, 19))
    assert set(per_size) == {14, 19} and torch.equal(per_size[14], act)


def test_mnist_null_attention_separates_real_strokes_flipped_pixels_and_background(one_thread):
    model = mnist_model("rim-6x8-k4")
    images, _ = digits(6)
    null = mechanisms.mnist_null_attention(model, images, 14, rate=0.3)
    assert set(null) == {"stroke", "flipped", "background"}
    assert all(v.shape == (6,) and ((v > 0) & (v < 1)).all() for v in null.values())
    tokens = mr.pixel_sequences(images, 14)
    noisy = mr.flip_background(tokens, 0.3, torch.Generator().manual_seed(14))
    trace = model(noisy, trace=True)[1]
    flipped = (noisy == 1) & (tokens == 0)
    torch.testing.assert_close(null["flipped"], trace.input_attn[..., 0][flipped].double().mean(0))
    assert mechanisms.mnist_null_attention(model, images, 14, rate=0.0)["flipped"].isnan().all()
    with pytest.raises(ValueError, match="^model: expected an MNISTClassifier with a RIM core"):
        mechanisms.mnist_null_attention(mnist_model("lstm-16"), images, 14)


def test_null_attention_per_token_kind(one_thread):
    torch.manual_seed(0)
    model = cp.make_model("rim-6x8-k4", COPY_SMOKE)
    null = mechanisms.copying_null_attention(model, delay=12, n=8)
    assert set(null) == {"digit", "blank", "marker"}
    assert all(v.shape == (6,) and ((v > 0) & (v < 1)).all() for v in null.values())
    distract = cp.make_model("rim-6x8-k4", cp.settings("smoke", distractor_rate=0.1))
    assert set(mechanisms.copying_null_attention(distract, delay=12, n=8)) == {
        "digit",
        "blank",
        "marker",
        "distractor",
    }


def test_run_writes_a_record_of_every_measurement_and_its_figures_draw(tmp_path, monkeypatch, one_thread):
    from minirims.experiments import references

    def fake_reference(module, name, profile="cpu", folder=None):
        torch.manual_seed(0)
        return module.make_model(name, module.settings("smoke")).eval(), {}

    monkeypatch.setattr(references, "load_reference_model", fake_reference)
    monkeypatch.setattr(mechanisms, "load_mnist", lambda split: digits(10))
    monkeypatch.setattr(cp, "knockout_accuracy", lambda model, delay: torch.full((7, 10), 0.5))
    null = {"digit": torch.full((6,), 0.5), "blank": torch.full((6,), 0.9), "marker": torch.zeros(6)}
    monkeypatch.setattr(mechanisms, "copying_null_attention", lambda model: null)  # tested on its own above
    record = mechanisms.run("smoke", n_test=10, results=tmp_path, progress=False)
    saved = json.loads((tmp_path / "mechanisms_smoke.json").read_text())
    assert saved["experiment"] == "mechanisms" and saved["provenance"]["torch"] == torch.__version__
    m = saved["metrics"]
    assert m["chance"] == 0.1 and set(m["acc_flipped"]) == set(MNIST_SMOKE.models)
    sizes = [str(s) for s in MNIST_SMOKE.test_sizes]
    rim = next(n for n in MNIST_SMOKE.models if n.startswith("rim"))
    assert list(m["foreground"]) == [rim] and list(m["foreground"][rim]) == sizes
    assert set(m["null_attention_flipped"][rim][sizes[0]]) == {"stroke", "flipped", "background"}
    assert list(m["acc_flipped"][rim][sizes[0]]) == [str(r) for r in mechanisms.FLIP_RATES]
    assert set(m["knockout"]) == set(m["null_attention"]) == {"rim-6x8-k4"}
    assert m["null_attention"]["rim-6x8-k4"]["blank"] == pytest.approx([0.9] * 6)
    assert record["settings"]["n_test"] == 10
    for fig in (figures.plot_flip_robustness(saved), figures.plot_foreground(saved)):
        assert fig.axes
    pngs = mechanisms.save_figures(saved, tmp_path / "mechanisms_smoke.json")
    assert [p.name for p in pngs] == ["mechanisms_smoke_flip.png", "mechanisms_smoke_foreground.png"]
    assert all(p.stat().st_size > 1000 for p in pngs)
    with pytest.raises(ValueError, match=r"^model: expected one of \['rim"):
        figures.plot_foreground(saved, "lstm-16")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "nope"], "profile: expected one of smoke, cpu, full, long, got 'nope'"),
        (["--n-test", "0"], "n_test: expected an int in [1, 10000], got 0"),
    ],
)
def test_cli_user_errors_end_in_one_line(argv, message, capsys):
    from minirims.__main__ import main

    assert main(["mechanisms", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"python -m minirims mechanisms: error: {message}"


def test_a_profile_the_copying_task_lacks_measures_mnist_only(tmp_path, monkeypatch, one_thread):
    from minirims.experiments import references

    loaded = []

    def fake_reference(module, name, profile="cpu", folder=None):
        loaded.append((module.EXPERIMENT, name, profile))
        torch.manual_seed(0)
        return module.make_model(name, module.settings("smoke")).eval(), {}

    monkeypatch.setattr(references, "load_reference_model", fake_reference)
    monkeypatch.setattr(mechanisms, "load_mnist", lambda split: digits(4))
    monkeypatch.setattr(mr, "settings", lambda profile=None, **kw: MNIST_SMOKE.replace(test_sizes=(14,)))
    record = mechanisms.run("long", n_test=4, save=False, progress=False)
    assert {e for e, _, _ in loaded} == {"mnist_resolution"} and {p for _, _, p in loaded} == {"long"}
    assert "knockout" not in record["metrics"] and record["models"]["copying"] == []
