"""The reinforcement-learning probe: PPO with a RIM core against PPO with an LSTM core, nothing else changed.

Each agent (:mod:`minirims.experiments.ppo`) trains for the same number of environment steps on the training
environment, then plays each test environment, some of which shift what the training held fixed (MinAtar: the
rate of sticky actions, and difficulty ramping in the games that have it; the cue task: a longer delay).
Beside the agents, a uniform random policy: an agent has learned something only where it beats it::

    Settings, PROFILES, settings(profile=None, **overrides) -> Settings
    make_model(name, settings) -> ppo.Agent
    evaluate(agent, env, episodes, seed) -> mean episode return
    run(settings=None, seeds=1, ...) -> Record; format_table(record) -> str
    add_arguments(parser) / main(args) -> int              # python -m minirims rl-probe ...

Record: ``metrics[model]["return"][test]`` (mean/std/values over seeds),
``metrics[model]["steps_per_second"]`` (training, environment steps per second),
``metrics["random"]["return"][test]``; ``curves[model][seed]``: one row per rollout (steps, mean return of
the episodes that ended in it, seconds, loss terms).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from minirims.experiments import common, ppo
from minirims.experiments.common import check_choice, check_int, mean_std, seed_list
from minirims.experiments.train import seed_everything

__all__ = [
    "EXPERIMENT",
    "PROFILES",
    "Settings",
    "add_arguments",
    "evaluate",
    "format_table",
    "main",
    "make_env",
    "make_model",
    "run",
    "settings",
]

EXPERIMENT = "rl_probe"
GAMES = ("breakout", "freeway", "asterix", "seaquest", "space_invaders")
#: MinAtar games whose difficulty never ramps: ``ramping`` changes nothing in them
UNRAMPED = ("breakout", "freeway")


def make_env(spec: Mapping[str, Any], seed: int) -> Any:
    """An environment from its spec: ``{"game": name, "sticky": p, "ramping": bool}`` (MinAtar) or
    ``{"delay": d}`` (the cue task)."""
    if "game" in spec:
        check_choice("game", spec["game"], GAMES)
        return ppo.MinAtarEnv(
            spec["game"], float(spec.get("sticky", 0.1)), bool(spec.get("ramping", True)), seed
        )
    return ppo.CueEnv(int(spec["delay"]), seed)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of a probe run, validated when made (a ValueError names the field)."""

    #: fields a trained agent does not depend on: a run that changes only these tests the kept agents
    TEST_ONLY: ClassVar[tuple[str, ...]] = ("models", "test_envs", "eval_episodes", "note")

    profile: str = "cpu"
    models: tuple[str, ...] = ("rim-6x32-k4", "lstm-192")
    train_env: Mapping[str, Any] = field(
        default_factory=lambda: {"game": "breakout", "sticky": 0.1, "ramping": False}
    )
    test_envs: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {
            "as trained": {"game": "breakout", "sticky": 0.1, "ramping": False},
            "sticky 0.3": {"game": "breakout", "sticky": 0.3, "ramping": False},
            "sticky 0.5": {"game": "breakout", "sticky": 0.5, "ramping": False},
        }
    )
    total_steps: int = 400_000  # environment steps of training, every environment together
    n_envs: int = 8
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(lr=5e-4))  # rollouts and updates
    eval_episodes: int = 64
    d_emb: int = 64
    input_heads: int = 1
    input_d_k: int = 32
    input_d_v: int = 64
    comm_heads: int = 4
    comm_d_k: int = 16
    comm_d_v: int = 16
    note: str = ""

    def __post_init__(self) -> None:
        check_choice("profile", self.profile, common.PROFILES)

        def core(name: str, value: object) -> str:
            common.parse_model_name(value, ("rim", "lstm"), name)
            return str(value)

        object.__setattr__(self, "models", common.check_distinct("models", self.models, core))
        for key in ("total_steps", "n_envs", "eval_episodes", "d_emb"):
            check_int(key, getattr(self, key))
        for key in ("input_heads", "input_d_k", "input_d_v", "comm_heads", "comm_d_k", "comm_d_v"):
            check_int(key, getattr(self, key))
        if not isinstance(self.ppo, ppo.PPOConfig):
            raise ValueError(
                f"ppo: expected a minirims.experiments.ppo.PPOConfig, got {type(self.ppo).__name__}"
            )
        if self.n_envs % self.ppo.minibatches:
            raise ValueError(
                f"ppo.minibatches: expected a divisor of n_envs = {self.n_envs}, got {self.ppo.minibatches}"
            )
        if not isinstance(self.test_envs, Mapping) or not self.test_envs:
            raise ValueError(
                f"test_envs: expected a non-empty dict of name -> environment, got {self.test_envs!r}"
            )
        for name, spec in (
            ("train_env", self.train_env),
            *((f"test_envs[{k!r}]", v) for k, v in self.test_envs.items()),
        ):
            if not isinstance(spec, Mapping) or not ({"game"} <= set(spec) or {"delay"} == set(spec)):
                raise ValueError(
                    f"{name}: expected {{'game': ..., 'sticky': ..., 'ramping': ...}} or {{'delay': d}}, "
                    f"got {spec!r}"
                )
            if "game" in spec:
                check_choice(f"{name}['game']", spec["game"], GAMES)
                if spec["game"] in UNRAMPED and spec.get("ramping") is True:
                    raise ValueError(
                        f"{name}['ramping']: {spec['game']} has no difficulty ramping in MinAtar, so True "
                        "would test nothing new; expected False"
                    )

    def replace(self, **overrides: Any) -> Settings:
        """A copy with ``overrides``, validated again."""
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return common._jsonable(dataclasses.asdict(self))

    def training_dict(self) -> dict[str, Any]:
        """The fields a trained agent depends on (all but ``TEST_ONLY``): the kept agents' folder key."""
        return {k: v for k, v in self.as_dict().items() if k not in self.TEST_ONLY}

    def rim_kwargs(self) -> dict[str, Any]:
        """The RIM's attention sizes (no dropout, no compile: see :class:`ppo.Agent`)."""
        keys = ("input_heads", "input_d_k", "input_d_v", "comm_heads", "comm_d_k", "comm_d_v")
        return {k: getattr(self, k) for k in keys} | {"dropout": 0.0, "compile_step": False}


PROFILES: dict[str, Settings] = {
    "smoke": Settings(
        profile="smoke",
        models=("rim-4x8-k2", "lstm-32"),
        train_env={"delay": 2},
        test_envs={"delay 2": {"delay": 2}, "delay 6": {"delay": 6}},
        total_steps=16 * 16 * 4,
        n_envs=16,
        ppo=ppo.PPOConfig(n_steps=16, lr=3e-3),
        eval_episodes=32,
        d_emb=16,
        input_d_k=8,
        input_d_v=16,
        comm_heads=2,
        comm_d_k=4,
        comm_d_v=4,
        note="the cue task for seconds: proves the pipeline runs",
    ),
    "cpu": Settings(
        profile="cpu",
        note="MinAtar Breakout, 400k steps per agent (about 12 min for the RIM at one thread), trained "
        "at sticky actions 0.1 (the chance that the previous action repeats), tested at 0.3 and 0.5 "
        "(Breakout has no difficulty ramping, so sticky actions are its one shift)",
    ),
}


def settings(profile: str | Settings | None = None, **overrides: Any) -> Settings:
    """The settings of ``profile`` (default: env ``MINIRIMS_PROFILE``) with ``overrides``, validated."""
    return _resolve(profile).replace(**overrides) if overrides else _resolve(profile)


def _resolve(profile: str | Settings | None) -> Settings:
    return profile if isinstance(profile, Settings) else common.settings_of(PROFILES, profile, {})


def _obs_and_actions(s: Settings) -> tuple[int, int]:
    env = make_env(s.train_env, 0)
    return env.obs_size, env.n_actions


def make_model(name: str, settings: Settings | None = None) -> ppo.Agent:
    """The agent whose core ``name`` names (``rim-6x32-k4``, ``lstm-192``), sized for the training
    environment."""
    s = PROFILES["cpu"] if settings is None else settings
    obs_size, n_actions = _obs_and_actions(s)
    return ppo.Agent(obs_size, n_actions, name, s, d_emb=s.d_emb)


@torch.no_grad()
def evaluate(
    agent: ppo.Agent | None, env: Mapping[str, Any], episodes: int, seed: int, n_envs: int = 8
) -> float:
    """Mean return of ``episodes`` episodes of ``env`` (its spec), actions sampled from the agent's policy
    (``agent`` None: a uniform random policy)."""
    check_int("episodes", episodes)
    envs = ppo.VecEnv(lambda s: make_env(env, s), n_envs, seed=seed + 10_000)
    obs, starts = envs.reset(), torch.ones(n_envs)
    state = agent.initial_state(n_envs) if agent is not None else None
    gen = torch.Generator().manual_seed(seed)
    while len(envs.finished) < episodes:
        if agent is None:
            action = torch.randint(envs.n_actions, (n_envs,), generator=gen)
        else:
            logits, _, state = agent(obs[None], state, starts[None])
            action = torch.multinomial(torch.softmax(logits[0], -1), 1, generator=gen)[:, 0]
        obs, _, starts = envs.step(action)
    return float(np.mean(envs.finished[:episodes]))


def run(
    settings: str | Settings | None = None,
    seeds: int | list[int] = 1,
    results: str | None = None,
    save: bool = True,
    progress: bool = True,
    runs_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train every model and seed for ``total_steps``, test on every test environment; the record.

    With ``runs_dir``, each trained agent (weights, curve, training speed) is kept in
    ``<runs_dir>/rl_probe_<profile>_<hash of the training settings>/<model>_seed<seed>.pt``, and a later run
    with the same training settings tests the kept agent instead of training it again (so the models and
    seeds of one record can train in separate processes, then one run tests them all).
    """
    s = _resolve(settings)
    seeds = seed_list(seeds)
    kept = None if runs_dir is None else _runs_folder(s, runs_dir)
    started, t0 = common.provenance(), time.perf_counter()
    metrics: dict[str, Any] = {
        "random": {
            "return": {name: evaluate(None, spec, s.eval_episodes, 0) for name, spec in s.test_envs.items()}
        }
    }
    curves: dict[str, Any] = {}
    parameters = {}
    for name in s.models:
        per_seed, speed = [], []
        for seed in seeds:
            seed_everything(seed)
            agent = make_model(name, s)
            parameters[name] = common.count_parameters(agent)
            path = None if kept is None else kept / f"{name}_seed{seed}.pt"
            if path is not None and path.exists():
                saved = torch.load(path, weights_only=True)
                agent.load_state_dict(saved["state_dict"])
                curve, seconds = saved["curve"], saved["seconds"]
            else:
                envs = ppo.VecEnv(lambda k: make_env(s.train_env, k), s.n_envs, seed=seed)
                tick = time.perf_counter()
                curve = ppo.train(agent, envs, s.total_steps, s.ppo, progress=progress)
                seconds = time.perf_counter() - tick
                if path is not None:
                    tmp = path.with_suffix(".tmp")
                    torch.save({"state_dict": agent.state_dict(), "curve": curve, "seconds": seconds}, tmp)
                    tmp.replace(path)
            speed.append(curve[-1]["steps"] / seconds)
            curves.setdefault(name, {})[str(seed)] = curve
            tests = tqdm(s.test_envs.items(), desc="test", leave=False, disable=not progress)
            per_seed.append({test: evaluate(agent, spec, s.eval_episodes, seed) for test, spec in tests})
        metrics[name] = {
            "return": {test: mean_std([r[test] for r in per_seed]) for test in s.test_envs},
            "steps_per_second": mean_std(speed),
        }
    record = common.make_record(
        EXPERIMENT,
        s.profile,
        s.as_dict(),
        seeds,
        metrics,
        curves=curves,
        parameters=parameters,
        wall_time=time.perf_counter() - t0,
        started=started,
    )
    if save:
        common.save_record(record, common.output_record_path(EXPERIMENT, s.profile, results))
    return record


def _runs_folder(s: Settings, runs_dir: str | os.PathLike[str]) -> Path:
    """The folder of the kept agents of ``s`` (made if missing): its name hashes what training depends on."""
    key = common.settings_key(s.training_dict())
    folder = common.check_runs_dir(runs_dir) / f"{EXPERIMENT}_{s.profile}_{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def format_table(record: Mapping[str, Any]) -> str:
    """Mean return per model and test environment (± std over seeds), the random policy, steps per second."""
    tests = list(record["metrics"]["random"]["return"])
    width = max(12, *(len(n) + 2 for n in record["metrics"]))
    lines = ["model".ljust(width) + "".join(t.rjust(16) for t in tests) + "steps/s".rjust(10)]
    for name, m in record["metrics"].items():
        if name == "random":
            continue
        cells = "".join(
            f"{m['return'][t]['mean']:.2f} ±{m['return'][t]['std'] or 0:.2f}".rjust(16) for t in tests
        )
        lines.append(name.ljust(width) + cells + f"{m['steps_per_second']['mean']:.0f}".rjust(10))
    random = record["metrics"]["random"]["return"]
    lines.append("random policy".ljust(width) + "".join(f"{random[t]:.2f}".rjust(16) for t in tests))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m minirims rl-probe``."""
    parser.add_argument(
        "--profile", default=None, help="smoke | cpu (default: env MINIRIMS_PROFILE, else cpu)"
    )
    parser.add_argument("--models", nargs="+", default=None, help="cores to train, e.g. rim-6x32-k4 lstm-192")
    parser.add_argument(
        "--seeds",
        type=common.seeds_argument,
        default=1,
        help=common.SEEDS_HELP,
    )
    parser.add_argument("--steps", type=int, default=None, help="environment steps of training per agent")
    parser.add_argument("--results", default=None, help="write the record into this folder (default: runs/)")
    parser.add_argument(
        "--runs-dir", default=None, help="keep each trained agent here and test kept agents without training"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the record")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """``python -m minirims rl-probe``: run, print the table and where the record is; returns 0."""
    changes: dict[str, Any] = {}
    if args.models is not None:
        changes["models"] = tuple(m for arg in args.models for m in arg.split(",") if m)
    if args.steps is not None:
        changes["total_steps"] = args.steps
    s = settings(args.profile, **changes)
    record = run(
        s,
        args.seeds,
        args.results,
        save=not args.no_save,
        progress=not args.no_progress,
        runs_dir=args.runs_dir,
    )
    print(format_table(record))
    if not args.no_save:
        path = common.output_record_path(EXPERIMENT, s.profile, args.results)
        png = common.save_record_figure(record, path)
        print(f"record: {path} (figure: {png.name})")
    return 0
