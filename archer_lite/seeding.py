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
        raise ValueError(f"threads must be >= 0 (got {n}); 0 uses every core.")
    if n == 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def resolve_device(name: str = "cpu", check_available: bool = True):
    """The ``torch.device`` for ``name``: "cpu", "cuda", "cuda:N", "mps", or "auto" (the first CUDA
    GPU when torch sees one, else the CPU). An unknown name, or (with ``check_available``) an
    accelerator torch cannot use here, raises one error that says how to fix it."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'.")
    if not check_available:
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but this torch ({torch.__version__}) sees no CUDA GPU: "
                             "install a CUDA build of torch on a machine with one, or use device='cpu'.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but torch sees {torch.cuda.device_count()} CUDA GPU(s): "
                             f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use device='cpu'.")
    return device


def accelerator_rng_devices() -> list[int]:
    """The CUDA devices whose random state ``torch.random.fork_rng`` must save and restore (none
    on a CPU-only machine)."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def machine_info(device: str = "cpu") -> dict[str, str]:
    """What a run's exact numbers depend on besides the seed and the code: the torch version, the
    CPU kernels torch picked ("AVX2", "AVX512", ...) and the GPU's name on a CUDA device. A seeded
    run repeats bit for bit on the same kind of machine; on another CPU kind its losses differ by
    about 1e-8 (relative) from the first critic step and an RL run's later numbers drift apart
    (README)."""
    import platform

    import torch

    info = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}
    resolved = resolve_device(device, check_available=False)
    if resolved.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(resolved)
    return info
