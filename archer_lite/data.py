"""Rebuild archer_lite's shipped data: demonstrations and tokenizers (one command).

    python -m archer_lite.data                  # every env
    python -m archer_lite.data --env corridor   # one env (its family's tokenizer too)

Demonstrations (``data/demos/<env>.jsonl``) mix the scripted expert and the noisy demonstrator,
as the paper's SFT data does: each episode is played by the noisy demonstrator with a noise level
drawn from ``NOISE_LEVELS``. Every line is one episode with its turns, rewards and return.
Tokenizers (``data/tokenizers/<family>/``) are trained on each env's ``corpus()`` plus its demos.
Everything is seeded: running this twice writes identical files.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from archer_lite.envs import ENVS, make_env
from archer_lite.paths import DATA_DIR
from archer_lite.tokenizer import build_tokenizer, tokenizer_dir

DEMO_EPISODES = {"twenty_questions": 2000, "twenty_questions_subset": 1000, "guess_my_city": 2000,
                 "detective": 500, "minishop": 1000, "corridor": 200}
NOISE_LEVELS = (0.3, 0.5, 0.7)
"""Noise levels of the suboptimal demonstrator (probability of a random action per turn)."""


def play_episode(env, policy: str, rng: np.random.Generator, seed: int,
                 noise: float = 0.5) -> dict[str, Any]:
    """Play one episode with ``env.expert_action`` or ``env.noisy_action``; return its record."""
    obs, info = env.reset(seed=seed)
    first_obs, rewards, done = obs, [], False
    while not done:
        action = env.expert_action(rng) if policy == "expert" else env.noisy_action(rng, noise=noise)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        done = terminated or truncated
    return {"seed": seed, "demonstrator": policy, "noise": noise if policy == "noisy" else 0.0,
            "first_observation": first_obs, "turns": [list(t) for t in info["turns"]],
            "rewards": rewards, "return": float(sum(rewards)),
            "success": bool(info.get("success", False))}


def demo_episodes(name: str, n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The shipped demonstration set of env ``name``: ``n`` seeded noisy episodes."""
    env, rng = make_env(name), np.random.default_rng(seed)
    for i in range(n):
        noise = NOISE_LEVELS[i % len(NOISE_LEVELS)]
        yield {"env": name, **play_episode(env, "noisy", rng, seed=seed * 1_000_000 + i, noise=noise)}


def load_demos(name: str) -> list[dict[str, Any]]:
    """Read ``data/demos/<name>.jsonl``."""
    path = DATA_DIR / "demos" / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rebuild it with `python -m archer_lite.data --env {name}`.")
    with path.open() as f:
        return [json.loads(line) for line in f]


def write_demos(name: str, n: int | None = None) -> Path:
    path = DATA_DIR / "demos" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for record in demo_episodes(name, n or DEMO_EPISODES[name]):
            f.write(json.dumps(record) + "\n")
    return path


def write_tokenizer(family: str) -> Path:
    texts: list[str] = []
    for name, spec in ENVS.items():
        if spec.family != family:
            continue
        texts += make_env(name).corpus()
        demo_path = DATA_DIR / "demos" / f"{name}.jsonl"
        if demo_path.exists():
            for record in load_demos(name):
                texts.append(record["first_observation"])
                texts += [f"{u}\n{r}\n" for u, r in record["turns"]]
    out = tokenizer_dir(family)
    build_tokenizer(texts).save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m archer_lite.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=list(ENVS), action="append",
                        help="rebuild only these envs (repeatable); default: all")
    args = parser.parse_args(argv)
    names = args.env or list(ENVS)
    families: dict[str, list[str]] = defaultdict(list)
    for name in names:
        path = write_demos(name)
        returns = [r["return"] for r in load_demos(name)]
        print(f"{name:26s} {len(returns):5d} demos  mean return {np.mean(returns):7.3f}  -> {path}")
        families[ENVS[name].family].append(name)
    for family in families:
        out = write_tokenizer(family)
        from archer_lite.tokenizer import load_tokenizer
        print(f"tokenizer {family:16s} vocab {len(load_tokenizer(str(out))):5d}  -> {out}")


if __name__ == "__main__":
    main()
