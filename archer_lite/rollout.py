"""Play an actor against N batched environments and return the trajectories.

This is the seam between the agent and the world: ArCHer, the baselines, evaluation and the
widgets all collect data through :func:`collect`. (A faster engine, e.g. vLLM, would plug in
here behind the same ``policy(states) -> utterances`` call.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from archer_lite.buffer import Trajectory, Transition
from archer_lite.envs.base import normalize_utterance
from archer_lite.envs.batched import BatchedEnv
from archer_lite.seeding import accelerator_rng_devices

Policy = Callable[[Sequence[str]], list[str]]
"""states -> one utterance per state (e.g. ``actor.sample`` or ``lambda s: actor.sample(s, greedy=True)``)."""


def collect(policy: Policy, env: str, n: int, seed: int, batch_size: int = 32,
            **env_kwargs) -> list[Trajectory]:
    """Run ``n`` episodes (env i seeded ``seed + i``), ``batch_size`` envs at a time."""
    trajectories: list[Trajectory] = []
    for start in range(0, n, batch_size):
        envs = BatchedEnv(env, min(batch_size, n - start), **env_kwargs)
        trajectories += _play(policy, envs, seed + start)
    return trajectories


def _play(policy: Policy, envs: BatchedEnv, seed: int) -> list[Trajectory]:
    obs, infos = envs.reset(seed=seed)
    steps: list[list[Transition]] = [[] for _ in range(len(envs))]
    invalid = [0] * len(envs)
    while not envs.all_done:
        active = np.flatnonzero(envs.active)
        utterances = policy([obs[i] for i in active])
        actions: list[str | None] = [None] * len(envs)
        for i, u in zip(active, utterances):
            actions[i] = u
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        for i in active:
            steps[i].append(Transition(obs[i], actions[i], float(rewards[i]), next_obs[i],
                                       bool(terminated[i]), turn=len(steps[i])))
            invalid[i] += int(infos[i].get("invalid", False))
        obs = next_obs
    return [Trajectory(s, bool(info.get("success", False)), repeats=count_repeats(s), invalid=k)
            for s, info, k in zip(steps, infos, invalid)]


def count_repeats(transitions: Sequence[Transition]) -> int:
    """Utterances that repeat an earlier one in the same episode (the tiny actor's looping)."""
    seen, repeats = set(), 0
    for t in transitions:
        key = normalize_utterance(t.action)
        repeats += key in seen
        seen.add(key)
    return repeats


@dataclass
class EpisodeStats:
    """Summary of a set of trajectories."""

    mean_return: float
    std_return: float
    success_rate: float
    mean_length: float
    repeat_rate: float
    invalid_rate: float
    n: int

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory]) -> "EpisodeStats":
        returns = np.array([t.ret for t in trajectories])
        turns = max(1, sum(len(t) for t in trajectories))
        return cls(float(returns.mean()), float(returns.std()),
                   float(np.mean([t.success for t in trajectories])),
                   float(np.mean([len(t) for t in trajectories])),
                   sum(t.repeats for t in trajectories) / turns,
                   sum(t.invalid for t in trajectories) / turns, len(trajectories))


def evaluate(policies: dict[str, Policy], env: str, episodes: int, seed: int,
             batch_size: int = 32) -> dict[str, float]:
    """``{"<name>_<stat>": value}`` for each named policy on the same ``episodes`` fixed seeds.

    Runs on a forked torch RNG seeded with ``seed``: the numbers depend on the policies only, and
    evaluating never changes the caller's random stream.
    """
    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=accelerator_rng_devices()):
        torch.manual_seed(seed)
        for name, policy in policies.items():
            stats = EpisodeStats.of(collect(policy, env, episodes, seed=seed, batch_size=batch_size))
            out.update({f"{name}_{k}": v for k, v in stats.__dict__.items() if k != "n"})
    return out
