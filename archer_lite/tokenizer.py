"""Small word-level tokenizers trained on each environment's text.

A word-level vocabulary keeps the actor tiny (a few hundred tokens) and makes every token a
readable word. Spaces are kept with the word that follows them (``"▁dog"``) and punctuation is
split off, so ``decode(encode(text)) == text`` exactly: the env sees what the actor wrote.

Special tokens: ``[PAD]`` (left padding), ``[UNK]``, ``[BOS]``, ``[EOS]``. The end of an
utterance is the newline token ``"\\n"`` (:data:`END_OF_UTTERANCE`): the actor stops there and,
easy to overlook, its log-probability is part of the utterance's log-probability.

    tok = load_tokenizer("twenty_questions")       # from data/tokenizers/twenty_questions/
    tok("Is it a dog?\\n").input_ids
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from archer_lite.paths import DATA_DIR

END_OF_UTTERANCE = "\n"
SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]",
                  "eos_token": "[EOS]"}


def build_tokenizer(texts: Iterable[str], min_frequency: int = 1):
    """Train a word-level ``PreTrainedTokenizerFast`` on ``texts`` (lossless round-trip)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(END_OF_UTTERANCE, behavior="isolated"),  # "\n" is its own token
        pre_tokenizers.Metaspace(prepend_scheme="never"),              # " dog" -> "▁dog"
        pre_tokenizers.Punctuation(behavior="isolated"),               # "dog?" -> "dog", "?"
    ])
    core.decoder = decoders.Metaspace(prepend_scheme="never")
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()),
                                        min_frequency=min_frequency)
    texts = list(texts)
    # Every word gets both forms, "dog" (line start) and "▁dog" (after a space), so a word seen
    # in only one position in the corpus never decodes to [UNK] in the other.
    words = sorted({piece.lstrip("▁") for text in texts
                    for piece, _ in core.pre_tokenizer.pre_tokenize_str(text)} - {"", "\n"})
    both_forms = ["\n".join(words), " " + " ".join(words)]
    core.train_from_iterator(texts + both_forms + [END_OF_UTTERANCE], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **SPECIAL_TOKENS)
    return tok


def tokenizer_dir(family: str) -> Path:
    return DATA_DIR / "tokenizers" / family


def load_tokenizer(name_or_path: str):
    """Load a shipped tokenizer by env family (``"twenty_questions"``), env name, or a path.

    Any Hugging Face tokenizer id/path also works (e.g. ``"gpt2"`` for a user with the hub).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(name_or_path)
    if not path.exists():
        family = _family(name_or_path)
        if family is not None:
            path = tokenizer_dir(family)
            if not (path / "tokenizer.json").exists():
                raise FileNotFoundError(
                    f"No shipped tokenizer at {path}. Rebuild it with `python -m archer_lite.data`.")
            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
            tok.padding_side = "left"
            return tok
    tok = AutoTokenizer.from_pretrained(str(name_or_path))  # a hub id or a local HF folder
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def end_of_utterance_id(tok) -> int:
    """Token id that ends an utterance: the newline token (word-level) or the EOS token."""
    ids = tok.encode(END_OF_UTTERANCE, add_special_tokens=False)
    if len(ids) == 1 and ids[0] != tok.unk_token_id:
        return ids[0]
    return tok.eos_token_id


def _family(name: str) -> str | None:
    from archer_lite.envs import ENVS

    if name in ENVS:
        return ENVS[name].family
    if name in {spec.family for spec in ENVS.values()}:
        return name
    return None
