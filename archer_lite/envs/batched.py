"""Step N text environments with N utterances at once (what a batched actor needs).

    envs = BatchedEnv("twenty_questions_subset", n=8)
    obs, infos = envs.reset(seed=0)            # env i is reset with seed + i
    while not envs.all_done:
        obs, rewards, terminated, truncated, infos = envs.step(actor.sample(obs))

Finished envs keep their last observation, report reward 0, and ignore their action, so the
caller can keep passing full-length lists; ``envs.active`` says which envs are still playing.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from archer_lite.envs import make_env
from archer_lite.envs.base import TextEnv


class BatchedEnv:
    """N independent copies of one environment, stepped together."""

    def __init__(self, env: str | Callable[[], TextEnv], n: int, **env_kwargs: Any):
        if n < 1:
            raise ValueError(f"n must be >= 1 (got {n}).")
        factory = (lambda: make_env(env, **env_kwargs)) if isinstance(env, str) else env
        self.envs: list[TextEnv] = [factory() for _ in range(n)]
        self.active = np.zeros(n, dtype=bool)
        self._obs: list[str] = [""] * n
        self._infos: list[dict[str, Any]] = [{} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.envs)

    @property
    def all_done(self) -> bool:
        return not self.active.any()

    def reset(self, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
        """Reset every env; an int ``seed`` gives env i the seed ``seed + i``."""
        seeds = _per_env_seeds(seed, len(self))
        for i, env in enumerate(self.envs):
            self._obs[i], self._infos[i] = env.reset(seed=seeds[i], options=options)
        self.active[:] = True
        return list(self._obs), list(self._infos)

    def step(self, actions: Sequence[str | None]):
        """Step every active env with its utterance; returns lists/arrays of length N."""
        if len(actions) != len(self):
            raise ValueError(f"step needs one action per env: got {len(actions)} for {len(self)} envs.")
        n = len(self)
        rewards = np.zeros(n, dtype=np.float32)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for i in np.flatnonzero(self.active):
            self._obs[i], rewards[i], terminated[i], truncated[i], self._infos[i] = \
                self.envs[i].step(actions[i])
            if terminated[i] or truncated[i]:
                self.active[i] = False
        return list(self._obs), rewards, terminated, truncated, list(self._infos)


def _per_env_seeds(seed: int | Sequence[int] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    if len(seed) != n:
        raise ValueError(f"got {len(seed)} seeds for {n} envs.")
    return [int(s) for s in seed]
