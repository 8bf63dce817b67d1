"""Supervised fine-tuning (behaviour cloning): where every actor in the paper starts.

    L_BC = - mean_{(s,a) in demos} log pi(a | s)      (stop token included)

plus, optionally, an utterance-level *unlikelihood* term (after Welleck et al., 2019) on the
probability that the next utterance repeats one already said in the episode (H(s) = the
utterances in the history of s):

    L_UL = - mean_{s in demos} log(1 - sum_{a' in H(s)} pi(a' | s))

The demonstrators almost never repeat themselves (< 1% of turns), but a tiny actor trained on
L_BC alone does not learn that from ~1,000 episodes: it re-asks answered questions in ~10% of its
sampled turns. L_UL states "do not repeat" directly, is computed from the demonstrations only, and
its gradient weights each earlier utterance by its probability, so it pushes down the repeats the
actor actually makes.

Behaviour cloning only ever sees the demonstrator's states; the actor, once it errs, plays on in
states no demonstration covers (exposure bias). :func:`dagger` (Ross et al., 2011) lets the cloned
actor play, asks the same noisy demonstrator what it would say in every state the actor visited,
and trains on the demonstrations plus all the labelled states so far, round after round.

:func:`demo_pairs` replays shipped demonstrations through the env to recover the exact states
the demonstrator saw; :func:`bc_step` is one gradient step, shared with filtered BC.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from archer_lite.actor import Actor
from archer_lite.data import NOISE_LEVELS, demo_episodes, load_demos
from archer_lite.envs import make_env
from archer_lite.envs.base import TextEnv
from archer_lite.rollout import collect


@dataclass
class SFTConfig:
    """Behaviour cloning of the noisy demonstrations."""

    epochs: int = 3
    """Passes over the demonstration pairs."""
    batch_size: int = 64
    """(state, utterance) pairs per step."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 0 over the run)."""
    grad_clip: float = 1.0
    """Max grad norm of the actor."""
    demos: int = 0
    """Demonstration episodes to clone: 0 = the shipped file; fewer than it holds = its first N;
    more = the same seeded demonstrator's first N episodes (see :func:`demo_records`)."""
    unlikelihood: float = 3.0
    """Weight of L_UL (0 = plain behaviour cloning)."""
    max_earlier: int = 0
    """L_UL scores at most this many earlier utterances per state, a uniform draw (0 = all of
    them). Long episodes make scoring all of them costly; fewer under-counts the repeat mass."""
    length_window: int = 0
    """0 = plain shuffled batches. N > 0: each epoch's shuffled order is cut into windows of N
    batches, each window is sorted by state length before it is split into batches, and the
    batches are shuffled again. Batches are left-padded to their longest state, so on envs whose
    states grow over a long episode this does the same epoch in a fraction of the time."""
    dagger_rounds: int = 0
    """After behaviour cloning, rounds of DAgger (see :func:`dagger`; 0 = none)."""
    dagger_episodes: int = 500
    """Episodes the actor plays per DAgger round; the demonstrator labels every state of them."""
    dagger_epochs: int = 1
    """Passes over demonstrations + labelled states per DAgger round."""
    dagger_lr: float = 3e-4
    """Adam learning rate of each DAgger round (cosine-decayed to 0 within the round)."""

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.unlikelihood < 0 \
                or self.max_earlier < 0 or self.length_window < 0 or self.demos < 0 \
                or self.dagger_rounds < 0 or self.dagger_episodes < 1 or self.dagger_epochs < 1 \
                or self.dagger_lr <= 0:
            raise ValueError("SFTConfig needs epochs >= 1, batch_size >= 1, lr > 0, unlikelihood >= 0, "
                             "max_earlier >= 0, length_window >= 0, demos >= 0, dagger_rounds >= 0, "
                             "dagger_episodes >= 1, dagger_epochs >= 1 and dagger_lr > 0.")


def demo_pairs(env_name: str, max_demos: int = 0, earlier: bool = False) -> list[tuple]:
    """(state, utterance) pairs of the first ``max_demos`` demonstrations (0 = the shipped file;
    see :func:`demo_records`), states replayed through the env.

    With ``earlier=True`` each pair also carries the utterances said before it in its episode:
    (state, utterance, earlier_utterances).
    """
    return replay_pairs(env_name, demo_records(env_name, max_demos), earlier)


def demo_records(env_name: str, n: int = 0) -> list[dict]:
    """The first ``n`` demonstration episodes of ``env_name`` (0 = all shipped ones).

    The shipped file holds the first episodes of a seeded demonstrator
    (:func:`archer_lite.data.demo_episodes`); asking for more plays the rest of its sequence
    here, in a few seconds, so a recipe can clone 10x the shipped demonstrations without shipping
    them. The shipped episodes are checked against the demonstrator first."""
    shipped = load_demos(env_name)
    if n <= len(shipped):
        return shipped[: n or None]
    records = list(demo_episodes(env_name, n))
    if json.loads(json.dumps(records[: len(shipped)])) != shipped:
        raise ValueError(f"data/demos/{env_name}.jsonl is not the demonstrator's first {len(shipped)} "
                         f"episodes, so it cannot be extended to {n}: rebuild it with "
                         f"`python -m archer_lite.data --env {env_name}`.")
    return records


def replay_pairs(env_name: str, records: Iterable[dict], earlier: bool = False,
                 relabel: Callable[[TextEnv, int], str] | None = None) -> list[tuple]:
    """(state, utterance[, earlier_utterances]) pairs of demonstration records (see
    :func:`demo_pairs`), each record replayed from its seed to recover the states it saw.

    With ``relabel(env, k)`` (k = the record's index) a pair's utterance is what ``relabel`` says
    in that state instead of what the record said there (DAgger's labels); the replay still
    follows the record."""
    env, pairs = make_env(env_name), []
    for k, record in enumerate(records):
        obs, _ = env.reset(seed=record["seed"])
        said: list[str] = []
        for said_here, _ in record["turns"]:
            utterance = relabel(env, k) if relabel else said_here
            pairs.append((obs, utterance, tuple(said)) if earlier else (obs, utterance))
            said.append(said_here)
            obs, *_ = env.step(said_here)
    return pairs


def unlikelihood_loss(actor: Actor, states: Sequence[str],
                      earlier: Sequence[Sequence[str]]) -> torch.Tensor:
    """L_UL = - mean_s log(1 - sum_{a' in earlier(s)} pi(a'|s)); states without history count 0.

    An earlier utterance the tokenizer cannot spell without [UNK] (the actor's own babble, e.g.
    two words it emitted with no space between them, which decode to one unknown word) has
    pi = 0 under that spelling: it adds nothing to the repeat mass and is left out (its log-prob
    is -inf, which would otherwise turn the gradient into NaN)."""
    flat = [(i, a) for i, said in enumerate(earlier) for a in said]
    if not flat:
        return torch.zeros((), device=actor.device)
    logp = actor.utterance_logprob([states[i] for i, _ in flat], [a for _, a in flat])
    spelled = torch.isfinite(logp.detach())
    if not spelled.any():
        return logp[:0].sum()  # 0, attached to the graph
    logp = logp[spelled]
    owner = torch.tensor([i for i, _ in flat], device=logp.device)[spelled]
    # log of the repeat mass per state: logsumexp of its earlier utterances' log-probs
    peak = torch.full((len(states),), -torch.inf, device=logp.device).scatter_reduce(
        0, owner, logp.detach(), reduce="amax")
    mass = torch.zeros(len(states), device=logp.device).index_add(0, owner, torch.exp(logp - peak[owner]))
    has = mass > 0
    log_mass = (torch.log(mass[has]) + peak[has]).clamp(max=-1e-4)  # keep 1 - mass > 0
    return -torch.log1p(-torch.exp(log_mass)).sum() / len(states)


def bc_step(actor: Actor, states: Sequence[str], actions: Sequence[str],
            optimizer: torch.optim.Optimizer, grad_clip: float = 1.0,
            earlier: Sequence[Sequence[str]] = (), unlikelihood: float = 0.0) -> float:
    """One step of L_BC = - mean log pi(a | s) (per utterance, stop token included), plus
    ``unlikelihood`` * L_UL, ``earlier[i]`` being the utterances said before ``states[i]``
    (its history). Returns L_BC."""
    loss = -actor.utterance_logprob(states, actions).mean()
    bc = loss.item()
    if unlikelihood > 0 and any(earlier):
        loss = loss + unlikelihood * unlikelihood_loss(actor, states, earlier)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(actor.model.parameters(), grad_clip)
    optimizer.step()
    return bc


def epoch_batches(lengths: np.ndarray, batch_size: int, window: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of indices: a shuffled order cut into batches, or with ``window`` > 0,
    cut into windows of ``window`` batches that are each sorted by ``lengths`` before they are
    split, the batches then shuffled (every index once per epoch either way)."""
    order = rng.permutation(len(lengths))
    if not window:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    span = window * batch_size
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sft(actor: Actor, pairs: Sequence[tuple], cfg: SFTConfig, seed: int = 0,
        progress: bool = True) -> list[float]:
    """Train ``actor`` on ``pairs`` (from :func:`demo_pairs`; with ``earlier=True`` the
    unlikelihood term is used) for ``cfg.epochs``; returns L_BC of every step."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam([p for p in actor.model.parameters() if p.requires_grad], lr=cfg.lr)
    losses: list[float] = []
    lengths = np.array([len(p[0]) for p in pairs])
    per_epoch = len(epoch_batches(lengths, cfg.batch_size, cfg.length_window, np.random.default_rng(0)))
    steps = cfg.epochs * per_epoch  # (the count does not depend on the draw)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + np.cos(np.pi * k / steps)))
    bar = tqdm(total=steps, desc="sft", disable=not progress)
    for _ in range(cfg.epochs):
        for batch_ids in epoch_batches(lengths, cfg.batch_size, cfg.length_window, rng):
            batch = [pairs[i] for i in batch_ids]
            earlier = [p[2] if len(p) > 2 else () for p in batch]
            if cfg.max_earlier:
                earlier = [tuple(rng.choice(e, cfg.max_earlier, replace=False)) if len(e) > cfg.max_earlier
                           else e for e in earlier]
            losses.append(bc_step(actor, [p[0] for p in batch], [p[1] for p in batch], optimizer,
                                  cfg.grad_clip, earlier, cfg.unlikelihood))
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


DAGGER_SEED = 30_000_000
"""DAgger round k plays episodes seeded DAGGER_SEED + 100,000 k + i (never a demo, training or
evaluation seed)."""


def dagger_pairs(actor: Actor, env_name: str, episodes: int, seed: int,
                 rng: np.random.Generator) -> tuple[list[tuple], list]:
    """Let ``actor`` play ``episodes`` sampled episodes (env i seeded ``seed + i``) and label every
    state it visited with the noisy demonstrator's utterance there (its noise cycling through
    NOISE_LEVELS as in the shipped demonstrations, drawn from ``rng``).

    Returns ``(pairs, trajectories)``: pairs are (state, label, utterances the *actor* said before),
    the same shape as ``demo_pairs(..., earlier=True)``, so the unlikelihood term scores the
    repeats the actor would make in its own states."""
    trajectories = collect(lambda s: actor.sample(s), env_name, episodes, seed=seed)
    records = [{"seed": seed + i, "turns": [(step.action, None) for step in t.transitions]}
               for i, t in enumerate(trajectories)]
    # the demonstrator reads env.turns: the actor's episode so far
    pairs = replay_pairs(env_name, records, earlier=True, relabel=lambda env, i: env.noisy_action(
        rng, noise=NOISE_LEVELS[i % len(NOISE_LEVELS)]))
    return pairs, trajectories


def dagger(actor: Actor, env_name: str, pairs: Sequence[tuple], cfg: SFTConfig, seed: int = 0,
           progress: bool = True) -> list[dict]:
    """DAgger after behaviour cloning: ``cfg.dagger_rounds`` times, the actor plays
    ``cfg.dagger_episodes`` episodes, the noisy demonstrator labels its states
    (:func:`dagger_pairs`), and the actor trains ``cfg.dagger_epochs`` passes over the
    demonstration ``pairs`` plus every state labelled so far, at ``cfg.dagger_lr``.

    Returns one record per round: the labelled states so far and the mean return, success and
    repeat rates of the actor's sampled episodes that round (before it trained on them)."""
    rng, labelled, log = np.random.default_rng(seed), [], []
    round_cfg = replace(cfg, epochs=cfg.dagger_epochs, lr=cfg.dagger_lr)
    for k in range(cfg.dagger_rounds):
        new, played = dagger_pairs(actor, env_name, cfg.dagger_episodes, DAGGER_SEED + 100_000 * k, rng)
        labelled += new
        turns = sum(len(t) for t in played)
        sft(actor, [*pairs, *labelled], round_cfg, seed=seed + 1 + k, progress=progress)
        log.append({"round": k, "labelled_states": len(labelled),
                    "played_mean_return": float(np.mean([t.ret for t in played])),
                    "played_success_rate": float(np.mean([t.success for t in played])),
                    "played_repeat_rate": sum(t.repeats for t in played) / turns})
    return log
