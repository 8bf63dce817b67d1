"""The actor: a causal language model that speaks one utterance per turn.

ArCHer's low level is token by token: inside an utterance the LM emits tokens a^1..a^L and stops at
the end-of-utterance token (a newline). This module wraps any Hugging Face causal LM with:

* :meth:`Actor.sample` -- batched utterance sampling with a KV cache, **left padding with
  explicit position ids** (the reference code's right padding put positions in the wrong place),
  a token cap, temperature, and greedy decoding for evaluation;
* :meth:`Actor.utterance_logprob` -- log pi(a|s) = sum_h log pi(a^h | s, a^{<h}), **including the
  stop token** (the reference code dropped it, so its policy never learned when to stop);
* :meth:`Actor.token_logprobs` -- the same, token by token, for the widgets;
* LoRA adapters through peft, with target modules chosen by architecture.

The default model is a tiny GPT-2 (:func:`build_tiny_gpt2`) over the env's shipped word-level
tokenizer; ``ActorConfig(model="gpt2")`` or any local path loads real weights unchanged.
"""
from __future__ import annotations

import contextlib
import copy
import json
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archer_lite.tokenizer import end_of_utterance_id, load_tokenizer

LORA_TARGETS = {
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt_neox": ["query_key_value"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
"""LoRA target modules per ``config.model_type`` (the reference code hard-coded Llama's)."""
LORA_BASE_DIR = "base"
"""Where a LoRA actor's checkpoint keeps the weights under its adapters, unless they are a hub
model (``"gpt2"``) that ``from_pretrained`` finds again: a scratch model has no other copy, and a
local path (the shipped SFT actor) may be rebuilt or absent on the machine that loads it."""


@dataclass
class ActorConfig:
    """How to build the actor. Defaults are the tiny CPU actor the course uses."""

    model: str = "tiny"
    """"tiny" (a fresh tiny GPT-2 over ``tokenizer``), a Hugging Face id (``"gpt2"``) or a local path."""
    tokenizer: str = ""
    """Env name/family of a shipped tokenizer, or a HF id/path; "" = the model's own (or the env's)."""
    n_layer: int = 2
    """Tiny model: transformer blocks."""
    n_embd: int = 128
    """Tiny model: hidden size."""
    n_head: int = 4
    """Tiny model: attention heads."""
    n_positions: int = 512
    """Tiny model: context length (state + utterance tokens)."""
    max_utterance_tokens: int = 16
    """Cap on tokens per utterance; an utterance hitting it is cut there."""
    max_state_tokens: int = 480
    """States longer than this keep their most recent tokens (left truncation)."""
    temperature: float = 1.0
    """Sampling temperature for rollouts (ArCHer samples at 1.0)."""
    lora: bool = False
    """Train LoRA adapters instead of all weights (for big pretrained actors; also applied to the
    loaded SFT actor). On the 20Q subset it keeps the tiny actor from losing track of what it said
    (repeats 14-23% after 1,008 trajectories vs 56-64% with all weights trained; see README)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator."""

    def __post_init__(self):
        if self.max_utterance_tokens < 1:
            raise ValueError("max_utterance_tokens must be >= 1.")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding).")


def build_tiny_gpt2(tokenizer, n_layer: int = 2, n_embd: int = 128, n_head: int = 4,
                    n_positions: int = 512):
    """A fresh GPT-2-architecture model sized for a CPU, dropout off (RL actors need it off:
    with dropout on, training log-probs differ from the rollout's)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, activation_function="gelu",  # torch's fused GELU, not tanh-approx
                        bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def _base_needs_copy(model) -> bool:
    """Does a LoRA checkpoint need its own copy of the base weights? (see LORA_BASE_DIR)"""
    name = model.get_base_model().config.name_or_path
    hub_id = (bool(name) and name.count("/") <= 1 and not name.startswith((".", "/", "~"))
              and not Path(name).exists())  # "gpt2", "org/model"
    return not hub_id


@contextlib.contextmanager
def _quiet_peft():
    """peft still asks transformers 5 for ``is_gradient_checkpointing`` (a FutureWarning on every
    wrap or load); silence that one message only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _cache_field() -> str:
    """The KV cache's name in a causal LM's forward arguments and outputs: ``cache`` in recent
    transformers 5.x, ``past_key_values`` before (5.17 still uses it)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


_CACHE = _cache_field()


class Actor(nn.Module):
    """A causal LM + tokenizer that samples and scores utterances given text states."""

    def __init__(self, model, tokenizer, config: ActorConfig | None = None):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.config = config or ActorConfig()
        self.stop_id = end_of_utterance_id(tokenizer)
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.stop_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_id
        special = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id,
                   tokenizer.eos_token_id} - {None, self.stop_id}
        self.banned_ids = sorted(i for i in special if i < model.get_output_embeddings().weight.shape[0])
        """Special tokens never sampled inside an utterance."""

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ActorConfig, env: str = "") -> "Actor":
        """Build from a config; ``env`` names the shipped tokenizer when ``config.tokenizer`` is ""."""
        if config.model == "tiny":
            tok_name = config.tokenizer or env
            if not tok_name:
                raise ValueError("The tiny actor needs a tokenizer: pass env=... or set "
                                 "ActorConfig.tokenizer to an env name or a tokenizer path.")
            tokenizer = load_tokenizer(tok_name)
            model = build_tiny_gpt2(tokenizer, config.n_layer, config.n_embd, config.n_head,
                                    config.n_positions)
        else:
            from transformers import AutoModelForCausalLM

            tokenizer = load_tokenizer(config.tokenizer or config.model)
            model = AutoModelForCausalLM.from_pretrained(config.model)
        actor = cls(model, tokenizer, config)
        if config.lora:
            actor.add_lora()
        return actor

    def add_lora(self) -> None:
        """Wrap the model with LoRA adapters on the attention projections of its architecture."""
        from peft import LoraConfig, get_peft_model

        model_type = self.model.config.model_type
        if model_type not in LORA_TARGETS:
            raise ValueError(f"No LoRA targets known for model_type={model_type!r}; add them to "
                             f"archer_lite.actor.LORA_TARGETS (known: {', '.join(LORA_TARGETS)}).")
        lora = LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha, lora_dropout=0.0,
                          target_modules=LORA_TARGETS[model_type],
                          fan_in_fan_out=model_type == "gpt2")  # GPT-2's Conv1D stores W transposed
        with _quiet_peft():
            self.model = get_peft_model(self.model, lora)

    def frozen_copy(self) -> "Actor":
        """A copy with its own frozen model, sharing tokenizer and config: a reference policy pi_ref."""
        return Actor(copy.deepcopy(self.model).requires_grad_(False), self.tokenizer, self.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only)

    # ----- tokens -----------------------------------------------------------------------------
    def encode_states(self, states: Sequence[str]) -> list[list[int]]:
        """[BOS] + the state's tokens, keeping the most recent ``max_state_tokens``."""
        keep = self.config.max_state_tokens - 1
        return [[self.bos_id] + ids[-keep:] for ids in
                self.tokenizer(list(states), add_special_tokens=False).input_ids]

    def encode_actions(self, actions: Sequence[str]) -> list[list[int]]:
        """The utterance's tokens followed by the stop token."""
        ids = self.tokenizer(list(actions), add_special_tokens=False).input_ids
        return [a[: self.config.max_utterance_tokens - 1] + [self.stop_id] for a in ids]

    def sayable(self, actions: Sequence[str]) -> list[bool]:
        """Whether the policy could emit each action: its encoding holds no special token (the
        sampler never emits one). Text it decoded can fail this: a tiny actor's "to"+"area" reads
        back as "toarea", which encodes as [UNK], so log pi(a|s) = -inf."""
        banned = set(self.banned_ids)
        return [not banned.intersection(ids) for ids in self.encode_actions(actions)]

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-pad to (B, T); positions count real tokens only, so padding never shifts them."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        # Easy to overlook: positions must follow the left padding (first real token at 0).
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    # ----- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, states: Sequence[str], greedy: bool = False, temperature: float | None = None,
               return_tokens: bool = False):
        """Sample one utterance per state (batched, KV cache). Returns the utterance texts
        (without the stop token); with ``return_tokens=True`` also the token ids (stop included
        when sampled) and their sampling log-probs under pi (temperature 1)."""
        if len(states) == 0:
            return ([], [], []) if return_tokens else []
        temperature = temperature or self.config.temperature
        ids, mask, positions = self._left_pad(self.encode_states(states))
        batch = ids.shape[0]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)  # prefill: only the last position's logits are needed
        logits, cache = out.logits[:, -1], getattr(out, _CACHE)  # (B, vocab)
        next_pos = positions[:, -1:] + 1  # (B, 1)
        tokens = torch.zeros((batch, 0), dtype=torch.long, device=ids.device)
        logps = torch.zeros((batch, 0), device=ids.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)
        for _ in range(self.config.max_utterance_tokens):
            logits = logits.float()
            logits[:, self.banned_ids] = float("-inf")
            log_pi = F.log_softmax(logits, dim=-1)  # (B, vocab) at temperature 1: the policy
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1).squeeze(-1)
            token = torch.where(finished, torch.full_like(token, self.pad_id), token)  # (B,)
            tokens = torch.cat([tokens, token[:, None]], dim=1)
            logps = torch.cat([logps, log_pi.gather(1, token[:, None])], dim=1)
            finished = finished | (token == self.stop_id)
            if finished.all():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                             use_cache=True, **{_CACHE: cache})
            logits, cache, next_pos = out.logits[:, -1], getattr(out, _CACHE), next_pos + 1
        texts, token_lists, logp_lists = [], [], []
        for row, row_logp in zip(tokens.tolist(), logps.tolist()):
            n = row.index(self.stop_id) + 1 if self.stop_id in row else len(row)
            token_lists.append(row[:n])
            logp_lists.append(row_logp[:n])
            body = row[:n - 1] if row[n - 1] == self.stop_id else row[:n]
            texts.append(self.tokenizer.decode(body).replace("\n", " ").strip())
        return (texts, token_lists, logp_lists) if return_tokens else texts

    # ----- scoring ------------------------------------------------------------------------------
    def token_logprobs(self, states: Sequence[str], actions: Sequence[str] | Sequence[Sequence[int]]):
        """Per-token log pi(a^h | s, a^{<h}) for each action; returns (logps (B, L), mask (B, L)).

        ``actions`` are texts (encoded, stop token appended) or token-id lists as returned by
        ``sample(..., return_tokens=True)``. Row i's valid entries are ``mask[i] == 1``.
        """
        if len(states) != len(actions):
            raise ValueError(f"{len(states)} states but {len(actions)} actions.")
        state_ids = self.encode_states(states)
        action_ids = (self.encode_actions(actions) if actions and isinstance(actions[0], str)
                      else [list(a) for a in actions])
        seqs = [s + a for s, a in zip(state_ids, action_ids)]
        ids, mask, positions = self._left_pad(seqs)  # (B, T)
        width = max(len(a) for a in action_ids)
        # Actions sit at the right end of every left-padded row, so only the last width + 1
        # positions' logits are needed (the LM head over all T positions is most of the cost).
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=width + 1).logits[:, -(width + 1):]  # (B, W+1, vocab)
        banned = torch.tensor(self.banned_ids, dtype=torch.long, device=ids.device)
        # the policy never emits special tokens (sample() masks them the same way)
        logits = logits[:, :-1].float().index_fill(-1, banned, float("-inf"))  # (B, W, vocab)
        logp_all = F.log_softmax(logits, dim=-1)  # row i, column j predicts ids[i, T - W + j]
        token_logp = logp_all.gather(2, ids[:, -width:, None]).squeeze(-1)  # (B, W)
        # row i's action is its last len(a) tokens: move it to the front, mask the rest
        out_logp = torch.zeros((len(seqs), width), device=ids.device)
        out_mask = torch.zeros((len(seqs), width), device=ids.device)
        for i, a in enumerate(action_ids):
            out_logp[i, :len(a)] = token_logp[i, width - len(a):]
            out_mask[i, :len(a)] = 1.0
        return out_logp, out_mask

    def utterance_logprob(self, states: Sequence[str], actions) -> torch.Tensor:
        """log pi(a|s) = sum_h log pi(a^h | s, a^{<h}), stop token included. Shape (B,)."""
        logp, mask = self.token_logprobs(states, actions)
        return (logp * mask).sum(-1)  # (B,)

    # ----- save / load ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model (safetensors; adapters only when LoRA), tokenizer and actor config."""
        from transformers.utils import logging as hf_logging

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar on every checkpoint
        self.model.save_pretrained(str(path))
        if self.config.lora and _base_needs_copy(self.model):
            self._save_lora_base(path / LORA_BASE_DIR)
        self.tokenizer.save_pretrained(str(path))
        (path / "actor_config.json").write_text(json.dumps(asdict(self.config), indent=2))

    def _save_lora_base(self, path: Path) -> None:
        """The weights under the adapters, as a plain model (LoRA layers unwrapped) at ``path``."""
        base = self.model.get_base_model()
        state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
        base.save_pretrained(str(path), state_dict=state)

    @classmethod
    def load(cls, path: str | Path) -> "Actor":
        """Load an actor written by :meth:`save` (a clear error if it is missing or broken)."""
        from transformers import AutoModelForCausalLM

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar for a tiny model
        path = Path(path)
        cfg_file = path / "actor_config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"No actor checkpoint at {path} (actor_config.json missing). "
                                    f"Train one with `python -m archer_lite sft --env ...`.")
        try:
            raw = json.loads(cfg_file.read_text())
            config = ActorConfig(**{f.name: raw[f.name] for f in fields(ActorConfig) if f.name in raw})
            tokenizer = load_tokenizer(str(path))
            if (path / "adapter_config.json").exists():
                from peft import PeftModel

                base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
                if (path / LORA_BASE_DIR).exists():  # the base weights travel with the adapters
                    base = str(path / LORA_BASE_DIR)
                elif base is None:
                    raise ValueError("the adapters' base model was never saved (no base/ folder and no "
                                     "base_model_name_or_path in adapter_config.json)")
                with _quiet_peft():
                    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(path),
                                                      is_trainable=True)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(path))
        except Exception as err:  # safetensors, json, torch and HF each raise their own kinds
            raise ValueError(f"Actor checkpoint at {path} is corrupt or incomplete ({err}). "
                             f"Re-create it with `python -m archer_lite sft` or restore it from git.") from err
        return cls(model, tokenizer, config)
