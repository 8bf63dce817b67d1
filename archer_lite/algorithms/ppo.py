"""Token-level PPO: the on-policy baseline of the paper's sample-efficiency comparison.

PPO flattens the two-level MDP into one **token MDP**. A trajectory's utterances a_1..a_T are
laid end to end; utterance t contributes its tokens a_t^1..a_t^{L_t} (stop token included when
sampled; see "easy to overlook" below). Token h of the flat sequence gets (:func:`token_layout`)::

    r_h    = env reward r_t   if h is the last token of utterance t,   else 0
    disc_h = gamma            if h is the last token of an utterance,  else 1

so there is no discount inside an utterance and gamma between utterances (as in ArCHer). The
sequence ends at the episode's last token: terminal if the episode terminated (``done``), and,
a simplification, also bootstrapped with 0 after a turn-cap truncation (a faithful version
would add gamma * V(s_next) there).

A token-level value head V(s, a^{<h}) -- a small MLP on the actor's *detached* last hidden
state before token h, with its own optimiser -- gives GAE advantages (:func:`gae`)::

    delta_h = r_h + disc_h * V_{h+1} * (1 - terminal_h) - V_h     (terminal only at the last token)
    A_h     = delta_h + disc_h * lambda * A_{h+1},     A_H = 0,     R_h = A_h + V_h

Advantages are normalised over all tokens of the update: A <- (A - mean A) / std A.

With ``kl_coef`` = beta > 0, every token's reward also pays for drifting from the reference
policy pi_ref, a frozen copy of the actor PPO started from (the SFT actor), as in RLHF's PPO
(Ziegler et al., 2019)::

    r_h <- r_h - beta * (log pi_old(a^h | ...) - log pi_ref(a^h | ...))

Without it (beta = 0, plain PPO) the tiny actor's text degrades: on the 20Q subset (2 seeds) the
sampled evaluation's invalid rate rose from 42-47% to 81-82% and its return from -12.5..-14.0 to
-18.7..-19.4 within 2,880-6,720 trajectories.

Then ``epochs`` passes over shuffled minibatches of utterances minimise the clipped surrogate
(:func:`clipped_policy_loss`) on the actor and (V_h - R_h)^2 on the value head::

    rho_h = pi_theta(a^h | s, a^{<h}) / pi_old(a^h | s, a^{<h})
    L_pi  = - mean_h min( rho_h * A_h, clip(rho_h, 1 - eps, 1 + eps) * A_h )

On-policy: each update uses only the trajectories just collected (the replay buffer is
ignored), which is why PPO needs so many more trajectories than ArCHer.

Easy to overlook: the rollout stores utterance *texts*, and re-encoding a text does not give
back the sampled tokens: the tiny actor's gibberish ("toonto in") decodes to words the
word-level tokenizer maps to [UNK], a token the policy can never emit (log pi = -inf, so the
ratio is NaN). So :meth:`PPO.act` remembers the tokens it sampled for each (state, text) and the
token MDP uses those (one tokenisation per (state, text): if two samples in one rollout decode
to the same text in the same state, the later one is kept). Only a transition that ``act`` did
not produce falls back to ``actor.encode_actions(text)`` (the utterance's tokens + stop token).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from archer_lite.actor import Actor
from archer_lite.algorithms.archer import actor_token_logprobs_hidden
from archer_lite.buffer import ReplayBuffer, Trajectory


@dataclass
class PPOConfig:
    """Token-level PPO's hyper-parameters (defaults: CleanRL-style PPO on the tiny actor)."""

    gamma: float = 0.95
    """Discount between utterances; inside an utterance the discount is 1."""
    gae_lambda: float = 0.95
    """GAE's lambda: 0 = one-step TD advantages, 1 = Monte-Carlo returns minus V."""
    clip_eps: float = 0.2
    """Clip range of the probability ratio: clip(rho, 1 - eps, 1 + eps)."""
    epochs: int = 4
    """Passes over the freshly collected utterances per update."""
    minibatch_size: int = 64
    """Utterance-level transitions per minibatch (all of each utterance's tokens)."""
    lr: float = 2e-4
    """Actor Adam learning rate."""
    value_lr: float = 1e-3
    """Value-head Adam learning rate."""
    vf_coef: float = 0.5
    """Weight of the value loss. The value head has its own optimiser, so this only rescales its
    gradient (Adam is nearly scale-invariant; it matters mostly through ``grad_clip``)."""
    grad_clip: float = 1.0
    """Max grad norm, applied to the actor and to the value head separately."""
    value_hidden: int = 64
    """Hidden width of the value head's MLP."""
    kl_coef: float = 0.0
    """beta of the per-token KL penalty to the starting policy (0 = plain PPO; RLHF uses ~0.05)."""

    def __post_init__(self):
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (got {self.gamma}).")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1] (got {self.gae_lambda}).")
        if not 0.0 < self.clip_eps < 1.0:
            raise ValueError(f"clip_eps must be in (0, 1) (got {self.clip_eps}); 0.1-0.3 is usual.")
        if self.epochs < 1 or self.minibatch_size < 1:
            raise ValueError(f"epochs and minibatch_size must be >= 1 "
                             f"(got epochs={self.epochs}, minibatch_size={self.minibatch_size}).")
        if self.lr <= 0 or self.value_lr <= 0:
            raise ValueError(f"lr and value_lr must be > 0 (got lr={self.lr}, value_lr={self.value_lr}).")
        if self.vf_coef <= 0 or self.grad_clip <= 0:
            raise ValueError(f"vf_coef and grad_clip must be > 0 "
                             f"(got vf_coef={self.vf_coef}, grad_clip={self.grad_clip}).")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (got {self.kl_coef}); 0 turns the KL penalty off.")
        if self.value_hidden < 1:
            raise ValueError(f"value_hidden must be >= 1 (got {self.value_hidden}).")


# ----- the token MDP ------------------------------------------------------------------------------
def token_layout(utterance_rewards: Sequence[float], utterance_lengths: Sequence[int],
                 gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-token rewards and discounts of one trajectory laid out as a token sequence.

    r_h = r_t on the last token of utterance t, else 0;  disc_h = gamma on the last token of
    an utterance (crossing to the next utterance's first token), else 1.

    Args:
        utterance_rewards: r_1..r_T, the env reward of each utterance.
        utterance_lengths: L_1..L_T, tokens per utterance (stop token included), each >= 1.
        gamma: the discount between utterances.
    Returns:
        ``(rewards, discounts)``, both of shape (H,) with H = sum_t L_t.
    """
    if len(utterance_rewards) != len(utterance_lengths):
        raise ValueError(f"{len(utterance_rewards)} rewards but {len(utterance_lengths)} lengths.")
    if any(n < 1 for n in utterance_lengths):
        raise ValueError("every utterance needs at least one token (its stop token).")
    ends = np.cumsum(utterance_lengths) - 1  # (T,) index of each utterance's last token
    rewards = np.zeros(int(sum(utterance_lengths)))  # (H,)
    discounts = np.ones(int(sum(utterance_lengths)))  # (H,)
    rewards[ends] = utterance_rewards
    discounts[ends] = gamma
    return rewards, discounts


def gae(rewards: Sequence[float], values: Sequence[float], discounts: Sequence[float],
        gae_lambda: float, last_done: bool = True, last_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over one token sequence, back to front.

        V_H     = last_value * (1 - last_done)          (the value after the last token)
        delta_h = r_h + disc_h * V_{h+1} - V_h
        A_h     = delta_h + disc_h * lambda * A_{h+1},   A_H = 0
        R_h     = A_h + V_h                             (the value head's regression target)

    The terminal flag appears only at the last token (1 - terminal_h = 1 for h < H - 1), so it is
    folded into V_H. With lambda = 1 and V = 0, R_h is the discounted return from token h.

    Args:
        rewards: r_h, shape (H,).
        values: V_h = V(s, a^{<h}) under the policy that collected the data, shape (H,).
        discounts: disc_h, the discount from token h to token h + 1, shape (H,).
        gae_lambda: lambda.
        last_done: the sequence ends in a terminal state (nothing to bootstrap).
        last_value: V of the state after the last token, used only when ``last_done`` is False
            (PPO passes 0: the truncation simplification described in the module docstring).
    Returns:
        ``(advantages, returns)``, both of shape (H,), float64.
    """
    r, v, d = (np.asarray(x, dtype=np.float64) for x in (rewards, values, discounts))
    if not r.shape == v.shape == d.shape or r.ndim != 1:
        raise ValueError(f"rewards, values and discounts must be 1-D of one length "
                         f"(got {r.shape}, {v.shape}, {d.shape}).")
    advantages = np.zeros_like(r)  # (H,)
    next_value = 0.0 if last_done else float(last_value)  # V_{h+1}, starting at V_H
    next_adv = 0.0  # A_{h+1}, starting at A_H = 0
    for h in reversed(range(len(r))):
        delta = r[h] + d[h] * next_value - v[h]  # delta_h = r_h + disc_h V_{h+1} - V_h
        next_adv = delta + d[h] * gae_lambda * next_adv  # A_h = delta_h + disc_h lambda A_{h+1}
        advantages[h], next_value = next_adv, v[h]
    return advantages, advantages + v


def clipped_policy_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor,
                        mask: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """PPO's clipped surrogate, averaged over valid tokens.

        rho_h = exp(log pi_theta(a^h|.) - log pi_old(a^h|.))
        L     = - mean_{h: mask_h = 1} min( rho_h A_h, clip(rho_h, 1 - eps, 1 + eps) A_h )

    Args:
        logp_new: log pi_theta(a^h | s, a^{<h}) with gradient, shape (B, L).
        logp_old: log pi_old, the same tokens under the rollout policy (no gradient), (B, L).
        adv: A_h (normalised advantages), (B, L).
        mask: 1 for real tokens, 0 for padding, (B, L).
        clip_eps: eps.
    """
    ratio = torch.exp(logp_new - logp_old)  # (B, L)  rho_h
    unclipped = ratio * adv  # (B, L)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv  # (B, L)
    return -(torch.min(unclipped, clipped) * mask).sum() / mask.sum().clamp(min=1.0)


# ----- the learner ----------------------------------------------------------------------------------
@dataclass
class _Utterance:
    """One utterance of the token MDP with its rollout-time quantities (plumbing)."""

    state: str
    tokens: list[int]  # (L,) action tokens, stop included
    logp_old: torch.Tensor  # (L,)
    advantages: torch.Tensor  # (L,) normalised
    returns: torch.Tensor  # (L,)


class PPO:
    """Token-level PPO: the actor, a token-level value head, their optimisers and a seeded rng."""

    name = "ppo"

    def __init__(self, actor: Actor, cfg: PPOConfig, seed: int = 0):
        self.actor, self.cfg = actor, cfg
        self.rng = np.random.default_rng(seed)
        dim = actor.model.get_output_embeddings().weight.shape[1]
        self.value_head = nn.Sequential(nn.Linear(dim, cfg.value_hidden), nn.Tanh(),
                                        nn.Linear(cfg.value_hidden, 1)).to(actor.device)
        self.actor_opt = torch.optim.Adam([p for p in actor.model.parameters() if p.requires_grad], lr=cfg.lr)
        self.value_opt = torch.optim.Adam(self.value_head.parameters(), lr=cfg.value_lr)
        self.sampled_tokens: dict[tuple[str, str], list[int]] = {}
        """(state, utterance text) -> the token ids sampled for it since the last update."""
        self.reference: Actor | None = None
        """pi_ref for the KL penalty: the actor as PPO received it, frozen (only when kl_coef > 0)."""
        if cfg.kl_coef > 0:
            self.reference = actor.frozen_copy()

    def act(self, states: list[str]) -> list[str]:
        """Sample one utterance per state (temperature 1), remembering the sampled tokens."""
        texts, tokens, _ = self.actor.sample(states, return_tokens=True)
        for state, text, ids in zip(states, texts, tokens):
            self.sampled_tokens[(state, text)] = ids  # a later sample of the same text wins
        return texts

    def action_tokens(self, transitions) -> list[list[int]]:
        """The token ids of each transition's utterance: as sampled by :meth:`act`, else re-encoded."""
        out = []
        for t in transitions:
            ids = self.sampled_tokens.get((t.state, t.action))
            if ids is None:
                ids = self.actor.encode_actions([t.action])[0]
                if not self.actor.sayable([t.action])[0]:
                    raise ValueError(f"Utterance {t.action!r} re-encodes to tokens the policy never "
                                     f"emits (e.g. [UNK]); collect trajectories with ppo.act so PPO "
                                     f"knows the sampled tokens.")
            out.append(list(ids))
        return out

    def update(self, buffer: ReplayBuffer, new_trajectories: Sequence[Trajectory],
               iteration: int) -> dict[str, float]:
        """One PPO update on ``new_trajectories`` only (on-policy; ``buffer`` is ignored)."""
        if not new_trajectories:
            raise ValueError("PPO.update needs freshly collected trajectories (got none); "
                             "collect with the current policy first.")
        utterances, raw_adv_mean, kl_ref = self._prepare(new_trajectories)
        logs: dict[str, list[float]] = {}
        for _ in range(self.cfg.epochs):
            order = self.rng.permutation(len(utterances))
            for start in range(0, len(order), self.cfg.minibatch_size):
                batch = [utterances[i] for i in order[start:start + self.cfg.minibatch_size]]
                for k, v in self._minibatch_step(batch).items():
                    logs.setdefault(k, []).append(v)
        self.sampled_tokens.clear()  # the next update's data comes from the updated policy
        out = {**{k: float(np.mean(v)) for k, v in logs.items()}, "advantage_mean": raw_adv_mean}
        return out if self.reference is None else {**out, "kl_ref": kl_ref}

    def token_mdp(self, traj: Trajectory, tokens: list[list[int]] | None = None):
        """One trajectory as a token sequence: ``(tokens per utterance, rewards (H,), discounts (H,),
        terminated)``; see :func:`token_layout`. ``tokens`` defaults to :meth:`action_tokens`."""
        tokens = self.action_tokens(traj.transitions) if tokens is None else tokens
        rewards, discounts = token_layout([t.reward for t in traj.transitions], [len(a) for a in tokens],
                                          self.cfg.gamma)
        return tokens, rewards, discounts, bool(traj.transitions[-1].done)

    # ----- step 1: rollout-time log-probs, values, GAE -------------------------------------------
    @torch.no_grad()
    def _prepare(self, trajectories: Sequence[Trajectory]) -> tuple[list[_Utterance], float, float]:
        """pi_old and V for every token, GAE per trajectory, advantages normalised over the batch.
        Also returns the raw advantages' mean and the mean per-token log pi_old - log pi_ref."""
        transitions = [t for traj in trajectories for t in traj.transitions]
        tokens = self.action_tokens(transitions)  # (N,) lists of L_i ids
        logp_old, values, kl = [], [], []
        for start in range(0, len(transitions), self.cfg.minibatch_size):
            chunk = slice(start, start + self.cfg.minibatch_size)
            states = [t.state for t in transitions[chunk]]
            logp, _, hidden = actor_token_logprobs_hidden(self.actor, states, tokens[chunk])  # (B, L), (B, L, D)
            v = self.value_head(hidden).squeeze(-1)  # (B, L)  V(s, a^{<h})
            ref = self.reference.token_logprobs(states, tokens[chunk])[0] if self.reference else None  # (B, L)
            for i, a in enumerate(tokens[chunk]):
                logp_old.append(logp[i, :len(a)].cpu())
                values.append(v[i, :len(a)].cpu())
                if ref is not None:
                    kl.append((logp[i, :len(a)] - ref[i, :len(a)]).double().cpu().numpy())  # (L,)
        advantages, returns, k = [], [], 0
        for traj in trajectories:  # GAE runs across the utterances of one trajectory
            n = len(traj.transitions)
            _, rewards, discounts, terminated = self.token_mdp(traj, tokens[k:k + n])  # (H,), (H,)
            if kl:
                rewards = rewards - self.cfg.kl_coef * np.concatenate(kl[k:k + n])  # r_h - beta (log pi_old - log pi_ref)
            v_traj = torch.cat(values[k:k + n]).double().numpy()  # (H,)
            # terminated: V_H = 0 exactly; truncated: bootstrap 0 too (the documented simplification)
            adv, ret = gae(rewards, v_traj, discounts, self.cfg.gae_lambda, last_done=terminated,
                           last_value=0.0)  # (H,), (H,)
            bounds = np.cumsum([0] + [len(a) for a in tokens[k:k + n]])  # utterance edges in the flat sequence
            advantages += [torch.tensor(adv[a:b], dtype=torch.float32) for a, b in zip(bounds, bounds[1:])]
            returns += [torch.tensor(ret[a:b], dtype=torch.float32) for a, b in zip(bounds, bounds[1:])]
            k += n
        flat = torch.cat(advantages)  # (N_tokens,)
        mean, std = flat.mean(), flat.std(unbiased=False)
        utterances = [_Utterance(t.state, a, lp, (adv - mean) / (std + 1e-8), ret)  # A <- (A - mu) / sigma
                      for t, a, lp, adv, ret in zip(transitions, tokens, logp_old, advantages, returns)]
        return utterances, float(mean), float(np.concatenate(kl).mean()) if kl else 0.0

    # ----- step 2: one minibatch of clipped-surrogate + value regression ---------------------------
    def _minibatch_step(self, batch: list[_Utterance]) -> dict[str, float]:
        device = self.actor.device
        logp, mask, hidden = actor_token_logprobs_hidden(
            self.actor, [u.state for u in batch], [u.tokens for u in batch])  # (B, L), (B, L), (B, L, D)
        logp_old, adv, ret = (_pad([getattr(u, name) for u in batch], logp.shape[1]).to(device)
                              for name in ("logp_old", "advantages", "returns"))  # (B, L) each
        policy_loss = clipped_policy_loss(logp, logp_old, adv, mask, self.cfg.clip_eps)
        self.actor_opt.zero_grad()
        policy_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.model.parameters(), self.cfg.grad_clip)
        self.actor_opt.step()

        v = self.value_head(hidden.detach()).squeeze(-1)  # (B, L)  V(s, a^{<h}), actor not trained by it
        value_loss = ((v - ret) ** 2 * mask).sum() / mask.sum()  # mean_h (V_h - R_h)^2
        self.value_opt.zero_grad()
        (self.cfg.vf_coef * value_loss).backward()
        nn.utils.clip_grad_norm_(self.value_head.parameters(), self.cfg.grad_clip)
        self.value_opt.step()

        with torch.no_grad():
            log_ratio = (logp - logp_old) * mask  # (B, L)
            ratio = torch.exp(log_ratio)
            n = mask.sum()
            approx_kl = (((ratio - 1.0) - log_ratio) * mask).sum() / n  # k3 estimate of KL(old || new)
            clip_fraction = (((ratio - 1.0).abs() > self.cfg.clip_eps).float() * mask).sum() / n
        return {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                "approx_kl": approx_kl.item(), "clip_fraction": clip_fraction.item()}

    # ----- save / load ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"value_head": self.value_head.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                 "value_opt": self.value_opt.state_dict(), "rng": self.rng.bit_generator.state}
        if self.reference is not None:  # a resumed run must keep the policy it started from
            state["reference"] = self.reference.model.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.value_head.load_state_dict(state["value_head"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.rng.bit_generator.state = state["rng"]
        if self.reference is not None:
            if "reference" not in state:
                raise ValueError("This PPO state has no reference policy (saved with kl_coef = 0); "
                                 "resume it with kl_coef = 0 or start a new run.")
            self.reference.model.load_state_dict(state["reference"])


def _pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Right-pad 1-D rows with zeros to (B, width), matching token_logprobs' layout."""
    out = torch.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
