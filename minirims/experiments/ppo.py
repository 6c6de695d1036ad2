"""Recurrent PPO with a RIM or an LSTM core: the pieces of the reinforcement-learning probe.

An agent is an encoder of the observation, a recurrent core (a :class:`~minirims.RIM` or an
:class:`~minirims.LSTMBaseline` of the same state size, named as everywhere: ``rim-6x32-k4``, ``lstm-192``)
and two linear heads, the policy's logits and the value. It collects ``n_steps`` steps of ``n_envs``
environments at a time, then improves the clipped PPO objective on them for a few epochs, carrying the
core's state through the rollout (truncated back-propagation through time over each rollout, the state
reset where an episode ends)::

    gae(rewards, values, dones, last_value, gamma, lam) -> advantages, returns   # (T, N) each
    ppo_loss(logp, old_logp, advantages, values, returns, entropy, ...) -> loss, stats
    Agent(obs_size, n_actions, core_name, settings)     # (T, N, obs) + state -> logits, values, state
    CueEnv(delay)                                       # remember a cue over a delay: the known-easy task
    MinAtarEnv(game, sticky=0.1, ramping=True)          # MinAtar (optional dependency ``minatar``)
    VecEnv(make_env, n, seed)                           # n environments, reset automatically
    train(agent, envs, steps, config) -> curve          # returns per rollout: mean episode return

Shapes: T rollout steps, N environments, A actions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from minirims.cell import RIMState
from minirims.experiments.common import check_int, make_core
from minirims.model import RIM

__all__ = [
    "Agent",
    "CueEnv",
    "MinAtarEnv",
    "PPOConfig",
    "VecEnv",
    "gae",
    "ppo_loss",
    "train",
]


# ------------------------------------------------------------------------------------------ the objective
def gae(
    rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float = 0.99, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over one rollout.

    Args:
        rewards, values, dones: (T, N); ``dones[t]`` is 1 where the episode ended with step t (the value of
            the next observation, the first of a new episode, is then not bootstrapped).
        last_value: (N,) the value of the observation after the last step.
        gamma: discount in [0, 1]; lam: the GAE lambda in [0, 1].

    Returns:
        advantages (T, N) and returns = advantages + values (T, N), the value targets.
    """
    if rewards.dim() != 2 or values.shape != rewards.shape or dones.shape != rewards.shape:
        raise ValueError(
            "rewards, values, dones: expected three tensors of one shape (T, N), got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(dones.shape)}"
        )
    if last_value.shape != rewards.shape[1:]:
        raise ValueError(f"last_value: expected shape ({rewards.shape[1]},), got {tuple(last_value.shape)}")
    for name, v in (("gamma", gamma), ("lam", lam)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name}: expected a number in [0, 1], got {v!r}")
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(rewards.shape[0])):
        alive = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


def ppo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    values: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip: float = 0.2,
    value_coef: float = 0.5,
    entropy_coef: float = 0.01,
) -> tuple[Tensor, dict[str, float]]:
    """The clipped PPO objective (Schulman et al. 2017), to minimise; every tensor of one shape.

    ``loss = -mean(min(r A, clip(r, 1 - clip, 1 + clip) A)) + value_coef mean((V - R)^2) - entropy_coef
    mean(H)`` with ``r = exp(logp - old_logp)``; the advantages are normalised over the batch first.

    Returns:
        the loss (a scalar with gradient) and detached statistics: policy, value and entropy terms, and the
        share of samples whose ratio was clipped.
    """
    shapes = {tuple(t.shape) for t in (logp, old_logp, advantages, values, returns, entropy)}
    if len(shapes) != 1:
        raise ValueError(
            f"logp, old_logp, advantages, values, returns, entropy: expected one shape, got {shapes}"
        )
    if not 0 < clip < 1:
        raise ValueError(f"clip: expected a number in (0, 1), got {clip!r}")
    adv = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
    ratio = torch.exp(logp - old_logp)
    policy = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
    value = F.mse_loss(values, returns)
    ent = entropy.mean()
    loss = policy + value_coef * value - entropy_coef * ent
    clipped = ((ratio - 1).abs() > clip).float().mean()
    stats = {"policy": policy.item(), "value": value.item(), "entropy": ent.item(), "clipped": clipped.item()}
    return loss, stats


# ---------------------------------------------------------------------------------------------- the agent
def _map_state(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor of a core's state (a RIMState, or an LSTM's (h, c)), its type kept."""
    parts = [None if t is None else fn(t) for t in state]
    return RIMState(*parts) if isinstance(state, RIMState) else tuple(parts)


def _keep(state: Any, keep: Tensor) -> Any:
    """The core's state with the examples where ``keep`` (N,) is 0 set back to zeros (a new episode)."""
    return _map_state(state, lambda t: t * keep.view(-1, *[1] * (t.dim() - 1)).to(t.dtype))


class Agent(nn.Module):
    """Observation -> MLP encoder -> recurrent core -> policy logits and value.

    Args:
        obs_size: the flattened observation's size.
        n_actions: A.
        core: a model name (``rim-<n>x<d>-k<k>`` or ``lstm-<d>``, see
            :func:`~minirims.experiments.common.make_core`).
        settings: the experiment settings that size a RIM's attention (any
            :class:`~minirims.experiments.common.Settings`; its dropout and compile are not used).
        d_emb: the encoder's output size.
    """

    def __init__(self, obs_size: int, n_actions: int, core: str, settings: Any, d_emb: int = 64) -> None:
        super().__init__()
        check_int("obs_size", obs_size)
        check_int("n_actions", n_actions)
        self.encoder = nn.Sequential(nn.Linear(obs_size, d_emb), nn.ReLU())
        self.core = make_core(core, d_emb, settings)
        if isinstance(self.core, RIM):
            # No dropout: the probabilities of the rollout and of the update must come from one function. No
            # compile: the agent steps one time step at a time, where a compiled step does not pay.
            self.core.compile_step = False
            for attention in (self.core.cell.input_attention, self.core.cell.communication):
                if attention is not None:
                    attention.dropout = 0.0
        self.policy = nn.Linear(int(self.core.d_out), n_actions)
        self.value = nn.Linear(int(self.core.d_out), 1)
        with torch.no_grad():  # a near-uniform first policy
            self.policy.weight.mul_(0.01)
            self.policy.bias.zero_()

    def initial_state(self, n: int) -> Any:
        """The core's zero state for ``n`` environments."""
        return self.core.initial_state(n)

    def forward(self, obs: Tensor, state: Any, starts: Tensor | None = None) -> tuple[Tensor, Tensor, Any]:
        """obs (T, N, obs_size), the state before the first step, starts (T, N) 1 where an observation is
        the first of an episode (the state is reset before it) -> logits (T, N, A), values (T, N), state."""
        if obs.dim() != 3:
            raise ValueError(f"obs: expected shape (T, N, obs_size), got {tuple(obs.shape)}")
        x = self.encoder(obs.float())
        if isinstance(self.core, RIM):  # the whole rollout in one call: the RIM resets where episodes start
            resets = None if starts is None else starts.t().bool()
            out, state, _ = self.core(x.transpose(0, 1), state, resets=resets)
            h = out.transpose(0, 1)
        else:  # nn.LSTM cannot reset inside a sequence: one step at a time
            outs = []
            for t in range(x.shape[0]):
                if starts is not None:
                    state = _keep(state, 1 - starts[t])
                out, state, _ = self.core(x[t].unsqueeze(1), state)
                outs.append(out[:, 0])
            h = torch.stack(outs)
        return self.policy(h), self.value(h).squeeze(-1), state


# -------------------------------------------------------------------------------------- the environments
class CueEnv:
    """Remember a cue over a delay, the known-easy task: the first observation shows cue 0 or 1, then
    ``delay`` blank steps, then a query; the action at the query earns 1 if it names the cue, else 0, and
    ends the episode. Actions before the query do nothing. A policy without memory earns 0.5.

    Observations: one-hot of size 4 (cue 0, cue 1, blank, query); 2 actions.
    """

    obs_size, n_actions = 4, 2

    def __init__(self, delay: int = 2, seed: int = 0) -> None:
        self.delay = check_int("delay", delay, lo=0)
        self.rng = np.random.default_rng(seed)
        self.t, self.cue = 0, 0

    def _obs(self) -> np.ndarray:
        index = self.cue if self.t == 0 else (3 if self.t == self.delay + 1 else 2)
        return np.eye(4, dtype=np.float32)[index]

    def reset(self) -> np.ndarray:
        self.t, self.cue = 0, int(self.rng.integers(2))
        return self._obs()

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        if self.t == self.delay + 1:
            return self._obs(), float(action == self.cue), True
        self.t += 1
        return self._obs(), 0.0, False


class MinAtarEnv:
    """A MinAtar game (Young and Tian 2019; the optional package ``minatar``): a 10 x 10 grid of C binary
    channels, flattened; ``sticky`` is the chance that the previous action repeats, ``ramping`` makes the game
    harder as it goes (the two shifts a test can change)."""

    def __init__(self, game: str, sticky: float = 0.1, ramping: bool = True, seed: int = 0) -> None:
        try:
            from minatar import Environment
        except ImportError:
            raise ValueError(
                "game: MinAtar is not installed; install it with `pip install minatar --no-deps` "
                "(its core needs numpy only)"
            ) from None
        self.env = Environment(game, sticky_action_prob=sticky, difficulty_ramping=ramping)
        self.env.seed(seed)
        self.actions = self.env.minimal_action_set()
        self.n_actions = len(self.actions)
        self.obs_size = int(np.prod(self.env.state_shape()))

    def reset(self) -> np.ndarray:
        self.env.reset()
        return self.env.state().astype(np.float32).ravel()

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        reward, done = self.env.act(self.actions[action])
        return self.env.state().astype(np.float32).ravel(), float(reward), bool(done)


class VecEnv:
    """``n`` environments stepped together; one that ends an episode is reset at once, and the episode's
    return is kept in :attr:`finished` (cleared by the caller)."""

    def __init__(self, make_env: Callable[[int], Any], n: int, seed: int = 0) -> None:
        check_int("n", n)
        self.envs = [make_env(seed * 1000 + i) for i in range(n)]
        self.obs_size, self.n_actions = self.envs[0].obs_size, self.envs[0].n_actions
        self.returns = np.zeros(n)
        self.finished: list[float] = []

    def reset(self) -> Tensor:
        """(N, obs_size) first observations."""
        self.returns[:] = 0
        return torch.as_tensor(np.stack([e.reset() for e in self.envs]))

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """actions (N,) -> next observations (N, obs_size), rewards (N,), dones (N,) float."""
        obs, rewards, dones = [], [], []
        for i, (env, a) in enumerate(zip(self.envs, actions.tolist(), strict=True)):
            o, r, d = env.step(int(a))
            self.returns[i] += r
            if d:
                self.finished.append(float(self.returns[i]))
                self.returns[i] = 0
                o = env.reset()
            obs.append(o)
            rewards.append(r)
            dones.append(float(d))
        return torch.as_tensor(np.stack(obs)), torch.tensor(rewards), torch.tensor(dones)


# ------------------------------------------------------------------------------------------- the training
@dataclass(frozen=True)
class PPOConfig:
    """One agent's training: rollouts of ``n_steps`` per environment, ``epochs`` passes over each with
    ``minibatches`` groups of environments (whole sequences, so the state can be carried)."""

    n_steps: int = 32
    epochs: int = 4
    minibatches: int = 2
    lr: float = 2.5e-4
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    grad_clip: float = 0.5

    def __post_init__(self) -> None:
        for key in ("n_steps", "epochs", "minibatches"):
            check_int(key, getattr(self, key))
        for key in ("lr", "grad_clip", "value_coef"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{key}: expected a finite number > 0, got {value!r}")
        for key, lo, hi in (("gamma", 0, 1), ("lam", 0, 1), ("clip", 0, 1), ("entropy_coef", 0, 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ValueError(f"{key}: expected a number in [{lo}, {hi}], got {value!r}")


def train(
    agent: Agent, envs: VecEnv, total_steps: int, config: PPOConfig | None = None, progress: bool = True
) -> list[dict[str, float]]:
    """Train ``agent`` on ``envs`` for ``total_steps`` environment steps (all environments together).

    Returns:
        one row per rollout: ``steps`` so far, ``return`` (mean over the episodes that ended in it, NaN if
        none), ``seconds``, and the last update's loss terms.
    """
    cfg = config or PPOConfig()
    check_int("total_steps", total_steps)
    n = len(envs.envs)
    if n % cfg.minibatches:
        raise ValueError(f"minibatches: expected a divisor of the {n} environments, got {cfg.minibatches}")
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    obs, state = envs.reset(), agent.initial_state(n)
    starts = torch.ones(n)
    curve, done_steps, t0 = [], 0, time.perf_counter()
    rollouts = max(1, total_steps // (cfg.n_steps * n))
    for _ in tqdm(range(rollouts), desc="rollouts", disable=not progress):
        first_state = _map_state(state, Tensor.detach)
        buf = {k: [] for k in ("obs", "starts", "actions", "logp", "values", "rewards", "dones")}
        with torch.no_grad():
            for _ in range(cfg.n_steps):
                logits, value, state = agent(obs[None], state, starts[None])
                dist = torch.distributions.Categorical(logits=logits[0])
                action = dist.sample()
                next_obs, reward, done = envs.step(action)
                for key, v in zip(
                    buf, (obs, starts, action, dist.log_prob(action), value[0], reward, done), strict=True
                ):
                    buf[key].append(v)
                obs, starts = next_obs, done
            last_value = agent(obs[None], state, starts[None])[1][0]
        data = {k: torch.stack(v) for k, v in buf.items()}  # (T, N, ...)
        adv, ret = gae(data["rewards"], data["values"], data["dones"], last_value, cfg.gamma, cfg.lam)
        groups = torch.arange(n).view(cfg.minibatches, -1)
        for _ in range(cfg.epochs):
            for g in groups[torch.randperm(cfg.minibatches)]:
                init = _map_state(first_state, lambda t, g=g: t[g])
                logits, values, _ = agent(data["obs"][:, g], init, data["starts"][:, g])
                dist = torch.distributions.Categorical(logits=logits)
                loss, stats = ppo_loss(
                    dist.log_prob(data["actions"][:, g]),
                    data["logp"][:, g],
                    adv[:, g],
                    values,
                    ret[:, g],
                    dist.entropy(),
                    cfg.clip,
                    cfg.value_coef,
                    cfg.entropy_coef,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.grad_clip)
                opt.step()
        done_steps += cfg.n_steps * n
        finished, envs.finished = envs.finished, []
        mean_return = float(np.mean(finished)) if finished else float("nan")
        curve.append(
            {"steps": done_steps, "return": mean_return, "seconds": time.perf_counter() - t0, **stats}
        )
    return curve
