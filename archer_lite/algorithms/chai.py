"""CHAI: the same off-policy critic, a frozen SFT actor, and best-of-k action selection.

    a* = argmax_{a_1..a_k ~ pi_SFT(.|s)} min_i Q_i(s, a_j)

The critic learns exactly as in ArCHer (:func:`archer_lite.algorithms.archer.critic_step`); the
actor never changes, so improvement is capped by what the SFT actor proposes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from archer_lite.actor import Actor
from archer_lite.algorithms.archer import Archer, ArcherConfig
from archer_lite.critic import DoubleCritic


@dataclass
class ChaiConfig:
    """CHAI's own knob (the critic's come from ArcherConfig)."""

    k: int = 5
    """Candidate utterances per state (paper: 5)."""


class Chai(Archer):
    name = "chai"

    def __init__(self, actor: Actor, critic: DoubleCritic, cfg: ArcherConfig, chai: ChaiConfig):
        super().__init__(actor, critic, ArcherConfig(**{**cfg.__dict__, "actor_steps": 0}))
        self.k = chai.k

    @torch.no_grad()
    def act(self, states: list[str]) -> list[str]:
        """Best of k sampled utterances under min_i Q_i (online critic)."""
        if not states:
            return []
        repeated = [s for s in states for _ in range(self.k)]
        candidates = self.actor.sample(repeated)
        scores = self.critic.min_q(repeated, candidates).view(len(states), self.k)  # (B, k)
        best = scores.argmax(-1).tolist()
        return [candidates[i * self.k + j] for i, j in enumerate(best)]
