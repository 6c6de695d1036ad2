"""The copying task: data layout, models, a tiny run and its record, the CLI, the exercise check."""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from minirims.course import checks  # noqa: E402
from minirims.experiments import common, figures  # noqa: E402
from minirims.experiments import copying as cp  # noqa: E402
from minirims.experiments.common import count_parameters  # noqa: E402

SMOKE = cp.PROFILES["smoke"]
RIM, LSTM = SMOKE.models  # "rim-6x8-k4", "lstm-48"
TINY = {"steps_per_epoch": 3, "epochs": 2, "n_eval": 8, "eval_batch_size": 8, "test_delays": (5, 9)}


def test_layout_of_a_sequence():
    digits = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 1, 2]])
    tokens, targets = cp.copying_sequences(digits, 4)
    assert tokens.shape == targets.shape == (1, 24) and tokens.dtype == targets.dtype == torch.long
    assert tokens[0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 0, 0, 0, 9] + [0] * 10
    assert targets[0].tolist() == [0] * 14 + [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]


def test_random_batches_are_seeded_and_use_digits_1_to_8():
    a = cp.copying_batch(256, 50, torch.Generator().manual_seed(3))
    b = cp.copying_batch(256, 50, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    digits = a[0][:, :10]
    assert digits.min() == 1 and digits.max() == 8
    assert (a[0][:, 10:59] == 0).all() and (a[0][:, 59] == 9).all() and (a[0][:, 60:] == 0).all()
    assert torch.equal(a[1][:, -10:], digits) and (a[1][:, :-10] == 0).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: cp.copying_batch(0, 5), r"n: expected a positive int, got 0"),
        (lambda: cp.copying_batch(2, 0), r"delay: expected a positive int, got 0"),
        (lambda: cp.copying_batch(2, 2.5), r"delay: expected a positive int, got 2.5"),
        (
            lambda: cp.copying_sequences(torch.ones(2, 9, dtype=torch.long), 3),
            r"digits: expected .* \(N, 10\)",
        ),
        (
            lambda: cp.copying_sequences(torch.zeros(2, 10, dtype=torch.long), 3),
            r"digits: expected integers in 1..8",
        ),
        (lambda: cp.settings("smoke", epochs=1.5), r"^epochs: expected a positive int, got 1.5$"),
        (lambda: cp.settings("smoke", test_delays=[]), r"^test_delays: expected a non-empty list"),
        (lambda: cp.settings("smoke", test_delays=(5, 5)), r"^test_delays: expected a list of distinct"),
        (lambda: cp.settings("smoke", n_eval=0), r"^n_eval: expected a positive int, got 0$"),
        (lambda: cp.settings("smoke", nope=1), r"^overrides: expected keys among .*unknown \['nope'\]"),
        (
            lambda: cp.make_model("gru"),
            r"^name: expected a model name like 'rim-6x48-k4' or 'lstm-288', got 'gru'$",
        ),
        (lambda: cp.make_model("transformer-2x64"), r"^name: expected a model name like .*, got 'trans"),
        (lambda: cp.make_model("rim-6x8-k7"), r"^name: expected k active in \[1, n = 6\]"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_models_same_state_size_and_logits_shape():
    settings = cp.settings("cpu")
    assert settings.models == ("rim-6x48-k4", "lstm-288")
    rim, lstm = (cp.make_model(name, settings) for name in settings.models)
    assert rim.core.d_out == lstm.core.d_out == 288
    assert (rim.core.n_modules, rim.core.k_active) == (6, 4)
    assert rim.core.compile_step and settings.compile  # the cpu profile compiles the RIM's step
    assert 100_000 < count_parameters(rim) < 400_000 and 100_000 < count_parameters(lstm) < 400_000
    for name in SMOKE.models:
        tokens, _ = cp.copying_batch(2, 5)
        assert cp.make_model(name, SMOKE)(tokens).shape == (2, 25, 10)
    assert cp.PROFILES["full"].models == ("rim-6x100-k4", "lstm-600")


def test_tiny_run_writes_a_record_with_every_delay(tmp_path, one_thread):
    settings = cp.settings("smoke", **TINY)
    record = cp.run(settings, seeds=[0, 1], results=tmp_path, runs_dir=tmp_path / "runs", progress=False)
    saved = json.loads((tmp_path / "copying_smoke.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["experiment"] == "copying"
    assert saved["settings"] == settings.as_dict() and saved["settings"]["test_delays"] == [5, 9]
    for name in (RIM, LSTM):
        for key in ("acc", "ce"):
            for delay in ("5", "9"):
                cell = record["metrics"][name][key][delay]
                assert cell["n"] == 2 and len(cell["values"]) == 2
        assert 0 <= record["metrics"][name]["acc"]["9"]["mean"] <= 1
        assert len(record["curves"][name]["0"]) == 2  # one row per epoch
        assert len(record["metrics"][name]["best_epoch"]) == 2  # one per seed
        assert isinstance(record["metrics"][name]["train_seconds"], float)
    assert record["metrics"]["chance"] == {"acc": 1 / 8, "ce": pytest.approx(2.0794, abs=1e-4)}
    table = cp.format_table(record)
    assert "T=9" in table and "chance" in table and "12.5%" in table and RIM in table
    fig = figures.plot_accuracy(record)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert {RIM, LSTM, "chance (12.5%)"} <= set(labels)
    import matplotlib.pyplot as plt

    plt.close(fig)
    # a rerun resumes from the checkpoints and gives the same numbers
    again = cp.run(settings, seeds=[0, 1], save=False, runs_dir=tmp_path / "runs", progress=False)
    assert again["metrics"][RIM]["acc"] == record["metrics"][RIM]["acc"]


def test_the_learning_rate_schedule_reaches_the_training_loop(fit_configs):
    """lr_schedule / warmup_steps are settings (checked like the others) and become fit's TrainConfig."""
    with pytest.raises(ValueError, match=r"^lr_schedule: expected one of constant, cosine, got 'step'$"):
        cp.settings("smoke", lr_schedule="step")
    with pytest.raises(ValueError, match=r"^warmup_steps: expected an int >= 0, got 1.5$"):
        cp.settings("smoke", warmup_steps=1.5)
    seen = fit_configs(common)  # the one training loop of every experiment
    with pytest.raises(RuntimeError, match="stop here"):
        cp.run(
            cp.settings("smoke", models=[LSTM], lr_schedule="cosine", warmup_steps=3),
            save=False,
            progress=False,
        )
    assert seen[0].lr_schedule == "cosine" and seen[0].warmup_steps == 3


def test_a_model_trains_at_its_own_rate_from_lr_by_model(fit_configs):
    seen = fit_configs(common)
    settings = cp.settings("smoke", lr=2e-3, lr_by_model={LSTM: 5e-3})
    with pytest.raises(RuntimeError, match="stop here"):
        cp.run(settings.replace(models=(LSTM,)), save=False, progress=False)
    with pytest.raises(RuntimeError, match="stop here"):
        cp.run(settings.replace(models=(RIM,)), save=False, progress=False)
    assert [c.lr for c in seen] == [5e-3, 2e-3]
    assert settings.train_config(RIM, seed=0).lr == 2e-3


def test_training_lowers_the_copy_loss(one_thread):
    torch.manual_seed(0)
    model = cp.make_model(LSTM, SMOKE)
    before = cp.evaluate(model, 5, 64, 64)["ce"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        tokens, targets = cp.copying_batch(32, 5, gen)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(
            logits[:, -10:].reshape(-1, 10), targets[:, -10:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert cp.evaluate(model, 5, 64, 64)["ce"] < before - 0.05


def test_activity_masks_and_inactive_modules_keep_state():
    torch.manual_seed(0)
    model = cp.make_model(RIM, SMOKE)
    tokens, _ = cp.copying_batch(1, 12)
    masks = cp.activity_masks(model, tokens[0])
    assert masks.shape == (1, 32, model.core.n_modules) and (masks.sum(-1) == model.core.k_active).all()
    with pytest.raises(ValueError, match=r"model: expected a CopyModel with a RIM core"):
        cp.activity_masks(cp.make_model(LSTM, SMOKE), tokens)


def test_cli_user_errors_end_in_one_line_with_status_2(capsys):
    from minirims.__main__ import main

    assert main(["copying", "--profile", "smoke", "--epochs", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "python -m minirims copying: error: epochs: expected a positive int, got 0"
    ]
    assert "profile smoke" not in captured.out  # refused before anything is printed or trained
    parser = argparse.ArgumentParser()
    cp.add_arguments(parser)
    with pytest.raises(ValueError, match="epochs: expected a positive int, got 0"):  # the Python API raises
        cp.main(parser.parse_args(["--profile", "smoke", "--epochs", "0"]))


def test_check_accepts_the_reference_and_names_the_mistakes():
    checks.check_copying_sequences(cp.copying_sequences)

    def marker_one_late(digits, delay):
        tokens, targets = cp.copying_sequences(digits, delay)
        tokens[:, 10 + delay - 1] = 0
        tokens[:, min(10 + delay, tokens.shape[1] - 1)] = 9
        return tokens, targets

    with pytest.raises(checks.ExerciseFailure, match=r"tokens \(delay=1\).*is the marker \(9\)"):
        checks.check_copying_sequences(marker_one_late)
    with pytest.raises(
        checks.ExerciseFailure, match=r"expected shape \(3, 21\) \(10 digits \+ delay \+ 10\)"
    ):
        checks.check_copying_sequences(
            lambda d, t: cp.copying_sequences(torch.cat([d, d[:, :1]], 1)[:, :10], t + 1)
        )
    with pytest.raises(checks.ExerciseFailure, match=r"expected dtype torch.int64"):
        checks.check_copying_sequences(lambda d, t: tuple(x.float() for x in cp.copying_sequences(d, t)))
    with pytest.raises(checks.ExerciseFailure, match=r"expected a pair \(tokens, targets\)"):
        checks.check_copying_sequences(lambda d, t: cp.copying_sequences(d, t)[0])
    with pytest.raises(NotImplementedError):
        checks.check_copying_sequences(
            lambda d, t: (_ for _ in ()).throw(NotImplementedError("Exercise 6.1"))
        )


def test_record_keeps_the_commit_the_run_started_from(monkeypatch, tmp_path):
    calls = iter(
        [
            {"git_commit": "aaa", "git_dirty": False, "device": "cpu"},  # at the start of the run
            {"git_commit": "bbb", "git_dirty": True, "device": "cpu"},  # at the end: committed meanwhile
        ]
    )
    monkeypatch.setattr(common, "provenance", lambda device=None: next(calls))
    settings = cp.settings("smoke", models=[LSTM], **TINY)
    record = cp.run(settings, save=False, runs_dir=tmp_path, progress=False)
    prov = record["provenance"]
    assert prov["git_commit"] == "aaa" and prov["git_dirty"] is False
    assert prov["git_commit_at_end"] == "bbb" and prov["git_dirty_at_end"] is True
    assert prov["flush_denormals"] is torch.set_flush_denormal(False)  # on wherever this CPU can flush


def test_shared_settings_helpers():
    from minirims.experiments import mnist_resolution as mr

    smoke = cp.settings("smoke")
    a = common.settings_key(smoke.training_dict())
    assert a == common.settings_key(cp.settings("smoke").training_dict()) and len(a) == 10
    assert a != common.settings_key(cp.settings("smoke", epochs=2).training_dict())
    # what only the test reads does not change the key: the trained checkpoints are reused
    assert a == common.settings_key(cp.settings("smoke", test_delays=(7,), n_eval=3).training_dict())
    assert mr.settings("smoke", epochs=2).epochs == 2
    with pytest.raises(ValueError, match=r"overrides: expected keys among .*, got unknown \['nope'\]"):
        mr.settings("smoke", nope=1)


def test_knockout_row_zero_is_the_plain_accuracy_and_a_wiped_module_changes_the_answer(one_thread):
    torch.manual_seed(0)
    model = cp.make_model("rim-6x16-k4", SMOKE)
    delay, n = 12, 40
    acc = cp.knockout_accuracy(model, delay, n=n, batch_size=16)
    assert acc.shape == (7, cp.N_DIGITS) and acc.dtype == torch.float64
    assert bool(((acc >= 0) & (acc <= 1)).all())
    # reading the digits, then running on from that state, is the same run as one pass over the sequence
    assert abs(float(acc[0].mean()) - cp.evaluate(model, delay, n=n, batch_size=16)["acc"]) < 1e-6
    # a module holds something: wiping every module's state in turn changes some answers
    with torch.no_grad():
        model.head.weight.mul_(50)  # sharpen the read-out so that a changed state changes a digit
    acc = cp.knockout_accuracy(model, delay, n=n, batch_size=16)
    assert bool((acc[1:] != acc[0]).any())
    assert model.training  # the mode the model came in


def test_knockout_refuses_what_it_cannot_wipe_and_the_figure_draws_it():
    with pytest.raises(ValueError, match=r"^model: expected a CopyModel with a RIM core, got CopyModel$"):
        cp.knockout_accuracy(cp.make_model("lstm-32", SMOKE), 12)
    rim = cp.make_model("rim-6x16-k4", SMOKE)
    with pytest.raises(ValueError, match=r"^delay: expected a positive int, got 0$"):
        cp.knockout_accuracy(rim, 0)
    with pytest.raises(ValueError, match=r"^n: expected a positive int, got True$"):
        cp.knockout_accuracy(rim, 12, n=True)
    with pytest.raises(ValueError, match=r"accuracy: expected shape \(n_modules \+ 1, n_positions\)"):
        figures.plot_knockout(torch.ones(10))
    fig = figures.plot_knockout(torch.rand(7, 10), title="t")
    assert len(fig.axes[0].texts) == 70 and fig.axes[0].get_title() == "t"


def test_distractors_fill_only_blanks_of_the_wait_and_nest_across_rates():
    tokens, targets = cp.copying_batch(400, 30, torch.Generator().manual_seed(0))
    low = cp.add_distractors(tokens, 30, 0.1, torch.Generator().manual_seed(5))
    high = cp.add_distractors(tokens, 30, 0.5, torch.Generator().manual_seed(5))
    wait = slice(10, 39)  # the 29 blanks between the digits and the marker
    for out, rate in ((low, 0.1), (high, 0.5)):
        changed = out != tokens
        assert (
            (out[changed] == cp.DISTRACTOR).all() and not changed[:, :10].any() and not changed[:, 39:].any()
        )
        assert abs(changed[:, wait].double().mean().item() - rate) < 0.03
    assert ((low == cp.DISTRACTOR) <= (high == cp.DISTRACTOR)).all()  # a higher rate keeps the lower's
    assert torch.equal(cp.add_distractors(tokens, 30, 0.0), tokens)
    # a batch with distractors: the same digits and targets as without, only the wait differs
    plain = cp.copying_batch(8, 30, torch.Generator().manual_seed(1))
    noisy = cp.copying_batch(8, 30, torch.Generator().manual_seed(1), distractor_rate=0.3)
    assert torch.equal(plain[1], noisy[1]) and torch.equal(plain[0][:, :10], noisy[0][:, :10])
    assert (noisy[0] == cp.DISTRACTOR).any()
    # the test sequences at every rate hold the same digit strings
    batches = [next(cp._test_batches(20, 16, 16, 3, rate)) for rate in (0.0, 0.4)]
    assert torch.equal(batches[0][1], batches[1][1]) and (batches[1][0] == cp.DISTRACTOR).any()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: cp.add_distractors(torch.zeros(2, 24, dtype=torch.long), 5, 0.1),
            r"^tokens: expected shape \(N, 25\)",
        ),
        (
            lambda: cp.add_distractors(torch.zeros(2, 25, dtype=torch.long), 5, 1.0),
            r"^rate: expected a number in \[0, 1\), got 1.0$",
        ),
        (
            lambda: cp.copying_batch(2, 5, distractor_rate=-0.1),
            r"^distractor_rate: expected a number in \[0, 1\)",
        ),
        (
            lambda: cp.settings("smoke", distractor_rate=True),
            r"^distractor_rate: expected a number in \[0, 1\), got True$",
        ),
        (
            lambda: cp.settings("smoke", test_distractor_rates=(0.2,)),
            r"^test_distractor_rates: expected none when",
        ),
        (
            lambda: cp.settings("smoke", distractor_rate=0.1, test_distractor_rates=(0.2, 2)),
            r"^test_distractor_rates\[1\]: expected a number in \[0, 1\), got 2$",
        ),
    ],
)
def test_distractor_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_distractor_run_embeds_the_token_and_records_every_rate(tmp_path, one_thread):
    settings = cp.settings("smoke", **TINY, distractor_rate=0.1, test_distractor_rates=(0.3, 0.6))
    assert cp.make_model(RIM, settings).embed.num_embeddings == 11
    assert cp.make_model(RIM, cp.settings("smoke")).embed.num_embeddings == 10
    assert (
        "distractor_rate" in settings.training_dict()
        and "test_distractor_rates" not in settings.training_dict()
    )
    record = cp.run(settings, seeds=1, save=False, runs_dir=tmp_path, progress=False)
    for name in (RIM, LSTM):
        got = record["metrics"][name]["acc_distract"]
        assert set(got) == {"0.3", "0.6"} and set(got["0.3"]) == {"5", "9"}
        assert 0 <= got["0.6"]["9"]["mean"] <= 1
    table = cp.format_table(record)
    assert "30% distr." in table and "60% distr." in table
    null = record["metrics"][RIM]["null_attention"]  # what each RIM module ignores, per kind of token
    assert set(null) == {"digit", "blank", "marker", "distractor"} and len(null["distractor"]) == 1
    assert len(null["distractor"][0]) == 6 and all(0 <= v <= 1 for v in null["distractor"][0])
    assert "null_attention" not in record["metrics"][LSTM]
    fig = figures.plot_distractors(record)
    assert len(fig.axes) == 2 and {RIM, LSTM} <= set(fig.axes[-1].get_legend_handles_labels()[1])
    x = fig.axes[0].lines[0].get_xdata()
    assert list(x) == [10.0, 30.0, 60.0]  # the training rate first, then the test rates
    with pytest.raises(ValueError, match="^record: expected a copying record with test_distractor_rates"):
        figures.plot_distractors({**record, "settings": {**record["settings"], "test_distractor_rates": []}})


def test_training_in_two_processes_gives_the_numbers_of_one_process(tmp_path, one_thread, monkeypatch):
    settings = cp.settings("smoke", **TINY)
    alone = cp.run(settings, seeds=[0], save=False, runs_dir=tmp_path / "one", progress=False)
    bars = []

    class Bar:  # records what the side-by-side training's progress bar is told
        def __init__(self, total, **options):
            self.total, self.n, self.shown, self.options = total, 0, [], options
            bars.append(self)

        def update(self, k):
            self.n += k
            self.shown.append(self.n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(common, "tqdm", Bar)
    real_train = common.train_in_processes
    monkeypatch.setattr(  # poll the checkpoints often, so that the bar is updated while the processes run
        common, "train_in_processes", lambda *a, **k: real_train(*a, **{**k, "poll_seconds": 0.01})
    )
    trained = {}
    side = cp.run(
        settings, seeds=[0], save=False, runs_dir=tmp_path / "two", progress=True, workers=2, trained=trained
    )
    (bar,) = bars  # the bar counts epochs, summed over the processes, and ends full
    assert bar.options["unit"] == "epoch" and bar.total == len(settings.models) * settings.epochs
    assert bar.n == bar.total and bar.shown == sorted(bar.shown) and len(bar.shown) > 1

    def without_time(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    for name in settings.models:  # each (model, seed) trained in its own process, one thread
        assert side["metrics"][name]["acc"] == alone["metrics"][name]["acc"]
        assert without_time(side["curves"][name]["0"]) == without_time(alone["curves"][name]["0"])
    assert set(trained) == set(settings.models)
    with pytest.raises(ValueError, match=r"^workers: expected a positive int, got 0$"):
        cp.run(settings, seeds=1, save=False, runs_dir=tmp_path / "x", progress=False, workers=0)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match=r"^poll_seconds: expected a finite number > 0, got "):
            real_train("copying", settings, [0], tmp_path / "x", poll_seconds=bad)
