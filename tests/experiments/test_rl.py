"""The reinforcement-learning probe: settings, the random baseline, a smoke run and its record, the CLI."""

from __future__ import annotations

import json

import pytest

from minirims.experiments import rl

SMOKE = rl.settings("smoke")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"models": ("gru-8",)}, r"^models\[0\]: expected a model name like"),
        ({"models": ()}, r"^models: expected a non-empty list"),
        ({"total_steps": 0}, r"^total_steps: expected a positive int, got 0$"),
        (
            {"ppo": rl.ppo.PPOConfig(minibatches=3)},
            r"^ppo.minibatches: expected a divisor of n_envs = 16, got 3$",
        ),
        ({"ppo": {"lr": 1e-3}}, r"^ppo: expected a minirims.experiments.ppo.PPOConfig, got dict$"),
        ({"test_envs": {}}, r"^test_envs: expected a non-empty dict"),
        ({"train_env": {"game": "pong"}}, r"^train_env\['game'\]: expected one of breakout"),
        ({"test_envs": {"x": {"delay": 2, "extra": 1}}}, r"^test_envs\['x'\]: expected \{'game'"),
        (
            {"test_envs": {"ramp": {"game": "breakout", "ramping": True}}},
            r"^test_envs\['ramp'\]\['ramping'\]: breakout has no difficulty ramping in MinAtar",
        ),
    ],
)
def test_bad_settings_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        rl.settings("smoke", **overrides)


def test_the_random_policy_earns_half_on_the_cue_task_and_the_agent_is_sized_by_the_env():
    assert abs(rl.evaluate(None, {"delay": 3}, 400, seed=0) - 0.5) < 0.08
    agent = rl.make_model("rim-4x8-k2", SMOKE)
    assert agent.policy.out_features == 2 and agent.encoder[0].in_features == 4
    assert agent.core.cell.input_attention.dropout == 0 and not agent.core.compile_step
    assert 0 <= rl.evaluate(agent, {"delay": 2}, 16, seed=1) <= 1


def test_a_smoke_run_records_every_model_test_and_the_random_policy(tmp_path, one_thread):
    tiny = SMOKE.replace(total_steps=512, eval_episodes=16)  # two rollouts
    record = rl.run(tiny, seeds=[0, 1], results=str(tmp_path), progress=False)
    saved = json.loads((tmp_path / "rl_probe_smoke.json").read_text())
    assert saved["experiment"] == "rl_probe" and saved["seeds"] == [0, 1]
    assert saved["settings"]["test_envs"] == {"delay 2": {"delay": 2}, "delay 6": {"delay": 6}}
    for name in SMOKE.models:
        m = record["metrics"][name]
        assert set(m["return"]) == {"delay 2", "delay 6"} and m["return"]["delay 6"]["n"] == 2
        assert m["steps_per_second"]["mean"] > 0
        assert len(record["curves"][name]["0"]) == 2 and record["curves"][name]["0"][-1]["steps"] == 512
    assert set(record["metrics"]["random"]["return"]) == {"delay 2", "delay 6"}
    table = rl.format_table(record)
    assert "random policy" in table and "delay 6" in table and SMOKE.models[0] in table
    from minirims.experiments import figures

    fig = figures.plot_record(record)  # learning curves, and the tests with the random policy
    assert [ax.get_xlabel() for ax in fig.axes] == ["environment steps", ""]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["delay 2", "delay 6"]
    with pytest.raises(ValueError, match="^record: expected an rl_probe record, got 'copying'$"):
        figures.plot_rl_probe({"experiment": "copying"})
    lstm = SMOKE.models[1]
    again = rl.run(tiny.replace(models=(lstm,)), seeds=[0], save=False, progress=False)
    for test, cell in record["metrics"][lstm]["return"].items():  # the same seed gives the same numbers
        assert again["metrics"][lstm]["return"][test]["values"] == cell["values"][:1]


def test_kept_agents_are_tested_without_training_again(tmp_path, one_thread, monkeypatch):
    tiny = SMOKE.replace(models=(SMOKE.models[1],), total_steps=256, eval_episodes=16)
    lstm = tiny.models[0]

    def run(settings):
        return rl.run(settings, seeds=[0], save=False, progress=False, runs_dir=tmp_path)

    first = run(tiny)
    (folder,) = tmp_path.iterdir()
    assert [p.name for p in folder.iterdir()] == [f"{lstm}_seed0.pt"]

    def no_training(*args, **kwargs):
        raise AssertionError("a kept agent was trained again")

    monkeypatch.setattr(rl.ppo, "train", no_training)
    again = run(tiny)
    assert again["curves"] == first["curves"]
    assert again["metrics"][lstm]["return"] == first["metrics"][lstm]["return"]
    # the test settings are not part of the key; the training settings are
    run(tiny.replace(eval_episodes=8))
    with pytest.raises(AssertionError, match="trained again"):
        run(tiny.replace(total_steps=512))


def test_cli_user_errors_end_in_one_line(capsys):
    from minirims.__main__ import main

    assert main(["rl-probe", "--profile", "smoke", "--models", "gru-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m minirims rl-probe: error: models[0]: expected a model name like")
    assert "\n" not in err
