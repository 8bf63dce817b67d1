"""Where archer_lite finds its shipped data (tables, demonstrations, tokenizers, checkpoints)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ARCHER_LITE_DATA", REPO_ROOT / "data"))
"""``data/`` beside the package; set ``ARCHER_LITE_DATA`` to use another copy."""


def data_path(*parts: str) -> Path:
    """Path of a shipped data file; a missing file raises an error saying how to rebuild it."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing. It ships with archer_lite's repository; restore it with "
            f"`git checkout -- data/` or rebuild demos/tokenizers with `python -m archer_lite.data`."
        )
    return path


def sft_checkpoint_dir(env: str) -> Path:
    """Where the env's shipped SFT actor lives: ``data/checkpoints/<env>/``."""
    return DATA_DIR / "checkpoints" / env
