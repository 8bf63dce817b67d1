"""The replay buffer: utterance-level transitions (s, a, r, s', done), grouped in trajectories.

ArCHer's critic is off-policy: it learns from every transition collected so far (FIFO up to
``capacity``), sampled uniformly. Filtered BC and the widgets read whole trajectories instead
(:meth:`ReplayBuffer.trajectories`). ``done`` is 1 only when the episode *terminated*; a turn-cap
truncation keeps ``done = 0`` so the TD target still bootstraps (the state was not terminal).
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np


@dataclass
class Transition:
    """One utterance-level step."""

    state: str
    action: str
    reward: float
    next_state: str
    done: bool
    traj_id: int = -1
    turn: int = 0


@dataclass
class Trajectory:
    """One episode: its transitions, return, and whether it succeeded."""

    transitions: list[Transition]
    success: bool = False
    traj_id: int = -1
    repeats: int = 0
    """How many utterances repeated an earlier utterance of the same episode (looping)."""
    invalid: int = 0
    """How many utterances the env could not use."""

    @property
    def ret(self) -> float:
        return float(sum(t.reward for t in self.transitions))

    def __len__(self) -> int:
        return len(self.transitions)


@dataclass
class Batch:
    """A sampled batch, field by field (texts as lists, numbers as arrays)."""

    states: list[str]
    actions: list[str]
    rewards: np.ndarray
    next_states: list[str]
    dones: np.ndarray

    def __len__(self) -> int:
        return len(self.states)


class ReplayBuffer:
    """FIFO transitions with uniform, seeded sampling, and per-trajectory bookkeeping."""

    def __init__(self, capacity: int = 10_000, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (got {capacity}).")
        self.capacity = capacity
        self.transitions: deque[Transition] = deque(maxlen=capacity)
        self.trajectory_info: dict[int, dict] = {}
        self.rng = np.random.default_rng(seed)
        self.next_traj_id = 0

    def __len__(self) -> int:
        return len(self.transitions)

    def add_trajectory(self, traj: Trajectory) -> int:
        """Append a trajectory's transitions (oldest ones fall out past capacity); returns its id."""
        traj_id = self.next_traj_id
        self.next_traj_id += 1
        traj.traj_id = traj_id
        for t in traj.transitions:
            t.traj_id = traj_id
            self.transitions.append(t)
        self.trajectory_info[traj_id] = {"return": traj.ret, "success": traj.success, "length": len(traj),
                                         "repeats": traj.repeats, "invalid": traj.invalid}
        alive = {self.transitions[0].traj_id} if self.transitions else set()
        oldest = min(alive) if alive else traj_id
        for old in [k for k in self.trajectory_info if k < oldest]:
            del self.trajectory_info[old]
        return traj_id

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample ``batch_size`` transitions (with replacement) from the buffer."""
        if not self.transitions:
            raise ValueError("The replay buffer is empty: collect trajectories before sampling.")
        idx = self.rng.integers(0, len(self.transitions), size=batch_size)
        picked = [self.transitions[i] for i in idx]
        return Batch([t.state for t in picked], [t.action for t in picked],
                     np.array([t.reward for t in picked], dtype=np.float32),
                     [t.next_state for t in picked], np.array([t.done for t in picked], dtype=np.float32))

    def trajectories(self) -> Iterator[Trajectory]:
        """Whole trajectories still in the buffer, oldest first (a partly evicted one is skipped)."""
        current: list[Transition] = []
        for t in self.transitions:
            if current and t.traj_id != current[0].traj_id:
                yield from self._complete(current)
                current = []
            current.append(t)
        if current:
            yield from self._complete(current)

    def _complete(self, transitions: list[Transition]) -> Iterator[Trajectory]:
        info = self.trajectory_info.get(transitions[0].traj_id)
        if info and len(transitions) == info["length"]:
            yield Trajectory(transitions, info["success"], transitions[0].traj_id,
                             info.get("repeats", 0), info.get("invalid", 0))

    # ----- save / load --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "next_traj_id": self.next_traj_id,
                "rng": self.rng.bit_generator.state,
                "trajectory_info": {str(k): v for k, v in self.trajectory_info.items()},
                "transitions": [asdict(t) for t in self.transitions]}

    def load_state_dict(self, state: dict) -> None:
        self.capacity = state["capacity"]
        self.transitions = deque((Transition(**t) for t in state["transitions"]), maxlen=self.capacity)
        self.trajectory_info = {int(k): v for k, v in state["trajectory_info"].items()}
        self.next_traj_id = state["next_traj_id"]
        self.rng.bit_generator.state = state["rng"]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "ReplayBuffer":
        path = Path(path)
        try:
            state = json.loads(path.read_text())
            buf = cls(state["capacity"])
            buf.load_state_dict(state)
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Replay buffer file {path} is corrupt ({err}); delete it and "
                             f"re-collect, or restore the run's checkpoint.") from err
        return buf
