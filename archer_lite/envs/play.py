"""Play any archer_lite environment in the terminal, or watch a demonstrator play it.

    python -m archer_lite.envs.play TwentyQuestions          # you type the utterances
    python -m archer_lite.envs.play guess_my_city --seed 3
    python -m archer_lite.envs.play detective --watch expert # the scripted expert plays

While playing, type ``:hint`` to see what the scripted expert would say, ``:quit`` to stop.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, TextIO

import numpy as np

from archer_lite.envs import ENVS, env_spec, make_env


def play(name: str, seed: int = 0, watch: str | None = None,
         read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> float:
    """Run one episode of env ``name``; return its return. ``watch``: "expert" or "noisy"."""
    env = make_env(name)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out.write(obs)
    total, done = 0.0, False
    while not done:
        if watch is not None:
            action = env.expert_action(rng) if watch == "expert" else env.noisy_action(rng)
            out.write(f"> {action}\n")
        else:
            try:
                action = read("> ")
            except EOFError:
                out.write("\n(input ended)\n")
                break
            if not sys.stdin.isatty() and read is input:
                out.write(action + "\n")  # echo piped input so the transcript reads like a session
            if action.strip() == ":quit":
                break
            if action.strip() == ":hint":
                out.write(f"  expert would say: {env.expert_action(rng)}\n")
                continue
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
        response = info["turns"][-1][1]
        out.write(f"{response}   [reward {reward:+g}, return {total:+g}]\n")
    if done:
        outcome = "success" if info.get("success") else ("out of turns" if truncated else "ended")
        out.write(f"Episode over ({outcome}) after {info['turn']} turns. Return: {total:g}\n")
    out.flush()
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m archer_lite.envs.play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", help=f"one of: {', '.join(ENVS)} (or TwentyQuestions, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--watch", choices=["expert", "noisy"], help="let a demonstrator play")
    args = parser.parse_args(argv)
    try:
        env_spec(args.env)
    except KeyError as err:
        parser.error(err.args[0])
    play(args.env, seed=args.seed, watch=args.watch)


if __name__ == "__main__":
    main()
