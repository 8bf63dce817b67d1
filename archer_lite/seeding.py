"""One place that seeds every random number generator archer_lite uses."""
from __future__ import annotations

import os
import random

import numpy as np


def set_seed(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA) with ``seed``.

    Same seed, same numbers on CPU. (Environments take their own ``reset(seed=...)``.)
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # envs and data work without torch
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_threads(n: int = 0) -> int:
    """Set torch's intra-op threads explicitly (``0`` = every core this process may use).

    Entry points (train, sft, bench, tests) call this once so runs use a known thread count;
    returns the number of threads set.
    """
    import torch

    if n < 0:
        raise ValueError(f"threads must be >= 0 (got {n}).")
    if n == 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n
