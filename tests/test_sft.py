"""SFT: demonstration pairs with their history, the unlikelihood term and its effect."""
import copy
import json
import math

import pytest
import torch

from archer_lite.actor import Actor, ActorConfig
import numpy as np

from archer_lite.algorithms import sft as sft_module
from archer_lite.algorithms.sft import (SFTConfig, bc_step, dagger, dagger_pairs, demo_pairs, demo_records,
                                     epoch_batches, sft, unlikelihood_loss)
from archer_lite.envs import make_env
from archer_lite.envs.base import normalize_utterance
from archer_lite.data import load_demos
from archer_lite.seeding import set_seed

ENV = "twenty_questions_subset"


@pytest.fixture()
def actor():
    set_seed(0)
    return Actor.from_config(ActorConfig(n_layer=1, n_embd=32, n_head=2), env=ENV)


def test_demo_pairs_carry_the_utterances_said_before():
    record = load_demos(ENV)[0]
    pairs = demo_pairs(ENV, max_demos=1, earlier=True)
    said = [u for u, _ in record["turns"]]
    assert len(pairs) == len(said)
    for k, (_, utterance, earlier) in enumerate(pairs):
        assert utterance == said[k] and earlier == tuple(said[:k])
    assert [p[:2] for p in pairs] == demo_pairs(ENV, max_demos=1)


def test_more_demos_than_shipped_continue_the_seeded_demonstrator(monkeypatch):
    shipped = load_demos(ENV)
    assert demo_records(ENV, 5) == shipped[:5] and demo_records(ENV) == shipped
    more = demo_records(ENV, len(shipped) + 40)
    assert len(more) == len(shipped) + 40 and more[: len(shipped)] == json.loads(json.dumps(shipped))
    assert len({r["seed"] for r in more}) == len(more)  # fresh episodes, not the shipped ones again
    assert np.mean([r["return"] for r in more[len(shipped):]]) < -3.0  # the noisy demonstrator
    edited = copy.deepcopy(shipped)
    edited[3]["turns"][0][0] = "Is it a cat?"
    monkeypatch.setattr(sft_module, "load_demos", lambda env: edited)
    with pytest.raises(ValueError, match="python -m archer_lite.data --env twenty_questions_subset"):
        demo_records(ENV, len(shipped) + 1)
    with pytest.raises(ValueError, match="demos >= 0"):
        SFTConfig(demos=-1)


def test_unlikelihood_is_minus_log_of_one_minus_the_repeat_mass(actor):
    states = ["Questions about an object.\nIs it alive?\nNo.\n", "Questions about an object.\n"]
    earlier = [("Is it alive?", "Is it a pen?"), ()]
    with torch.no_grad():
        p = actor.utterance_logprob([states[0]] * 2, list(earlier[0])).exp().sum().item()
        loss = unlikelihood_loss(actor, states, earlier).item()
    # mean over the 2 states; the state with no history contributes 0
    assert loss == pytest.approx(-math.log(1 - p) / 2, rel=1e-5)
    assert unlikelihood_loss(actor, states, [(), ()]).item() == 0.0


def test_unlikelihood_leaves_out_an_earlier_utterance_the_tokenizer_cannot_spell(actor):
    """The actor's babble can decode to a word outside the vocabulary ("windvehicle": two tokens
    with no space): its log-prob under the tokenizer's spelling is -inf, so pi = 0 and it adds no
    repeat mass. It used to turn the whole gradient into NaN."""
    state = "Questions about an object.\nwindvehicle\nInvalid question.\nIs it a pen?\nNo.\n"
    assert actor.utterance_logprob([state], ["windvehicle"]).item() == -math.inf
    only_unk = unlikelihood_loss(actor, [state], [("windvehicle",)])
    only_unk.backward()
    assert only_unk.item() == 0.0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in actor.model.parameters())
    actor.model.zero_grad()
    with torch.no_grad():
        alone = unlikelihood_loss(actor, [state], [("Is it a pen?",)]).item()
    mixed = unlikelihood_loss(actor, [state], [("windvehicle", "Is it a pen?")])
    assert mixed.item() == pytest.approx(alone, rel=1e-6)
    mixed.backward()
    grads = [p.grad for p in actor.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_unlikelihood_steps_push_down_a_likely_repeat(actor):
    state, repeat, other = "Questions about an object.\nIs it a pen?\nNo.\n", "Is it a pen?", "Is it alive?"
    opt = torch.optim.Adam(actor.model.parameters(), lr=1e-2)
    for _ in range(20):  # make the repeat likely first
        bc_step(actor, [state], [repeat], opt)
    start = copy.deepcopy(actor.model.state_dict())
    ends = {}
    for weight in (0.0, 3.0):  # the same BC steps towards another question, with and without L_UL
        actor.model.load_state_dict(start)
        opt = torch.optim.Adam(actor.model.parameters(), lr=1e-2)
        for _ in range(5):
            bc_step(actor, [state], [other], opt, earlier=[(repeat,)], unlikelihood=weight)
        with torch.no_grad():
            ends[weight] = actor.utterance_logprob([state], [repeat]).item()
    assert ends[3.0] < ends[0.0] - 1.0  # L_UL makes the repeat > e times less likely


def test_sft_is_seeded_and_returns_one_loss_per_step(actor):
    pairs = demo_pairs(ENV, max_demos=4, earlier=True)
    cfg = SFTConfig(epochs=2, batch_size=8)
    losses = sft(actor, pairs, cfg, seed=3, progress=False)
    assert len(losses) == 2 * math.ceil(len(pairs) / 8)
    set_seed(0)
    again = Actor.from_config(ActorConfig(n_layer=1, n_embd=32, n_head=2), env=ENV)
    assert sft(again, pairs, cfg, seed=3, progress=False) == losses


def test_max_earlier_caps_the_utterances_scored_per_state(actor, monkeypatch):
    import archer_lite.algorithms.sft as sft_module

    seen = []
    real = sft_module.unlikelihood_loss
    monkeypatch.setattr(sft_module, "unlikelihood_loss",
                        lambda a, s, e: seen.extend(len(x) for x in e) or real(a, s, e))
    pairs = demo_pairs(ENV, max_demos=4, earlier=True)
    sft(actor, pairs, SFTConfig(epochs=1, batch_size=8, max_earlier=2), progress=False)
    assert max(seen) == 2 and max(len(p[2]) for p in pairs) > 2


def test_plain_epoch_batches_cut_one_shuffled_order():
    lengths = np.arange(50)
    batches = epoch_batches(lengths, 8, 0, np.random.default_rng(5))
    assert np.array_equal(np.concatenate(batches), np.random.default_rng(5).permutation(50))
    assert [len(b) for b in batches] == [8] * 6 + [2]


def test_length_windows_group_similar_lengths_and_keep_every_index_once():
    lengths = np.random.default_rng(0).integers(10, 300, 1000)
    plain = epoch_batches(lengths, 16, 0, np.random.default_rng(1))
    windowed = epoch_batches(lengths, 16, 10, np.random.default_rng(1))
    assert sorted(np.concatenate(windowed).tolist()) == list(range(1000))
    # 1000 = 6 windows of 160 + 40 left: 6 * 10 + 3 batches
    assert len(windowed) == 63 and sum(len(b) < 16 for b in windowed) == 1

    def padded(batches):  # tokens a left-padded batch costs: its size times its longest state
        return sum(len(b) * lengths[b].max() for b in batches)
    assert padded(windowed) < 0.7 * padded(plain)
    # batches come in shuffled order, not sorted by length
    assert not np.all(np.diff([lengths[b].max() for b in windowed]) >= 0)


def test_sft_counts_its_steps_with_length_windows(actor):
    pairs = demo_pairs(ENV, max_demos=6, earlier=True)
    losses = sft(actor, pairs, SFTConfig(epochs=2, batch_size=4, length_window=3), progress=False)
    span = 12
    assert len(losses) == 2 * (len(pairs) // span * 3 + math.ceil(len(pairs) % span / 4))


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": 0.0}, {"unlikelihood": -1.0}, {"batch_size": 0},
                                 {"max_earlier": -1}, {"length_window": -1}, {"dagger_rounds": -1},
                                 {"dagger_episodes": 0}, {"dagger_epochs": 0}, {"dagger_lr": 0.0}])
def test_bad_sft_config_is_rejected(bad):
    with pytest.raises(ValueError, match="SFTConfig"):
        SFTConfig(**bad)


def test_dagger_labels_the_states_the_actor_visited_with_the_demonstrators_move(actor):
    set_seed(5)
    pairs, played = dagger_pairs(actor, ENV, 6, seed=123, rng=np.random.default_rng(0))
    assert len(pairs) == sum(len(t) for t in played)
    env, k = make_env(ENV), 0
    for i, trajectory in enumerate(played):
        obs, _ = env.reset(seed=123 + i)
        for j, step in enumerate(trajectory.transitions):
            state, label, earlier = pairs[k]
            # the state is the actor's own (replayed), the history its own utterances
            assert state == obs == step.state and earlier == tuple(t.action for t in trajectory.transitions[:j])
            # the demonstrator never asks an attribute it has seen answered (in any phrasing)
            parsed = env._parser.get(normalize_utterance(label))
            assert parsed is not None  # every label is a question the oracle understands
            if parsed[0] == "attribute":
                assert parsed[1] not in env.consistent_candidates()[1]
            obs, *_ = env.step(step.action)
            k += 1
    # an untrained actor babbles: its states are not the demonstrator's, yet every one is labelled
    assert sum(t.invalid for t in played) > 0
    set_seed(5)
    again, _ = dagger_pairs(actor, ENV, 6, seed=123, rng=np.random.default_rng(0))
    assert again == pairs  # seeded: the actor samples on the global torch RNG (set_seed)


def test_dagger_rounds_aggregate_the_labelled_states_and_train_on_them(actor):
    pairs = demo_pairs(ENV, max_demos=3, earlier=True)
    start = {k: v.clone() for k, v in actor.model.state_dict().items()}
    log = dagger(actor, ENV, pairs, SFTConfig(batch_size=16, dagger_rounds=2, dagger_episodes=4,
                                             unlikelihood=0.0), progress=False)
    assert [r["round"] for r in log] == [0, 1]
    assert 4 <= log[0]["labelled_states"] < log[1]["labelled_states"] <= 2 * 4 * 20  # <= 20 turns each
    assert all(0.0 <= r["played_repeat_rate"] <= 1.0 and 0.0 <= r["played_success_rate"] <= 1.0
               and -20.0 <= r["played_mean_return"] <= 0.0 for r in log)
    assert any(not torch.equal(v, start[k]) for k, v in actor.model.state_dict().items())
