"""Shipped word-level tokenizers: exact round trip, left padding, the end-of-utterance token."""
import pytest

from archer_lite.envs import ENVS, make_env
from archer_lite.tokenizer import END_OF_UTTERANCE, build_tokenizer, end_of_utterance_id, load_tokenizer

FAMILIES = sorted({spec.family for spec in ENVS.values()})


def test_build_round_trips_exactly():
    tok = build_tokenizer(["Is it a dog?\nYes.\n", "search[red cotton t-shirt]\n"])
    for text in ["Is it a dog?\nYes.\n", "search[red cotton t-shirt]\n", "a dog?"]:
        assert tok.decode(tok(text).input_ids) == text
    assert tok.convert_ids_to_tokens(tok("a dog?").input_ids) == ["a", "▁dog", "?"]
    assert tok.padding_side == "left"


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_tokenizer_covers_env_text(family):
    tok = load_tokenizer(family)
    eou = end_of_utterance_id(tok)
    assert tok.convert_ids_to_tokens(eou) == END_OF_UTTERANCE
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"[PAD]", "[BOS]", "[EOS]"}
    name = next(n for n, s in ENVS.items() if s.family == family)
    for text in make_env(name).corpus()[:500]:
        ids = tok(text).input_ids
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text


def test_left_padding():
    tok = load_tokenizer("corridor")
    batch = tok(["go right\n", "wait\n"], padding=True)
    assert batch.input_ids[1][0] == tok.pad_token_id and batch.attention_mask[1][0] == 0


def test_unknown_tokenizer_path_fails_clearly(tmp_path):
    with pytest.raises(Exception):
        load_tokenizer(str(tmp_path / "nope"))
