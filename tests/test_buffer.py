"""Replay buffer: exact FIFO contents, seeded uniform sampling, whole trajectories, save/load."""
import numpy as np
import pytest

from archer_lite.buffer import Batch, ReplayBuffer, Trajectory, Transition


def make_traj(tag: str, n: int, rewards=None, success: bool = False, terminated: bool = True):
    """``n`` transitions with states ``tag0..tag{n-1}``; the last one has ``done=terminated``."""
    rewards = [-1.0] * n if rewards is None else rewards
    return Trajectory([Transition(f"{tag}{i}", f"act {tag}{i}", float(rewards[i]), f"{tag}{i + 1}",
                                  terminated and i == n - 1, turn=i) for i in range(n)], success)


def states(buffer: ReplayBuffer) -> list[str]:
    return [t.state for t in buffer.transitions]


# ----- FIFO ----------------------------------------------------------------------------------------
def test_fifo_eviction_keeps_the_newest_transitions():
    buf = ReplayBuffer(capacity=5)
    assert len(buf) == 0
    assert buf.add_trajectory(make_traj("a", 3)) == 0
    assert len(buf) == 3 and states(buf) == ["a0", "a1", "a2"]
    assert buf.add_trajectory(make_traj("b", 3)) == 1
    # 6 transitions into 5 slots: the oldest one (a0) falls out.
    assert len(buf) == 5 and states(buf) == ["a1", "a2", "b0", "b1", "b2"]
    assert buf.add_trajectory(make_traj("c", 2)) == 2
    assert len(buf) == 5 and states(buf) == ["b0", "b1", "b2", "c0", "c1"]
    assert [t.traj_id for t in buf.transitions] == [1, 1, 1, 2, 2]
    # Bookkeeping of the fully evicted trajectory 0 is dropped; 1 and 2 remain.
    assert sorted(buf.trajectory_info) == [1, 2]
    assert buf.trajectory_info[1] == {"return": -3.0, "success": False, "length": 3, "repeats": 0,
                                      "invalid": 0}


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ReplayBuffer(capacity=0)


# ----- sampling ------------------------------------------------------------------------------------
def fill(buf: ReplayBuffer) -> ReplayBuffer:
    """10 transitions in trajectories of length 1, 2 and 7 (rewards -1; each trajectory terminates)."""
    for tag, n in (("x", 1), ("y", 2), ("z", 7)):
        buf.add_trajectory(make_traj(tag, n))
    return buf


def test_same_seed_same_contents_same_batches():
    a, b = fill(ReplayBuffer(seed=7)), fill(ReplayBuffer(seed=7))
    for _ in range(3):
        ba, bb = a.sample(16), b.sample(16)
        assert ba.states == bb.states and ba.actions == bb.actions and ba.next_states == bb.next_states
        np.testing.assert_array_equal(ba.rewards, bb.rewards)
        np.testing.assert_array_equal(ba.dones, bb.dones)
    # A different seed draws a different batch (fixed seeds: this is deterministic, not luck).
    assert fill(ReplayBuffer(seed=8)).sample(16).states != fill(ReplayBuffer(seed=7)).sample(16).states


def test_batch_fields_match_the_sampled_transitions():
    buf = fill(ReplayBuffer(seed=0))
    batch = buf.sample(50)
    assert isinstance(batch, Batch) and len(batch) == 50
    assert batch.rewards.dtype == np.float32 and batch.dones.dtype == np.float32
    by_state = {t.state: t for t in buf.transitions}
    for s, a, r, s2, d in zip(batch.states, batch.actions, batch.rewards, batch.next_states, batch.dones):
        t = by_state[s]
        assert (a, float(r), s2, float(d)) == (t.action, t.reward, t.next_state, float(t.done))
    # done = 1 exactly for the last transition of each (terminated) trajectory: x0, y1, z6.
    assert {s for s, d in zip(batch.states, batch.dones) if d == 1.0} <= {"x0", "y1", "z6"}
    assert {s for s, d in zip(batch.states, batch.dones) if d == 0.0}.isdisjoint({"x0", "y1", "z6"})


def test_sampling_is_uniform_over_transitions_not_trajectories():
    """100k draws over 10 transitions (trajectories of length 1, 2, 7): each transition gets
    frequency 0.1 (within 0.005, ~5 standard deviations of sqrt(0.09/1e5) = 0.00095), and the
    chi-square statistic (9 degrees of freedom) stays under 27.88, its 99.9% quantile."""
    buf = fill(ReplayBuffer(seed=123))
    draws = [s for _ in range(100) for s in buf.sample(1000).states]
    names = states(buf)
    counts = np.array([draws.count(s) for s in names])
    assert counts.sum() == 100_000
    np.testing.assert_allclose(counts / 100_000, 0.1, atol=0.005)
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 27.88
    # Per transition, so the 7-step trajectory gets ~70% of the draws, the 1-step one ~10%.
    assert sum(s.startswith("z") for s in draws) / 100_000 == pytest.approx(0.7, abs=0.01)
    assert sum(s.startswith("x") for s in draws) / 100_000 == pytest.approx(0.1, abs=0.01)


def test_empty_buffer_sample_says_what_to_do():
    with pytest.raises(ValueError, match="replay buffer is empty: collect trajectories"):
        ReplayBuffer().sample(4)


# ----- trajectories --------------------------------------------------------------------------------
def test_trajectories_are_whole_in_order_with_their_returns():
    buf = ReplayBuffer(capacity=100)
    buf.add_trajectory(make_traj("a", 3, rewards=[-1, -1, 0], success=True))
    buf.add_trajectory(make_traj("b", 2, rewards=[-1, -1], terminated=False))  # truncated
    buf.add_trajectory(make_traj("c", 1, rewards=[0.5], success=True))
    trajs = list(buf.trajectories())
    assert [t.traj_id for t in trajs] == [0, 1, 2]
    assert [[x.state for x in t.transitions] for t in trajs] == [["a0", "a1", "a2"], ["b0", "b1"], ["c0"]]
    assert [t.ret for t in trajs] == [-2.0, -2.0, 0.5]
    assert [t.success for t in trajs] == [True, False, True]
    assert [len(t) for t in trajs] == [3, 2, 1]
    assert [[x.done for x in t.transitions] for t in trajs] == [[False, False, True], [False, False], [True]]


def test_trajectories_keep_their_repeat_and_invalid_counts():
    buf = ReplayBuffer(capacity=100)
    traj = make_traj("a", 4)
    traj.repeats, traj.invalid = 2, 1
    buf.add_trajectory(traj)
    buf.add_trajectory(make_traj("b", 2))
    assert [(t.repeats, t.invalid) for t in buf.trajectories()] == [(2, 1), (0, 0)]


def test_partly_evicted_trajectory_is_skipped():
    buf = ReplayBuffer(capacity=5)
    buf.add_trajectory(make_traj("a", 3, rewards=[-1, -1, 0]))
    buf.add_trajectory(make_traj("b", 3, rewards=[-1, 0, 0]))
    # a0 fell out: only b is whole.
    assert [(t.traj_id, t.ret) for t in buf.trajectories()] == [(1, -1.0)]
    buf.add_trajectory(make_traj("c", 2, rewards=[-1, 0]))
    assert [(t.traj_id, t.ret) for t in buf.trajectories()] == [(1, -1.0), (2, -1.0)]
    buf.add_trajectory(make_traj("d", 1))  # b0 falls out now
    assert [t.traj_id for t in buf.trajectories()] == [2, 3]


def test_trajectory_longer_than_capacity_is_never_whole():
    buf = ReplayBuffer(capacity=2)
    buf.add_trajectory(make_traj("a", 3))
    assert states(buf) == ["a1", "a2"] and list(buf.trajectories()) == []


# ----- save / load ---------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_contents_and_rng(tmp_path):
    buf = ReplayBuffer(capacity=6, seed=3)
    buf.add_trajectory(make_traj("a", 3, rewards=[-1, -1, 0], success=True))
    buf.add_trajectory(make_traj("b", 4, rewards=[-1, -1, -1, -1], terminated=False))  # evicts a0
    buf.sample(5)  # advance the rng: the saved state is mid-stream, not the seed's start
    buf.save(tmp_path / "buffer.json")
    loaded = ReplayBuffer.load(tmp_path / "buffer.json")

    assert loaded.capacity == 6 and len(loaded) == 6 and loaded.next_traj_id == 2
    assert list(loaded.transitions) == list(buf.transitions)  # every field, done flags included
    assert [t.done for t in loaded.transitions] == [False, True, False, False, False, False]
    assert loaded.trajectory_info == buf.trajectory_info
    assert [(t.traj_id, t.ret) for t in loaded.trajectories()] == [(1, -4.0)]
    # The rng continues where the original left off.
    for _ in range(3):
        a, b = buf.sample(8), loaded.sample(8)
        assert a.states == b.states
        np.testing.assert_array_equal(a.dones, b.dones)
    # FIFO continues with the saved capacity and trajectory ids.
    assert loaded.add_trajectory(make_traj("c", 1)) == 2
    assert states(loaded) == ["a2", "b0", "b1", "b2", "b3", "c0"]


@pytest.mark.parametrize("content", [
    b"",                                                  # empty file
    b'{"capacity": 4, "next_traj_id": 1, "transitions": [',  # cut short mid-write
    b"not json at all",
    b"[1, 2, 3]",                                         # JSON, wrong shape
    b'{"capacity": 4}',                                   # keys missing
    b'{"capacity": 4, "next_traj_id": 0, "rng": null, "trajectory_info": {}, '
    b'"transitions": [{"state": "s"}]}',                  # a transition with fields missing
], ids=["empty", "truncated", "text", "list", "missing-keys", "bad-transition"])
def test_corrupt_file_raises_value_error_naming_the_fix(tmp_path, content):
    path = tmp_path / "buffer.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"corrupt .*delete it and re-collect, or restore"):
        ReplayBuffer.load(path)


def test_non_text_file_raises_value_error_naming_the_fix(tmp_path):
    """E.g. a user passes the checkpoint's state.pt (binary) instead of buffer.json.

    Fails on the current package: ``path.read_text()`` raises a bare UnicodeDecodeError (a
    ValueError subclass, but without the file name or the fix) outside the handled exceptions.
    """
    path = tmp_path / "state.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"corrupt .*delete it and re-collect, or restore"):
        ReplayBuffer.load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path / "nope.json")
