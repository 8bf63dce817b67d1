"""ArCHer: an off-policy utterance-level critic + a token-level policy gradient actor.

One iteration, after the rollout has filled the replay buffer (see ``archer_lite.train``):

1. ``critic_steps`` critic steps (plus ``critic_warmup_steps`` once, in the last warm-up
   iteration) on uniformly sampled transitions, each followed by a Polyak update of the target
   critic (:func:`critic_step`):
       L_Q = sum_i mean( Q_i(s,a) - [r + gamma (1 - done) Vbar_i(s')] )^2
       L_V = sum_i mean( V_i(s) - Qbar_i(s, a~) )^2,    a~ ~ pi(.|s) sampled fresh
   With ``conservative_coef = alpha > 0`` (not in the paper; CQL's sampled form) the critic also
   pushes Q down at the actor's fresh utterances and up at the buffer's:
       L_C = alpha sum_i mean( Q_i(s, a~) - Q_i(s, a) )
   so text the actor drifts to, which no transition has scored yet, is not rated above what
   the buffer shows.
2. after ``warmup_iterations``, ``actor_steps`` actor steps (:func:`actor_step`):
       A(s, a~) = min_i Q_i(s, a~) - min_i V_i(s)          (online critic, no gradient)
       L_pi = - mean( A(s, a~) * sum_h log pi(a~^h | s, a~^{<h}) )
   With ``token_baseline=True`` (the paper's "ArCHer with baseline"): a token-level value
   b(s, a^{<h}) is regressed onto A and each token's weight is (A - b_h):
       L_b = mean_{B, h} ( b(s, a~^{<h}) - A(s, a~) )^2
   b is only trusted while it beats the zero baseline on the previous batch, measured before it
   was fitted there (held out): mean (b_h - A)^2 < mean A^2. Otherwise the weight is A alone.
   With ``actor_samples = k > 1`` (not in the paper) each of batch_size / k states gets k
   utterances and V is replaced by the other samples' mean Q (a leave-one-out baseline):
       A(s, a~_j) = min_i Q_i(s, a~_j) - 1/(k-1) sum_{l != j} min_i Q_i(s, a~_l)
   which keeps only the critic's ranking of utterances within a state (what CHAI uses) and drops
   V's error from state to state.

Actor and critic are clipped separately (the reference code clipped them together, coupling
their step sizes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archer_lite.actor import Actor
from archer_lite.buffer import Batch, ReplayBuffer
from archer_lite.critic import DoubleCritic, make_target, polyak_update, q_loss, td_target, v_loss


@dataclass
class ArcherConfig:
    """ArCHer's hyper-parameters. Defaults follow the paper/official code; see PRESETS for CPU."""

    gamma: float = 0.95
    """Discount between utterances (paper 0.9-0.98 by task, code 0.95)."""
    tau: float = 0.1
    """Polyak rate of the target critic: theta_bar <- (1 - tau) theta_bar + tau theta."""
    critic_steps: int = 50
    """Critic gradient steps per iteration (paper: 50)."""
    actor_steps: int = 3
    """Actor gradient steps per iteration after warm-up (paper: 3)."""
    batch_size: int = 256
    """Transitions per critic/actor step (paper: 256)."""
    critic_lr: float = 1e-3
    """Critic learning rate (tiny encoder from scratch; ~2e-5 for a pretrained encoder)."""
    actor_lr: float = 2e-4
    """Actor learning rate (REINFORCE diverged at 1e-3 on the tiny actor)."""
    warmup_iterations: int = 10
    """Iterations that train only the critic before the actor starts."""
    critic_warmup_steps: int = 0
    """Extra critic steps taken once, in the last warm-up iteration, on the buffer the warm-up
    filled: they cost compute, not trajectories. TD values propagate about one turn per 1/tau
    steps, so a handful of critic steps per iteration leaves Q drifting for hundreds of steps.
    Measured with the cpu_course schedule (10 critic steps per iteration, 3 warm-up iterations),
    seed 0, from the GuessMyCity SFT actor shipped before the current one: mean Q went -0.9 -> -6.5
    over the first 350 trajectories while the actor already moved (advantage batch mean
    -0.9..+0.15, spread within a batch ~0.3); with 300 warm-up steps Q was at its level (-8.9) at
    the first actor step and the spread ~0.9, and sampled return was -9.78 at 240 trajectories
    instead of -13.23 (SFT start -10.98). It delays the
    collapse, not stops it: training returns fell to -13 by 448 trajectories, and on the 20Q subset
    sampled return fell to -17.03 by 480 (no warm-up: -9.81 at 672, -11.63 at 1,008)."""
    grad_clip: float = 1.0
    """Max grad norm, applied to the actor and to the critic separately."""
    token_baseline: bool = False
    """Use a token-level baseline b(s, a^{<h}) regressed onto A ("ArCHer with baseline").
    Measured on the tiny CPU actor (20Q subset): with one regression step per actor step and no
    check, b never fitted (its held-out MSE to A stayed above Var(A) in 97-100% of iterations), so
    A - b_h was mostly noise and 2 of 3 benchmark seeds collapsed to invalid text. Hence
    ``baseline_steps`` and the trust check (module docstring); metrics.jsonl logs
    ``baseline_mse``, ``zero_baseline_mse`` and ``baseline_used``. With them (same benchmark) b is
    trusted in 53-72% of steps but only learns the batch's mean advantage: its held-out MSE is a
    median 0.80-0.995 of the zero baseline's and still above Var(A) in 95-100% of steps. No seed
    ended all-invalid (finals -17.45, -15.05, -12.39 vs -20, -20, -16.81 before), but the text
    still degrades ("Is itIs it a dog?"): seed 0 ends 46% invalid, seed 2 passed through 98%
    before recovering, where plain ArCHer never exceeds the SFT actor's 18%. Centring A (which is
    all b achieves) is what hurts: batch-centred advantages collapsed the same way."""
    baseline_lr: float = 1e-3
    """Learning rate of the token-level baseline head."""
    baseline_steps: int = 5
    """Regression steps of b on each actor batch (after the batch's actor weights are taken)."""
    actor_samples: int = 1
    """k utterances per state in an actor step: 1 = the paper's A = min Q - min V; k > 1 =
    leave-one-out advantage over the k samples of each state (module doc), batch_size / k states.
    Measured (GuessMyCity, grid cell schedule, seed 0, k = 4): the advantage is zero-mean by
    construction and the text stays valid (invalid 17% -> 7-13%), but the fully fine-tuned actor
    still learns to loop: repeats 9% -> 39% and greedy -3.38 -> -17.16 by 240 trajectories (plain
    ArCHer: greedy -15 by 240), so the failure is not V's bias alone. Through LoRA (k = 4) the
    actor stays where it started (sampled -8.4..-10.1, greedy -2.2 over 320 trajectories)."""
    kl_coef: float = 0.0
    """beta of a KL penalty to the starting (SFT) actor, paid inside the advantage:
    A <- A - beta (log pi(a~|s) - log pi_ref(a~|s)), pi_ref frozen (0 = off, the paper's ArCHer)."""
    conservative_coef: float = 0.0
    """alpha of a conservative (CQL-style) critic term L_C = alpha sum_i mean(Q_i(s, a~) - Q_i(s, a))
    (module doc; 0 = off, the paper's ArCHer). Why: ``python -m archer_lite.bench invalid-gap``
    shows a critic trained on SFT rollouts rating malformed text (never in its data) above the
    SFT actor's valid utterances in the same states, which is what the fully fine-tuned actor
    climbs towards. Measured with alpha = 1 (grid cell schedule, ``--methods archer_conservative``):
    GuessMyCity seeds 0 / 1 / 2 keep their text valid (invalid 0-19%, plain ArCHer 84% by 720
    trajectories) and end at -2.36 / -1.62 / -2.02, greedy -1.36 / -1.00 / -1.56 (plain ArCHer:
    -20.00 / -19.62 / -18.58; CHAI -3.06 / -3.33 / -3.67); on the 20Q subset (3 seeds) the final
    median is -11.09 (plain -13.45) but repeats still reach 34-44%: loops through valid, already
    scored questions are not what the term acts on. It costs one more critic forward pass per
    step."""

    def __post_init__(self):
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (got {self.gamma}).")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1] (got {self.tau}).")
        if self.batch_size < 1 or min(self.critic_steps, self.actor_steps, self.critic_warmup_steps) < 0:
            raise ValueError("batch_size must be >= 1 and step counts >= 0.")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (got {self.kl_coef}); 0 turns the KL penalty off.")
        if self.actor_samples < 1 or self.actor_samples > self.batch_size:
            raise ValueError(f"actor_samples must be in [1, batch_size={self.batch_size}] (got "
                             f"{self.actor_samples}); 1 is the paper's min Q - min V advantage.")
        if self.baseline_steps < 1:
            raise ValueError(f"baseline_steps must be >= 1 (got {self.baseline_steps}).")
        if self.conservative_coef < 0:
            raise ValueError(f"conservative_coef must be >= 0 (got {self.conservative_coef}); "
                             "0 turns the conservative critic term off.")


def critic_step(critic: DoubleCritic, target: DoubleCritic, actor: Actor, batch: Batch,
                optimizer: torch.optim.Optimizer, cfg: ArcherConfig) -> dict[str, float]:
    """One critic step (Q and V losses, plus the conservative term L_C when
    ``cfg.conservative_coef > 0``) followed by the Polyak update of the target."""
    device = next(critic.parameters()).device
    rewards = torch.as_tensor(batch.rewards, device=device)  # (B,)
    dones = torch.as_tensor(batch.dones, device=device)  # (B,)
    fresh_actions = actor.sample(batch.states)  # a~ ~ pi(.|s), no gradient
    with torch.no_grad():
        vbar1_next, vbar2_next = target.values(batch.next_states)  # (B,), (B,)
        y1 = td_target(rewards, dones, vbar1_next, cfg.gamma)  # r + gamma (1-done) Vbar_1(s')
        y2 = td_target(rewards, dones, vbar2_next, cfg.gamma)
        qbar1, qbar2, _, _ = target.q_v(batch.states, fresh_actions)  # Qbar_i(s, a~)
    q1, q2, v1, v2 = critic.q_v(batch.states, batch.actions)  # one encoding of s serves Q and V
    loss_q, loss_v = q_loss(q1, q2, y1, y2), v_loss(v1, v2, qbar1, qbar2)
    loss, logs = loss_q + loss_v, {}
    if cfg.conservative_coef > 0:
        q1f, q2f, _, _ = critic.q_v(batch.states, fresh_actions)  # Q_i(s, a~), with gradient
        gap = conservative_gap(q1f, q2f, q1, q2)  # sum_i mean(Q_i(s, a~) - Q_i(s, a))
        loss = loss + cfg.conservative_coef * gap
        logs["conservative_gap"] = gap.item()
    optimizer.zero_grad()
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
    optimizer.step()
    polyak_update(target, critic, cfg.tau)
    return {"q_loss": loss_q.item(), "v_loss": loss_v.item(), "q_mean": q1.mean().item(),
            "v_mean": v1.mean().item(), "critic_grad_norm": float(grad_norm), **logs}


def conservative_gap(q1_fresh: torch.Tensor, q2_fresh: torch.Tensor, q1_data: torch.Tensor,
                     q2_data: torch.Tensor) -> torch.Tensor:
    """sum_i mean( Q_i(s, a~) - Q_i(s, a) ): the actor's fresh utterances a~ against the buffer's a
    in the same states; ``conservative_coef`` times it is added to the critic loss (L_C)."""
    return (q1_fresh - q1_data).mean() + (q2_fresh - q2_data).mean()


def actor_step(actor: Actor, critic: DoubleCritic, states: list[str], optimizer: torch.optim.Optimizer,
               cfg: ArcherConfig, baseline: "TokenBaseline | None" = None,
               reference: Actor | None = None) -> dict[str, float]:
    """One REINFORCE step inside the utterance on the critic's advantage.

    L_pi = - mean_B( sum_h w_h log pi(a~^h | s, a~^{<h}) ),  A = min Q - min V (no grad),
    w_h = A(s, a~), or A(s, a~) - b(s, a~^{<h}) while the token baseline is trusted. With a
    ``reference`` actor, A <- A - kl_coef (log pi(a~|s) - log pi_ref(a~|s)) first (no grad).
    """
    k = cfg.actor_samples
    if k > 1:  # k utterances for each of B / k states, grouped: s_1 x k, s_2 x k, ...
        states = [s for s in states[: max(1, len(states) // k)] for _ in range(k)]
    texts, tokens, _ = actor.sample(states, return_tokens=True)  # a~ ~ pi(.|s)
    # (B,) A(s, a~): min Q - min V, or min Q against the other samples of the same state
    advantage = loo_advantage(critic, states, texts, k) if k > 1 else critic.advantage(states, texts)
    logp, mask, hidden = actor_token_logprobs_hidden(actor, states, tokens)  # (B, L), (B, L), (B, L, D)
    logs = {}
    if reference is not None:
        with torch.no_grad():
            log_ratio = ((logp - reference.token_logprobs(states, tokens)[0]) * mask).sum(-1)  # (B,)
        advantage = advantage - cfg.kl_coef * log_ratio  # A - beta (log pi - log pi_ref)
        logs["kl_ref"] = log_ratio.mean().item()
    weight = advantage[:, None].expand_as(logp)  # (B, L): every token gets A
    if baseline is not None:
        b, fit_logs = baseline.fit(hidden.detach(), advantage, mask)  # b before fitting on this batch
        logs.update(fit_logs)
        if logs["baseline_used"]:
            weight = advantage[:, None] - b  # (B, L): A - b_h
    loss = -((weight * logp * mask).sum(-1)).mean()  # - mean( sum_h w_h log pi(a^h|...) )
    optimizer.zero_grad()
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(actor.model.parameters(), cfg.grad_clip)
    optimizer.step()
    return {"actor_loss": loss.item(), "advantage_mean": advantage.mean().item(),
            "advantage_std": advantage.std().item() if len(advantage) > 1 else 0.0,
            "actor_grad_norm": float(grad_norm), **logs}


@torch.no_grad()
def loo_advantage(critic: DoubleCritic, states: list[str], actions: list[str], k: int) -> torch.Tensor:
    """A(s, a_j) = min_i Q_i(s, a_j) - mean_{l != j} min_i Q_i(s, a_l) over groups of k
    consecutive (state, action) pairs that share their state.   (B,)"""
    q = critic.min_q(states, actions).view(-1, k)  # (B/k, k)
    others = (q.sum(-1, keepdim=True) - q) / (k - 1)  # (B/k, k): the mean of the other k - 1
    return (q - others).reshape(-1)


class TokenBaseline(nn.Module):
    """b(s, a^{<h}): a small MLP on the actor's last hidden state before token h, regressed onto A.

    Its output layer starts at zero (b = 0: no baseline until it has learned something). ``trusted``
    says whether b beat the zero baseline on the previous batch, held out (scored before fitting).
    """

    def __init__(self, dim: int, cfg: ArcherConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        self.register_buffer("trusted", torch.zeros((), dtype=torch.bool))
        self.steps = cfg.baseline_steps
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.baseline_lr)  # .to() keeps the params

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).squeeze(-1)  # (B, L)

    def fit(self, hidden: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor):
        """Score b on this batch (held out), then take ``steps`` regression steps on it.

        Returns b before fitting (detached, (B, L)) and the metrics; ``baseline_used`` is the trust
        earned on the previous batch, so the choice never looks at this batch's advantages."""
        target = advantage[:, None].expand_as(mask)
        used = bool(self.trusted)
        with torch.no_grad():
            b = self(hidden)
            mse = float(((b - target) ** 2 * mask).sum() / mask.sum())  # held-out MSE of b
            zero_mse = float((target ** 2 * mask).sum() / mask.sum())  # MSE of b = 0
        for _ in range(self.steps):
            loss = ((self(hidden) - target) ** 2 * mask).sum() / mask.sum()  # L_b
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.trusted.fill_(mse < zero_mse)
        return b, {"baseline_mse": mse, "zero_baseline_mse": zero_mse, "baseline_used": float(used),
                   "baseline_loss": loss.item()}

    def full_state(self) -> dict:
        """Parameters, trust flag and optimiser state (for checkpoints)."""
        return {"net": self.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])


def actor_token_logprobs_hidden(actor: Actor, states, tokens):
    """Like ``actor.token_logprobs`` plus the last hidden state before each action token."""
    captured = {}

    def hook(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    final_norm = _final_norm(actor.model)
    handle = final_norm.register_forward_hook(hook)
    try:
        logp, mask = actor.token_logprobs(states, tokens)
    finally:
        handle.remove()
    h = captured["h"]  # (B, T, D): position t predicts token t+1
    width = logp.shape[1]
    hidden = torch.zeros((h.shape[0], width, h.shape[-1]), device=h.device)
    for i, a in enumerate(tokens):
        n = len(a)
        hidden[i, :n] = h[i, h.shape[1] - n - 1: h.shape[1] - 1]
    return logp, mask, hidden


def _final_norm(model: nn.Module) -> nn.Module:
    for name in ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm",
                 "base_model.model.transformer.ln_f", "base_model.model.model.norm"):
        module = model
        try:
            for part in name.split("."):
                module = getattr(module, part)
            return module
        except AttributeError:
            continue
    raise ValueError("token_baseline needs the model's final layer norm; add its name to "
                     "archer_lite.algorithms.archer._final_norm.")


class Archer:
    """The ArCHer learner: owns the critic, its target, the optimisers and the update schedule."""

    name = "archer"

    def __init__(self, actor: Actor, critic: DoubleCritic, cfg: ArcherConfig):
        self.actor, self.critic, self.cfg = actor, critic, cfg
        self.target = make_target(critic)
        self.critic_opt = torch.optim.Adam([p for p in critic.parameters() if p.requires_grad],
                                           lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam([p for p in actor.model.parameters() if p.requires_grad],
                                          lr=cfg.actor_lr)
        self.baseline = None
        if cfg.token_baseline:
            dim = actor.model.get_output_embeddings().weight.shape[1]
            self.baseline = TokenBaseline(dim, cfg).to(actor.device)
        self.reference = None
        if cfg.kl_coef > 0:  # pi_ref: the actor as ArCHer received it, frozen
            self.reference = actor.frozen_copy()

    def act(self, states: list[str]) -> list[str]:
        return self.actor.sample(states)

    def update(self, buffer: ReplayBuffer, new_trajectories, iteration: int) -> dict[str, float]:
        """K critic steps, then (after warm-up) K actor steps; returns the mean of each metric."""
        logs: dict[str, list[float]] = {}
        extra = self.cfg.critic_warmup_steps if iteration == self.cfg.warmup_iterations - 1 else 0
        for _ in range(self.cfg.critic_steps + extra):
            _append(logs, critic_step(self.critic, self.target, self.actor,
                                      buffer.sample(self.cfg.batch_size), self.critic_opt, self.cfg))
        if iteration >= self.cfg.warmup_iterations:
            for _ in range(self.cfg.actor_steps):
                states = buffer.sample(self.cfg.batch_size).states
                _append(logs, actor_step(self.actor, self.critic, states, self.actor_opt, self.cfg,
                                         self.baseline, self.reference))
        return {k: float(sum(v) / len(v)) for k, v in logs.items()}

    def state_dict(self) -> dict:
        state = {"critic": self.critic.state_dict(), "target": self.target.state_dict(),
                 "critic_opt": self.critic_opt.state_dict(), "actor_opt": self.actor_opt.state_dict()}
        if self.baseline is not None:
            state["baseline"] = self.baseline.full_state()
        if self.reference is not None:  # a resumed run keeps the policy it started from
            state["reference"] = self.reference.model.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        if self.baseline is not None:
            self.baseline.load_full_state(state["baseline"])
        if self.reference is not None:
            if "reference" not in state:
                raise ValueError("This ArCHer state has no reference actor (saved with kl_coef = 0); "
                                 "resume it with kl_coef = 0 or start a new run.")
            self.reference.model.load_state_dict(state["reference"])


def _append(logs: dict[str, list[float]], metrics: dict[str, float]) -> None:
    for k, v in metrics.items():
        logs.setdefault(k, []).append(v)
