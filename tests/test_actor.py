"""The actor's log-probabilities: stop token included, padding-invariant, equal to sampling's."""
import pytest
import torch

from archer_lite import set_seed
from archer_lite.actor import LORA_TARGETS, Actor, ActorConfig

STATES = ["Walk to the exit on the right.\nYou are in room 0 of 4.\n",
          "Walk to the exit on the right.\nYou are in room 2 of 4.\n",
          "Walk to the exit on the right.\n"]


@pytest.fixture(scope="module")
def actor():
    set_seed(0)
    return Actor.from_config(ActorConfig(n_embd=32, n_layer=2, n_head=2), env="corridor")


def test_tiny_actor_has_no_dropout(actor):
    cfg = actor.model.config
    assert (cfg.resid_pdrop, cfg.embd_pdrop, cfg.attn_pdrop) == (0.0, 0.0, 0.0)


def test_logprob_includes_stop_token(actor):
    logp, mask = actor.token_logprobs(STATES[:1], ["go right"])
    ids = actor.encode_actions(["go right"])[0]
    assert ids[-1] == actor.stop_id and mask.sum().item() == len(ids) == 3  # go, ▁right, \n
    total = actor.utterance_logprob(STATES[:1], ["go right"])
    assert total.item() == pytest.approx(logp[0, :3].sum().item(), abs=1e-6)
    # the stop token's own log-prob is a real (negative) number that the sum contains
    assert logp[0, 2].item() < 0


def test_batched_left_padding_equals_alone(actor):
    actions = ["go right", "wait", "go left go left go left"]
    batched = actor.utterance_logprob(STATES, actions)
    alone = torch.cat([actor.utterance_logprob([s], [a]) for s, a in zip(STATES, actions)])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_sampling_logprobs_equal_scoring(actor):
    set_seed(1)
    texts, tokens, logps = actor.sample(STATES * 4, return_tokens=True)
    scored = actor.utterance_logprob(STATES * 4, tokens)
    assert torch.allclose(scored, torch.tensor([sum(x) for x in logps]), atol=1e-4)
    assert all(len(t) <= actor.config.max_utterance_tokens for t in tokens)
    assert all("\n" not in t for t in texts)


def test_greedy_is_deterministic_and_seeded_sampling_reproducible(actor):
    assert actor.sample(STATES, greedy=True) == actor.sample(STATES, greedy=True)
    set_seed(5)
    a = actor.sample(STATES)
    set_seed(5)
    assert actor.sample(STATES) == a


def test_gradients_flow_through_utterance_logprob(actor):
    actor.model.zero_grad()
    actor.utterance_logprob(STATES[:2], ["go right", "wait"]).sum().backward()
    grads = [p.grad for p in actor.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_save_load_round_trip(actor, tmp_path):
    actor.save(tmp_path / "a")
    loaded = Actor.load(tmp_path / "a")
    assert torch.allclose(loaded.utterance_logprob(STATES, ["wait"] * 3),
                          actor.utterance_logprob(STATES, ["wait"] * 3), atol=1e-6)


def test_missing_and_corrupt_checkpoints_fail_clearly(tmp_path, actor):
    with pytest.raises(FileNotFoundError, match="sft"):
        Actor.load(tmp_path / "nowhere")
    actor.save(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        Actor.load(tmp_path / "c")


def test_lora_on_gpt2_targets_c_attn(tmp_path):
    set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=1, n_head=2, lora=True, lora_r=4),
                              env="corridor")
    trainable = [n for n, p in actor.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "c_attn" in n for n in trainable)
    assert actor.num_parameters(trainable_only=True) < actor.num_parameters() / 5
    assert LORA_TARGETS["llama"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_a_lora_checkpoint_carries_its_base_weights(tmp_path):
    """Adapters on a scratch model (no other copy of the base) or on a local checkpoint (which may
    be rebuilt, or absent where the checkpoint is loaded) save the base beside them; a hub id does
    not. Without a base anywhere, loading says so."""
    import shutil

    from archer_lite.actor import LORA_BASE_DIR, _base_needs_copy

    set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=1, n_head=2, lora=True, lora_r=4), env="corridor")
    with torch.no_grad():
        for p in actor.model.parameters():
            if p.requires_grad:
                p.add_(0.05)  # adapters away from B = 0, so the round trip depends on both halves
    actor.save(tmp_path / "a")
    assert (tmp_path / "a" / LORA_BASE_DIR / "model.safetensors").exists()
    shutil.move(tmp_path / "a", tmp_path / "moved")
    states, actions = ["You are at 0."], ["right"]
    with torch.no_grad():
        torch.testing.assert_close(Actor.load(tmp_path / "moved").utterance_logprob(states, actions),
                                   actor.utterance_logprob(states, actions), rtol=0, atol=1e-6)
    for name, copied in (("gpt2", False), ("openai-community/gpt2", False), (str(tmp_path), True),
                         ("/gone/sft", True), ("data/checkpoints/twenty_questions", True), ("", True)):
        actor.model.get_base_model().config.name_or_path = name
        assert _base_needs_copy(actor.model) == copied, name
    shutil.rmtree(tmp_path / "moved" / LORA_BASE_DIR)
    with pytest.raises(ValueError, match="base model was never saved"):
        Actor.load(tmp_path / "moved")


def test_bad_config_values():
    with pytest.raises(ValueError, match="temperature"):
        ActorConfig(temperature=0)
    with pytest.raises(ValueError, match="tokenizer"):
        Actor.from_config(ActorConfig())
