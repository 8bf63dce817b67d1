"""ArCHer's update schedule and its token-level baseline ("ArCHer with baseline"): the critic's
one-off warm-up steps; a baseline that starts as no baseline, is only used once it beats the zero
baseline on held-out data, fits a learnable target, and while untrusted leaves the actor update
exactly as plain ArCHer's."""
import pytest
import torch

import archer_lite
from archer_lite.actor import Actor, ActorConfig
from archer_lite.algorithms.archer import ArcherConfig, TokenBaseline, actor_step
from archer_lite.critic import CriticConfig, DoubleCritic
from archer_lite.envs import make_env


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_baseline_starts_at_zero_and_untrusted():
    archer_lite.set_seed(0)
    b = TokenBaseline(8, ArcherConfig(token_baseline=True))
    hidden = torch.randn(4, 5, 8)
    assert torch.equal(b(hidden), torch.zeros(4, 5))
    assert not bool(b.trusted)


def test_baseline_learns_a_fittable_target_and_earns_trust():
    # A depends on the state through hidden[..., 0] (the same for every token of an utterance).
    archer_lite.set_seed(0)
    b = TokenBaseline(8, ArcherConfig(token_baseline=True, baseline_steps=5, baseline_lr=1e-2))
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(32, 6)
    first = last = None
    for i in range(40):
        hidden = torch.randn(32, 1, 8, generator=gen).expand(32, 6, 8).clone()
        advantage = 0.8 * hidden[:, 0, 0] + 0.3  # fresh batch each time: scores are held out
        _, logs = b.fit(hidden, advantage, mask)
        if i == 0:
            first = logs
            assert logs["baseline_used"] == 0.0  # nothing earned yet
            assert logs["baseline_mse"] == pytest.approx(logs["zero_baseline_mse"])  # b = 0
        last = logs
    assert last["baseline_mse"] < 0.05 * last["zero_baseline_mse"]
    assert last["baseline_used"] == 1.0 and bool(b.trusted)
    assert first["zero_baseline_mse"] > 0.2  # E[A^2] = 0.73: a real signal to fit


def test_baseline_is_not_trusted_on_noise():
    # A independent of the features: b cannot beat 0 held out, so it stays unused.
    archer_lite.set_seed(0)
    b = TokenBaseline(8, ArcherConfig(token_baseline=True, baseline_steps=5, baseline_lr=1e-2))
    gen = torch.Generator().manual_seed(1)
    used = []
    for _ in range(40):
        hidden = torch.randn(32, 4, 8, generator=gen)
        _, logs = b.fit(hidden, torch.randn(32, generator=gen) * 0.5, torch.ones(32, 4))
        used.append(logs["baseline_used"])
    assert sum(used) / len(used) < 0.5


def _actor_after_step(with_baseline: bool) -> torch.Tensor:
    archer_lite.set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=2, n_head=2), env="corridor")
    critic = DoubleCritic.from_config(CriticConfig(d_model=16, n_layer=1, n_head=2, hidden=8), env="corridor")
    cfg = ArcherConfig(token_baseline=with_baseline)
    baseline = TokenBaseline(32, cfg) if with_baseline else None
    opt = torch.optim.Adam(actor.model.parameters(), lr=cfg.actor_lr)
    obs, _ = make_env("corridor").reset(seed=0)
    archer_lite.set_seed(1)
    logs = actor_step(actor, critic, [obs] * 4, opt, cfg, baseline)
    if with_baseline:
        assert logs["baseline_used"] == 0.0
    return torch.cat([p.detach().flatten() for p in actor.model.parameters()])


def test_untrusted_baseline_gives_the_plain_archer_update():
    assert torch.equal(_actor_after_step(True), _actor_after_step(False))


def test_baseline_steps_must_be_positive():
    with pytest.raises(ValueError, match="baseline_steps"):
        ArcherConfig(token_baseline=True, baseline_steps=0)


def test_critic_warmup_steps_run_once_in_the_last_warmup_iteration(monkeypatch):
    # The extra critic steps cost compute, not trajectories: they happen once, on the buffer the
    # warm-up filled, right before the actor's first step.
    import archer_lite.algorithms.archer as archer
    from archer_lite.buffer import ReplayBuffer
    from archer_lite.rollout import collect

    calls = []
    monkeypatch.setattr(archer, "critic_step", lambda *a, **k: calls.append(1) or {"q_loss": 0.0})
    monkeypatch.setattr(archer, "actor_step", lambda *a, **k: calls.append(0) or {"actor_loss": 0.0})
    archer_lite.set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=2, n_head=2), env="corridor")
    critic = DoubleCritic.from_config(CriticConfig(d_model=16, n_layer=1, n_head=2, hidden=8), env="corridor")
    algo = archer.Archer(actor, critic, ArcherConfig(critic_steps=3, actor_steps=2, warmup_iterations=2,
                                                     critic_warmup_steps=7))
    buffer = ReplayBuffer(100, seed=0)
    for traj in collect(lambda s: ["go right"] * len(s), "corridor", 2, seed=0):
        buffer.add_trajectory(traj)
    counts = []
    for iteration in range(4):
        calls.clear()
        algo.update(buffer, [], iteration)
        counts.append((sum(calls), calls.count(0)))  # (critic steps, actor steps)
    assert counts == [(3, 0), (10, 0), (3, 2), (3, 2)]
    with pytest.raises(ValueError, match="step counts"):
        ArcherConfig(critic_warmup_steps=-1)


# ----- KL penalty to the starting actor -------------------------------------------------------------
def _tiny_actor_critic():
    archer_lite.set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=2, n_head=2), env="corridor")
    critic = DoubleCritic.from_config(CriticConfig(d_model=16, n_layer=1, n_head=2, hidden=8), env="corridor")
    return actor, critic


def _params(actor):
    return torch.cat([p.detach().flatten() for p in actor.model.parameters()])


def test_kl_penalty_at_the_reference_is_the_plain_update():
    from archer_lite.algorithms.archer import Archer

    plain = _actor_after_step(False)
    actor, critic = _tiny_actor_critic()
    algo = Archer(actor, critic, ArcherConfig(kl_coef=0.5))
    assert not any(p.requires_grad for p in algo.reference.model.parameters())
    opt = torch.optim.Adam(actor.model.parameters(), lr=algo.cfg.actor_lr)
    obs, _ = make_env("corridor").reset(seed=0)
    archer_lite.set_seed(1)
    logs = actor_step(actor, critic, [obs] * 4, opt, algo.cfg, None, algo.reference)
    assert logs["kl_ref"] == 0.0  # pi == pi_ref before the first step
    assert torch.equal(_params(actor), plain)


def test_kl_penalty_enters_the_advantage(monkeypatch):
    """With the critic's A = 0 the advantage the actor uses is -beta (log pi - log pi_ref)."""
    from archer_lite.algorithms.archer import Archer

    actor, critic = _tiny_actor_critic()
    algo = Archer(actor, critic, ArcherConfig(kl_coef=0.5))
    with torch.no_grad():
        for p in actor.model.parameters():  # move pi away from pi_ref
            p.add_(0.05 * torch.randn_like(p))
    monkeypatch.setattr(critic, "advantage", lambda states, texts: torch.zeros(len(states)))
    opt = torch.optim.Adam(actor.model.parameters(), lr=algo.cfg.actor_lr)
    obs, _ = make_env("corridor").reset(seed=0)
    logs = actor_step(actor, critic, [obs] * 8, opt, algo.cfg, None, algo.reference)
    assert abs(logs["kl_ref"]) > 1e-3
    assert logs["advantage_mean"] == pytest.approx(-0.5 * logs["kl_ref"], rel=1e-5)


def test_kl_reference_survives_a_checkpoint_and_plain_states_are_refused():
    from archer_lite.algorithms.archer import Archer

    actor, critic = _tiny_actor_critic()
    algo = Archer(actor, critic, ArcherConfig(kl_coef=0.1))
    state = algo.state_dict()
    other_actor, other_critic = _tiny_actor_critic()
    with torch.no_grad():
        for p in other_actor.model.parameters():
            p.add_(1.0)
    other = Archer(other_actor, other_critic, ArcherConfig(kl_coef=0.1))
    other.load_state_dict(state)
    assert torch.equal(_params(other.reference), _params(algo.reference))
    with pytest.raises(ValueError, match="kl_coef = 0"):
        other.load_state_dict(Archer(actor, critic, ArcherConfig()).state_dict())
    with pytest.raises(ValueError, match="kl_coef"):
        ArcherConfig(kl_coef=-1.0)


class _TableCritic:
    """Q_1, Q_2 looked up by action text (V never read by the leave-one-out advantage)."""

    def __init__(self, q1, q2):
        self.q1, self.q2 = q1, q2

    def q_v(self, states, actions):
        q1 = torch.tensor([self.q1[a] for a in actions])
        q2 = torch.tensor([self.q2[a] for a in actions])
        return q1, q2, torch.full_like(q1, 99.0), torch.full_like(q1, 99.0)

    min_q = DoubleCritic.min_q  # the real min over heads, on these tables


def test_leave_one_out_advantage_by_hand():
    from archer_lite.algorithms.archer import loo_advantage

    critic = _TableCritic({"a": 1.0, "b": 4.0, "c": -2.0, "d": 0.5}, {"a": 2.0, "b": 3.0, "c": -1.0, "d": 0.0})
    # min Q: a 1, b 3, c -2, d 0; groups of k = 2 share a state, then k = 4 over all four
    got2 = loo_advantage(critic, ["s", "s", "t", "t"], ["a", "b", "c", "d"], 2)
    torch.testing.assert_close(got2, torch.tensor([1 - 3, 3 - 1, -2 - 0, 0 + 2.0]))
    got4 = loo_advantage(critic, ["s"] * 4, ["a", "b", "c", "d"], 4)
    torch.testing.assert_close(got4, torch.tensor([1 - 1 / 3, 3 + 1 / 3, -2 - 4 / 3, 0 - 2 / 3]))
    assert got4.sum().item() == pytest.approx(0.0, abs=1e-6)  # a per-state baseline: sums to 0


def test_actor_step_with_k_samples_groups_k_utterances_per_state(monkeypatch):
    import archer_lite.algorithms.archer as archer

    seen = {}

    def fake_loo(critic, states, actions, k):
        seen.update(states=list(states), k=k)
        return torch.zeros(len(states))

    monkeypatch.setattr(archer, "loo_advantage", fake_loo)
    archer_lite.set_seed(0)
    actor = Actor.from_config(ActorConfig(n_embd=32, n_layer=2, n_head=2), env="corridor")
    critic = DoubleCritic.from_config(CriticConfig(d_model=16, n_layer=1, n_head=2, hidden=8), env="corridor")
    cfg = ArcherConfig(batch_size=8, actor_samples=4)
    states = [make_env("corridor").reset(seed=i)[0] + f" #{i}" for i in range(8)]
    actor_step(actor, critic, states, torch.optim.Adam(actor.model.parameters(), 1e-3), cfg)
    assert seen["k"] == 4 and seen["states"] == [states[0]] * 4 + [states[1]] * 4  # 8 / 4 states x 4
    with pytest.raises(ValueError, match="actor_samples"):
        ArcherConfig(batch_size=8, actor_samples=9)
