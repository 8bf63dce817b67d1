"""Supervised fine-tuning (behaviour cloning): where every actor in the paper starts.

    L_BC = - mean_{(s,a) in demos} log pi(a | s)      (stop token included)

:func:`demo_pairs` replays shipped demonstrations through the env to recover the exact states
the demonstrator saw; :func:`bc_step` is one gradient step, shared with filtered BC.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from archer_lite.actor import Actor
from archer_lite.data import load_demos
from archer_lite.envs import make_env


@dataclass
class SFTConfig:
    """Behaviour cloning of the noisy demonstrations."""

    epochs: int = 3
    """Passes over the demonstration pairs."""
    batch_size: int = 64
    """(state, utterance) pairs per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    grad_clip: float = 1.0
    """Max grad norm of the actor."""
    max_demos: int = 0
    """Use only the first N demonstration episodes (0 = all)."""


def demo_pairs(env_name: str, max_demos: int = 0) -> list[tuple[str, str]]:
    """(state, utterance) pairs of the shipped demonstrations, states replayed through the env."""
    env, pairs = make_env(env_name), []
    records = load_demos(env_name)
    for record in records[: max_demos or None]:
        obs, _ = env.reset(seed=record["seed"])
        for utterance, _ in record["turns"]:
            pairs.append((obs, utterance))
            obs, *_ = env.step(utterance)
    return pairs


def bc_step(actor: Actor, states: Sequence[str], actions: Sequence[str],
            optimizer: torch.optim.Optimizer, grad_clip: float = 1.0) -> float:
    """One step of L_BC = - mean log pi(a | s) (per utterance, stop token included)."""
    loss = -actor.utterance_logprob(states, actions).mean()
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(actor.model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def sft(actor: Actor, pairs: Sequence[tuple[str, str]], cfg: SFTConfig, seed: int = 0,
        progress: bool = True) -> list[float]:
    """Train ``actor`` on ``pairs`` for ``cfg.epochs``; returns the loss of every step."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam([p for p in actor.model.parameters() if p.requires_grad], lr=cfg.lr)
    losses: list[float] = []
    steps = cfg.epochs * ((len(pairs) + cfg.batch_size - 1) // cfg.batch_size)
    bar = tqdm(total=steps, desc="sft", disable=not progress)
    for _ in range(cfg.epochs):
        order = rng.permutation(len(pairs))
        for start in range(0, len(pairs), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            losses.append(bc_step(actor, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                                  optimizer, cfg.grad_clip))
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses
