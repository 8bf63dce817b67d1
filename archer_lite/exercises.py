"""Checkers for the notebooks' exercises. Each returns a short verdict and raises nothing on a
wrong answer, so a student can try again; solutions live in notebooks/solutions/."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _verdict(ok: bool, good: str, hint: str) -> str:
    text = f"Correct! {good}" if ok else f"Not yet: {hint}"
    print(text)
    return text


# ----- 01_environments ---------------------------------------------------------------------------
def check_discounted_return(fn: Callable[[Sequence[float], float], float]) -> str:
    """Exercise 01.1: ``fn(rewards, gamma)`` = sum_t gamma^t r_t."""
    cases = [([-1, -1, 0], 0.9, -1.9), ([-1.0] * 20, 1.0, -20.0), ([0.0, 0.0, 1.0], 0.5, 0.25), ([], 0.9, 0.0)]
    try:
        ok = all(abs(float(fn(r, g)) - want) < 1e-9 for r, g, want in cases)
    except Exception as err:  # a student's function may raise anything
        return _verdict(False, "", f"your function raised {type(err).__name__}: {err}")
    return _verdict(ok, "G = sum_t gamma^t r_t.",
                    "try rewards [-1, -1, 0] with gamma 0.9: the answer is -1 - 0.9 + 0 = -1.9.")


def check_corridor_value(value: float) -> str:
    """Exercise 01.2: V(room 0) of a 4-room corridor, always 'go right', gamma 0.5."""
    # V(2) = 0 (the step into the exit is free), V(1) = -1 + 0.5 V(2), V(0) = -1 + 0.5 V(1)
    ok = abs(float(value) - (-1.5)) < 1e-6
    return _verdict(ok, "V(0) = -1 + 0.5 * (-1 + 0.5 * 0) = -1.5.",
                    "write V(2) first (one free step to the exit), then V(1) = -1 + gamma V(2), ...")


def check_information_gain_question(fn: Callable[[list[str]], str]) -> str:
    """Exercise 01.3: ``fn(candidates)`` returns the attribute (a column of data/objects.csv)
    whose yes/no answer splits the candidate objects most evenly."""
    from archer_lite.envs.twenty_questions import SUBSET_OBJECTS, load_objects

    table = load_objects()
    candidates = list(SUBSET_OBJECTS)
    try:
        attribute = fn(candidates)
    except Exception as err:
        return _verdict(False, "", f"your function raised {type(err).__name__}: {err}")
    if attribute not in table.attributes:
        return _verdict(False, "", f"{attribute!r} is not an attribute; see load_objects().attributes.")
    rows = [table.index(c) for c in candidates]
    yes_counts = table.values[rows].sum(0)  # (n_attributes,) how many candidates say yes
    imbalance = np.abs(2 * yes_counts - len(candidates))
    mine = int(imbalance[table.attributes.index(attribute)])
    yes = int(yes_counts[table.attributes.index(attribute)])
    return _verdict(mine == int(imbalance.min()), f"{attribute!r} splits {yes} / {len(candidates) - yes}.",
                    f"{attribute!r} splits {yes} / {len(candidates) - yes}; a more even split exists.")
