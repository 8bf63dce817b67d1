"""Corridor: a toy text MDP whose Q and V can be computed exactly.

The agent stands in room 0 of a corridor of ``n_rooms`` rooms and must reach the last one::

    room 0 -- room 1 -- room 2 -- room 3 -- room 4 (exit)

Utterances: ``"go right"``, ``"go left"``, ``"wait"`` (anything else is invalid and acts like
``wait``). A move fails with probability ``slip`` (the agent stays). Reward: -1 per turn, 0 for the
turn that reaches the exit, which ends the episode (the same -1/0 shape as Twenty Questions).

Unlike the other envs, the observation is Markov: the intro plus the *current* room only, so the
exact values are a function of the observation text. That is what makes this env the course's
ground truth: :func:`policy_values` solves the Bellman equations

    Q^pi(s,a) = sum_{s'} P(s'|s,a) [ r(s,a,s') + gamma * (1 - done(s')) * V^pi(s') ]
    V^pi(s)   = sum_a pi(a|s) Q^pi(s,a)

as one linear system, and a learned critic can be checked against the answer.
The turn cap truncates episodes (it does not terminate them), so the infinite-horizon values
are the right targets: a TD update bootstraps through truncation and stops only at the exit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from archer_lite.envs.base import TextEnv, normalize_utterance

ACTIONS = ("go left", "go right", "wait")


@dataclass(frozen=True)
class Transition:
    """One branch of the transition model: P(next_state, reward, done | state, action) = prob."""

    prob: float
    next_state: str
    reward: float
    done: bool


class Corridor(TextEnv):
    """Walk right to the exit. Exact values: :meth:`transition_model` + :func:`policy_values`."""

    invalid_response = "Invalid action."

    def __init__(self, render_mode: str | None = None, n_rooms: int = 5, slip: float = 0.0,
                 max_turns: int = 20):
        super().__init__(render_mode)
        if n_rooms < 2:
            raise ValueError(f"n_rooms must be >= 2 (got {n_rooms}).")
        if not 0.0 <= slip < 1.0:
            raise ValueError(f"slip must be in [0, 1) (got {slip}).")
        self.n_rooms, self.slip, self.max_turns = n_rooms, slip, max_turns
        self.position = 0

    # ----- text of states ---------------------------------------------------------------------
    def room_text(self, position: int) -> str:
        if position == self.n_rooms - 1:
            return "You reached the exit."
        return f"You are in room {position} of {self.n_rooms - 1}."

    def state_text(self, position: int) -> str:
        """The observation the agent sees in room ``position`` (the exact-value key)."""
        return self._intro() + self.room_text(position) + "\n"

    # ----- TextEnv hooks --------------------------------------------------------------------------
    def _intro(self) -> str:
        return "Walk to the exit on the right.\n"

    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        self.position = int(options.get("start", 0))
        if not 0 <= self.position < self.n_rooms - 1:
            raise ValueError(f"start must be in 0..{self.n_rooms - 2} (got {self.position}).")
        return {"position": self.position}

    def _respond(self, utterance: str):
        action = normalize_utterance(utterance)
        if action not in ACTIONS:
            return self._stay(invalid=True)
        if action == "wait" or self.np_random.random() < self.slip:
            return self._stay(invalid=False)
        step = 1 if action == "go right" else -1
        self.position = min(max(self.position + step, 0), self.n_rooms - 1)
        at_exit = self.position == self.n_rooms - 1
        return self.room_text(self.position), (0.0 if at_exit else -1.0), at_exit, {
            "position": self.position, "success": at_exit}

    def _stay(self, invalid: bool):
        text = self.invalid_response if invalid else self.room_text(self.position)
        return text, -1.0, False, {"position": self.position, "success": False}

    def _invalid(self):
        return self._stay(invalid=True)

    def observation(self) -> str:
        return self.state_text(self.position)

    # ----- demonstrators --------------------------------------------------------------------------
    def expert_action(self, rng: np.random.Generator) -> str:
        """Always walk right (optimal)."""
        return "go right"

    def noisy_action(self, rng: np.random.Generator, noise: float = 0.5) -> str:
        """With probability ``noise`` a uniformly random action, else the expert's."""
        if rng.random() < noise:
            return ACTIONS[int(rng.integers(len(ACTIONS)))]
        return self.expert_action(rng)

    def corpus(self) -> list[str]:
        """Every string the env can emit or parse (for the word-level tokenizer)."""
        texts = [self.state_text(p) for p in range(self.n_rooms)] + list(ACTIONS)
        return texts + [self.invalid_response, "Walk to the exit on the right.\n"]

    # ----- the exact model --------------------------------------------------------------------------
    def states(self) -> list[str]:
        """Non-terminal state texts, room 0 first."""
        return [self.state_text(p) for p in range(self.n_rooms - 1)]

    def transition_model(self) -> dict[tuple[str, str], list[Transition]]:
        """``{(state_text, action): [Transition, ...]}`` for every non-terminal state and action."""
        model: dict[tuple[str, str], list[Transition]] = {}
        for p in range(self.n_rooms - 1):
            for action in ACTIONS:
                target = p if action == "wait" else min(max(p + (1 if action == "go right" else -1), 0),
                                                        self.n_rooms - 1)
                branches = {target: 1.0 - (self.slip if action != "wait" else 0.0)}
                branches[p] = branches.get(p, 0.0) + (self.slip if action != "wait" else 0.0)
                model[(self.state_text(p), action)] = [
                    Transition(prob, self.state_text(q), 0.0 if q == self.n_rooms - 1 else -1.0,
                               q == self.n_rooms - 1)
                    for q, prob in branches.items() if prob > 0]
        return model


Policy = Callable[[str], Mapping[str, float]]


def policy_values(model: Mapping[tuple[str, str], list[Transition]], policy: Policy,
                  gamma: float) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Exact Q^pi and V^pi of a finite text MDP by solving the Bellman equations.

    V = R_pi + gamma * P_pi V  =>  V = (I - gamma P_pi)^-1 R_pi, then
    Q(s,a) = sum_{s'} P(s'|s,a) [ r + gamma (1 - done) V(s') ].

    Args:
        model: ``{(state, action): [Transition]}`` (e.g. ``Corridor().transition_model()``).
        policy: ``state -> {action: probability}``; probabilities must sum to 1.
        gamma: discount between utterances, in [0, 1).
    Returns:
        ``(Q, V)``: ``Q[(state, action)]`` and ``V[state]``.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1) for an exact solve (got {gamma}).")
    states = sorted({s for s, _ in model})
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    p_pi, r_pi = np.zeros((n, n)), np.zeros(n)  # (S, S), (S,)
    for s in states:
        probs = policy(s)
        if abs(sum(probs.values()) - 1.0) > 1e-9:
            raise ValueError(f"policy({s!r}) must sum to 1 (got {sum(probs.values())}).")
        for action, pa in probs.items():
            if (s, action) not in model:
                raise KeyError(f"policy picks {action!r}, which the model does not know.")
            for t in model[(s, action)]:
                r_pi[index[s]] += pa * t.prob * t.reward
                if not t.done:
                    p_pi[index[s], index[t.next_state]] += pa * t.prob
    v = np.linalg.solve(np.eye(n) - gamma * p_pi, r_pi)  # (S,)  V = (I - gamma P)^-1 R
    values = {s: float(v[index[s]]) for s in states}
    q = {(s, a): sum(t.prob * (t.reward + gamma * (0.0 if t.done else values[t.next_state]))
                     for t in branches)
         for (s, a), branches in model.items()}
    return q, values
