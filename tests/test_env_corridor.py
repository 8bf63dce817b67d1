"""Corridor: the toy MDP with exact values. Hand-computed numbers, not just 'it runs'."""
import numpy as np
import pytest

from archer_lite.envs import make_env
from archer_lite.envs.corridor import ACTIONS, Corridor, policy_values


def test_rewards_and_termination():
    env = Corridor(n_rooms=3)
    obs, info = env.reset(seed=0)
    assert obs == "Walk to the exit on the right.\nYou are in room 0 of 2.\n"
    assert env.step("go right")[1:4] == (-1.0, False, False)
    obs, reward, terminated, truncated, info = env.step("Go right.")  # normalised
    assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, True)


def test_truncation_after_max_turns():
    env = Corridor(max_turns=4)
    env.reset(seed=0)
    results = [env.step("wait") for _ in range(4)]
    assert [r[1] for r in results] == [-1.0] * 4
    assert results[-1][3] is True and results[-1][2] is False


def test_exact_values_deterministic_right_policy():
    # V(room k) with always-right, 5 rooms, gamma 0.9: steps to exit = 4 - k, the last one free.
    # V(3) = 0, V(2) = -1, V(1) = -1 - 0.9 = -1.9, V(0) = -1 - 0.9 * 1.9 = -2.71.
    env = Corridor()
    q, v = policy_values(env.transition_model(), lambda s: {"go right": 1.0}, gamma=0.9)
    assert [v[s] for s in env.states()] == pytest.approx([-2.71, -1.9, -1.0, 0.0])
    # Q(room 0, go left) = -1 + 0.9 * V(room 0) (bumps the wall) = -1 - 2.439 = -3.439.
    assert q[(env.state_text(0), "go left")] == pytest.approx(-3.439)
    assert q[(env.state_text(3), "go right")] == pytest.approx(0.0)


def test_exact_values_uniform_policy_with_slip():
    # 2-room... 3 rooms, slip 0.5, uniform policy, gamma 0.5. Solve by hand:
    # V0 = -1 + 0.5 * (1/3 V0 [left] + 1/3 V0 [wait] + 1/3 (0.5 V1 + 0.5 V0) [right])
    # V1 = 1/3 (-1 + 0.5 (0.5 V0 + 0.5 V1)) + 1/3 (-1 + 0.5 V1) + 1/3 (0.5 * 0 + 0.5 (-1 + 0.5 V1))
    env = Corridor(n_rooms=3, slip=0.5)
    uniform = lambda s: {a: 1 / 3 for a in ACTIONS}
    q, v = policy_values(env.transition_model(), uniform, gamma=0.5)
    a = np.array([[1 - 0.5 * (1 / 3 + 1 / 3 + 1 / 6), -0.5 / 6],
                  [-0.5 * 0.5 / 3, 1 - 0.5 * (0.5 / 3 + 1 / 3 + 0.5 / 3)]])
    b = np.array([-1.0, -1 / 3 - 1 / 3 - 0.5 / 3])
    v0, v1 = np.linalg.solve(a, b)
    assert v[env.state_text(0)] == pytest.approx(v0)
    assert v[env.state_text(1)] == pytest.approx(v1)
    # V is the policy-average of Q.
    for s in env.states():
        assert v[s] == pytest.approx(np.mean([q[(s, act)] for act in ACTIONS]))


def test_sampled_returns_match_exact_values():
    env = make_env("corridor", slip=0.2)
    rng, gamma = np.random.default_rng(0), 0.9
    _, v = policy_values(env.transition_model(), lambda s: {"go right": 0.7, "wait": 0.3}, gamma)
    returns = []
    for seed in range(3000):
        env.reset(seed=seed)
        g, disc, done = 0.0, 1.0, False
        while not done:
            action = "go right" if rng.random() < 0.7 else "wait"
            _, r, term, trunc, _ = env.step(action)
            g, disc, done = g + disc * r, disc * gamma, term
            done = done or env.done  # truncation cuts the sum (rare at 20 turns)
        returns.append(g)
    assert np.mean(returns) == pytest.approx(v[env.state_text(0)], abs=0.1)


def test_bad_arguments_and_policies():
    with pytest.raises(ValueError, match="n_rooms"):
        Corridor(n_rooms=1)
    with pytest.raises(ValueError, match="slip"):
        Corridor(slip=1.5)
    env = Corridor()
    with pytest.raises(ValueError, match="sum to 1"):
        policy_values(env.transition_model(), lambda s: {"go right": 0.5}, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        policy_values(env.transition_model(), lambda s: {"go right": 1.0}, 1.0)
