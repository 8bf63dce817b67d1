"""Plain data functions and matplotlib helpers for looking inside a run.

The functions return data (lists, dicts); the plots and widgets are thin views over them, so the
numbers are testable without a screen.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from archer_lite.buffer import Trajectory
from archer_lite.critic import DoubleCritic
from archer_lite.train import read_metrics


@torch.no_grad()
def values_per_utterance(critic: DoubleCritic, trajectory: Trajectory) -> list[dict]:
    """For each utterance of a trajectory: the utterance, reward, Q_1, Q_2, V_1, V_2, min Q,
    min V and the advantage A = min Q - min V (what the actor's gradient is weighted by)."""
    states = [t.state for t in trajectory.transitions]
    actions = [t.action for t in trajectory.transitions]
    q1, q2, v1, v2 = critic.q_v(states, actions)
    rows = []
    for i, t in enumerate(trajectory.transitions):
        q, v = min(q1[i].item(), q2[i].item()), min(v1[i].item(), v2[i].item())
        rows.append({"turn": t.turn, "utterance": t.action, "reward": t.reward,
                     "q1": q1[i].item(), "q2": q2[i].item(), "v1": v1[i].item(), "v2": v2[i].item(),
                     "q": q, "v": v, "advantage": q - v})
    return rows


def curve(run_dir: str | Path, metric: str = "eval_sampled_mean_return") -> tuple[np.ndarray, np.ndarray]:
    """(trajectories collected, metric) for the iterations of a run that logged ``metric``."""
    rows = [r for r in read_metrics(run_dir) if metric in r]
    if not rows:
        raise KeyError(f"{run_dir} logged no {metric!r}; known: {sorted(read_metrics(run_dir)[0])}")
    return np.array([r["trajectories"] for r in rows]), np.array([r[metric] for r in rows])


def plot_curves(run_dirs: Sequence[str | Path], metric: str = "eval_sampled_mean_return",
                labels: Sequence[str] | None = None, ax=None):
    """Return vs trajectories collected (the paper's x-axis) for several runs."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for i, run in enumerate(run_dirs):
        x, y = curve(run, metric)
        ax.plot(x, y, marker="o", label=labels[i] if labels else Path(run).name)
    ax.set_xlabel("trajectories collected")
    ax.set_ylabel(metric)
    ax.legend()
    return ax
