"""Recurrent PPO: advantages on a hand-computed case, the clipped loss, the state reset, a known-easy task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minirims.cell import RIMState
from minirims.experiments import copying as cp
from minirims.experiments import ppo

SETTINGS = cp.settings("smoke")  # sizes a RIM core's attention


def test_gae_matches_a_hand_computed_case_and_stops_at_episode_ends():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [0.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends with step 1; step 2 starts a new one
    adv, ret = ppo.gae(rewards, values, dones, torch.tensor([3.0]), gamma=0.9, lam=0.5)
    # step 2: delta = 2 + 0.9 * 3 - 0 = 4.7; step 1 ends the episode: delta = 0 - 1 = -1 (no bootstrap,
    # no advantage carried back from step 2); step 0: delta = 1 + 0.9 * 1 - 0.5 = 1.4, plus 0.9 * 0.5 * -1
    torch.testing.assert_close(adv[:, 0], torch.tensor([1.4 - 0.45, -1.0, 4.7]))
    torch.testing.assert_close(ret, adv + values)
    # lam = gamma = 1, no ends: the advantage is the rewards to come plus the last value, minus V
    adv, _ = ppo.gae(rewards, values, torch.zeros(3, 1), torch.tensor([3.0]), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv[:, 0], torch.tensor([6.0, 5.0, 5.0]) - values[:, 0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: ppo.gae(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, 2), torch.zeros(2)),
            "^rewards, values",
        ),
        (
            lambda: ppo.gae(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3)),
            "^last_value",
        ),
        (
            lambda: ppo.gae(*[torch.zeros(3, 2)] * 3, torch.zeros(2), gamma=1.5),
            r"^gamma: expected a number in",
        ),
        (lambda: ppo.ppo_loss(*[torch.zeros(4)] * 5, torch.zeros(3)), "^logp, old_logp"),
        (lambda: ppo.ppo_loss(*[torch.zeros(4)] * 6, clip=0.0), r"^clip: expected a number in \(0, 1\)"),
        (lambda: ppo.PPOConfig(lr=0), r"^lr: expected a finite number > 0, got 0$"),
        (lambda: ppo.PPOConfig(n_steps=0), r"^n_steps: expected a positive int"),
        (lambda: ppo.PPOConfig(entropy_coef=1.5), r"^entropy_coef: expected a number in \[0, 1\], got 1.5$"),
        (lambda: ppo.PPOConfig(gamma=-0.1), r"^gamma: expected a number in \[0, 1\]"),
        (lambda: ppo.CueEnv(delay=-1), r"^delay: expected an int >= 0"),
        (lambda: ppo.Agent(0, 2, "lstm-8", SETTINGS), "^obs_size: expected a positive int"),
        (lambda: ppo.Agent(4, 2, "gru-8", SETTINGS), "^name: expected a model name"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_clipped_objective():
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    zeros = torch.zeros(4)
    # ratio 1: the policy term is -mean(normalised advantages) = 0; value and entropy terms as written
    loss, stats = ppo.ppo_loss(
        zeros, zeros, adv, torch.ones(4), zeros, torch.full((4,), 0.5), value_coef=0.5, entropy_coef=0.1
    )
    assert stats["policy"] == pytest.approx(0.0, abs=1e-6) and stats["clipped"] == 0
    assert loss.item() == pytest.approx(0.5 * 1.0 - 0.1 * 0.5)
    # a ratio far above 1 + clip: the gain on positive advantages is capped, the loss on negative ones is not
    logp = torch.full((4,), math.log(2.0), requires_grad=True)
    loss, stats = ppo.ppo_loss(logp, zeros, adv, zeros, zeros, zeros, clip=0.2, value_coef=0, entropy_coef=0)
    # normalised advantages are +-1: min(2 * 1, 1.2 * 1) = 1.2 and min(2 * -1, 1.2 * -1) = -2
    assert loss.item() == pytest.approx(-(1.2 - 2.0) / 2) and stats["clipped"] == 1.0
    loss.backward()
    assert logp.grad[0] == 0 and logp.grad[1] != 0  # clipped samples pass no gradient


@pytest.mark.parametrize("core", ["lstm-12", "rim-3x4-k2"])
def test_the_state_is_reset_where_an_episode_starts(core):
    torch.manual_seed(0)
    agent = ppo.Agent(4, 2, core, SETTINGS, d_emb=8)
    obs = torch.randn(5, 3, 4)
    starts = torch.zeros(5, 3)
    starts[3, 1] = 1  # environment 1 starts a new episode at step 3
    state = agent.initial_state(3)
    parts = [None if t is None else torch.randn_like(t) for t in state]
    state = RIMState(*parts) if isinstance(state, RIMState) else tuple(parts)
    logits, values, _ = agent(obs, state, starts)
    assert logits.shape == (5, 3, 2) and values.shape == (5, 3)
    # from step 3 on, environment 1 sees what a fresh agent sees on the same observations
    fresh, fresh_values, _ = agent(obs[3:, 1:2], agent.initial_state(1))
    torch.testing.assert_close(logits[3:, 1:2], fresh)
    torch.testing.assert_close(values[3:, 1:2], fresh_values)
    assert not torch.allclose(logits[3:, 0:1], agent(obs[3:, 0:1], agent.initial_state(1))[0])
    assert isinstance(state, RIMState) == core.startswith("rim")


def test_cue_env_and_vec_env():
    env = ppo.CueEnv(delay=2, seed=3)
    first = env.reset()
    assert first.argmax() == env.cue and env.reset().shape == (4,)
    env.reset()
    for _ in range(3):  # two blanks, then the query
        obs, reward, done = env.step(0)
        assert obs.argmax() in (2, 3) and reward == 0 and not done
    assert obs.argmax() == 3
    _, reward, done = env.step(env.cue)
    assert reward == 1.0 and done
    envs = ppo.VecEnv(lambda seed: ppo.CueEnv(1, seed), 4, seed=0)
    obs = envs.reset()
    assert obs.shape == (4, 4)
    for _ in range(3):  # the cue, one blank, the query
        obs, rewards, dones = envs.step(torch.zeros(4, dtype=torch.long))
    assert dones.tolist() == [1.0] * 4 and len(envs.finished) == 4
    assert np.mean(envs.finished) == rewards.mean().item()
    assert (obs.argmax(-1) <= 1).all()  # reset at once: the next episode's cue


def test_ppo_learns_the_cue_task_that_a_memoryless_policy_cannot(one_thread):
    torch.manual_seed(0)
    envs = ppo.VecEnv(lambda seed: ppo.CueEnv(2, seed), 16, seed=0)
    agent = ppo.Agent(4, 2, "lstm-32", SETTINGS, d_emb=16)
    config = ppo.PPOConfig(n_steps=16, lr=3e-3, epochs=4, minibatches=2)
    curve = ppo.train(agent, envs, 16 * 16 * 30, config, progress=False)
    assert len(curve) == 30 and curve[-1]["steps"] == 16 * 16 * 30
    first, last = np.nanmean([c["return"] for c in curve[:3]]), np.nanmean([c["return"] for c in curve[-3:]])
    assert first < 0.7 and last > 0.9, (first, last)  # a policy without memory earns 0.5


def test_minatar_env_steps_a_game_and_its_shifts_are_settings():
    pytest.importorskip("minatar", reason="make venv installs minatar (the RL probe's games)")
    env = ppo.MinAtarEnv("breakout", sticky=0.0, ramping=False, seed=0)
    obs = env.reset()
    assert obs.shape == (env.obs_size,) == (400,) and env.n_actions == 3 and set(np.unique(obs)) <= {0.0, 1.0}
    steps, done = 0, False
    while not done and steps < 5000:
        obs, reward, done = env.step(steps % env.n_actions)
        steps += 1
    assert done and reward in (0.0, 1.0)
    # the same seed plays the same game
    a, b = (ppo.MinAtarEnv("breakout", seed=3) for _ in range(2))
    assert np.array_equal(a.reset(), b.reset())
    assert [a.step(1)[1:] for _ in range(50)] == [b.step(1)[1:] for _ in range(50)]
