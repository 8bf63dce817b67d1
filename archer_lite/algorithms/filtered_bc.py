"""Online filtered behaviour cloning: imitate the best trajectories collected so far.

Each iteration keeps the top ``top_fraction`` of all trajectories in the buffer by return and
takes ``steps`` steps of L_BC = - mean log pi(a|s) on their transitions. Fast early, then it
plateaus: it can only copy what it already did best. Utterances the actor could not say again
(its decoded text re-encodes with a special token, see :meth:`Actor.sayable`) are left out and
counted (``unsayable_pairs``): their log-likelihood is -inf.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from archer_lite.actor import Actor
from archer_lite.algorithms.sft import bc_step
from archer_lite.buffer import ReplayBuffer


@dataclass
class FilteredBCConfig:
    """Online filtered BC (a baseline in the paper)."""

    top_fraction: float = 0.1
    """Fraction of trajectories (by return) to imitate."""
    steps: int = 10
    """BC steps per iteration."""
    batch_size: int = 256
    """Transitions per step."""
    lr: float = 2e-4
    """Adam learning rate."""
    grad_clip: float = 1.0
    """Max grad norm of the actor."""

    def __post_init__(self):
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1] (got {self.top_fraction}).")


class FilteredBC:
    name = "filtered_bc"

    def __init__(self, actor: Actor, cfg: FilteredBCConfig, seed: int = 0):
        self.actor, self.cfg = actor, cfg
        self.rng = np.random.default_rng(seed)
        self.opt = torch.optim.Adam([p for p in actor.model.parameters() if p.requires_grad], lr=cfg.lr)

    def act(self, states):
        return self.actor.sample(states)

    def update(self, buffer: ReplayBuffer, new_trajectories, iteration: int) -> dict[str, float]:
        trajectories = sorted(buffer.trajectories(), key=lambda t: t.ret, reverse=True)
        keep = trajectories[: max(1, int(round(self.cfg.top_fraction * len(trajectories))))]
        pairs = [(t.state, t.action) for traj in keep for t in traj.transitions]
        sayable = self.actor.sayable([a for _, a in pairs])
        unsayable = len(pairs) - sum(sayable)  # log pi = -inf: cloning them is impossible
        pairs = [p for p, ok in zip(pairs, sayable) if ok]
        losses = []
        for _ in range(self.cfg.steps if pairs else 0):
            idx = self.rng.integers(0, len(pairs), size=self.cfg.batch_size)
            losses.append(bc_step(self.actor, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                                  self.opt, self.cfg.grad_clip))
        return {"bc_loss": float(np.mean(losses)) if losses else None, "filter_min_return": keep[-1].ret,
                "filtered_trajectories": len(keep), "unsayable_pairs": unsayable}

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
