"""archer_lite's command line.

    python -m archer_lite sft   --env twenty_questions_subset          # build the shipped SFT actor
    python -m archer_lite train --env twenty_questions_subset --algo archer --preset cpu_course
    python -m archer_lite train --env guess_my_city --algo archer --device cuda   # on a GPU
    python -m archer_lite eval  --env twenty_questions_subset --actor data/checkpoints/twenty_questions_subset
    python -m archer_lite play  TwentyQuestions
    python -m archer_lite bench sample-efficiency                       # see archer_lite.bench

``train`` takes ``--set key=value`` overrides (``--set archer.actor_lr=1e-4``), so every config
field is reachable; the run goes to ``runs/<name>/`` (config.json, metrics.jsonl, checkpoint/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _parse_value(text: str, text_field: bool = False):
    """A ``--set`` value: JSON (true, 4, 1e-4, "text", {...}), else the text itself. For a text field
    the text is kept as it is unless it is a quoted JSON string (``--set run_dir=2024`` -> "2024")."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return text if text_field and not isinstance(value, str) else value


def _is_text_field(config, parts: list[str]) -> bool:
    """Whether the dotted ``--set`` key ``parts`` names a plain ``str`` field of ``config`` (a config
    dataclass, or a dict of them by section name: ``{"actor": ActorConfig, "sft": SFTConfig}``)."""
    from archer_lite.train import field_type

    if isinstance(config, dict):
        config, parts = config.get(parts[0]), parts[1:]
    return config is not None and bool(parts) and field_type(config, parts) is str


def _overrides(pairs: list[str], config=None) -> dict:
    """``--set key=value`` pairs as a nested dict; ``config`` (see :func:`_is_text_field`) lets a
    text field take text that reads as a number (``--set run_dir=2024``)."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value (got {pair!r}), e.g. --set archer.actor_lr=1e-4")
        key, value = pair.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(value, config is not None and _is_text_field(config, parts))
    return out


TRAIN_FLAGS = {"env": "twenty_questions_subset", "algo": "archer", "seed": 0, "run_dir": None,
               "iterations": None, "device": None}
"""``train``'s flags that set a TrainConfig field, with their defaults (None: the preset's, and for
run_dir runs/<env>_<algo>_s<seed>); ``--set`` may set the same fields instead."""


def cmd_train(args) -> None:
    from archer_lite.train import TrainConfig, preset, train

    overrides = _overrides(args.set, TrainConfig)
    for key, default in TRAIN_FLAGS.items():  # a flag and --set of one field: both count, never silently
        flag = getattr(args, key)
        if flag is not None and key in overrides and overrides[key] != flag:
            raise ValueError(f"--{key.replace('_', '-')} {flag} and --set {key}={overrides[key]} disagree; "
                             f"give {key} once.")
        if flag is not None:
            overrides[key] = flag
        elif key not in overrides and default is not None:
            overrides[key] = default
    overrides.setdefault("run_dir", f"runs/{overrides['env']}_{overrides['algo']}_s{overrides['seed']}")
    cfg = preset(args.preset, **overrides)
    run = train(cfg)
    print(f"run written to {run}/ (config.json, metrics.jsonl, checkpoint/)")


def cmd_sft(args) -> None:
    from archer_lite.actor import ActorConfig
    from archer_lite.algorithms.sft import SFTConfig
    from archer_lite.sft_checkpoints import build_sft_checkpoint

    overrides = _overrides(args.set, {"actor": ActorConfig, "sft": SFTConfig})
    unknown = sorted(set(overrides) - {"actor", "sft"})
    if unknown or not all(isinstance(v, dict) for v in overrides.values()):
        raise ValueError("sft --set takes actor.<field>=value or sft.<field>=value "
                         "(e.g. --set actor.n_layer=4 --set sft.unlikelihood=1.0).")
    if (args.out or args.init) and len(args.env) > 1:
        raise ValueError("--out and --init name one checkpoint directory: give one --env with them.")
    for env in args.env:
        build_sft_checkpoint(env, epochs=args.epochs, eval_episodes=args.eval_episodes, seed=args.seed,
                             threads=args.threads, out=args.out, actor=overrides.get("actor"),
                             sft_overrides=overrides.get("sft"), init=args.init, device=args.device)


def cmd_eval(args) -> None:
    from archer_lite.actor import Actor
    from archer_lite.rollout import EpisodeStats, collect
    from archer_lite.seeding import resolve_device
    from archer_lite.train import sft_checkpoint_dir

    actor = Actor.load(args.actor or sft_checkpoint_dir(args.env)).to(resolve_device(args.device))
    for mode, greedy in (("sampled", False), ("greedy", True)):
        stats = EpisodeStats.of(collect(lambda s: actor.sample(s, greedy=greedy), args.env,
                                        args.episodes, seed=args.seed))
        print(f"{mode:8s} return {stats.mean_return:7.3f} ± {stats.std_return:5.2f}  success "
              f"{stats.success_rate:5.1%}  repeats {stats.repeat_rate:5.1%}  invalid {stats.invalid_rate:5.1%}")


def main(argv: list[str] | None = None) -> None:
    from archer_lite.envs import ENVS
    from archer_lite.train import ALGOS, PRESETS

    parser = argparse.ArgumentParser(prog="python -m archer_lite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a policy (ArCHer or a baseline)")
    p.add_argument("--env", choices=list(ENVS), help="default: twenty_questions_subset")
    p.add_argument("--algo", choices=list(ALGOS), help="default: archer")
    p.add_argument("--preset", default="cpu_course", choices=list(PRESETS))
    p.add_argument("--seed", type=int, help="default: 0")
    p.add_argument("--iterations", type=int)
    p.add_argument("--run-dir")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or auto (the GPU when there is one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field, e.g. archer.critic_lr=3e-4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sft", help="behaviour-clone the noisy demos into the tiny actor (data/checkpoints/)")
    p.add_argument("--env", nargs="+", default=["twenty_questions_subset"], choices=list(ENVS))
    p.add_argument("--epochs", type=int, default=0, help="0 = the env's default")
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto: where the actor trains")
    p.add_argument("--out", help="checkpoint dir (default: the shipped data/checkpoints/<env>/)")
    p.add_argument("--init", help="start from this saved actor and run only the DAgger rounds "
                                  "(--set sft.dagger_rounds=N), no behaviour cloning")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an ActorConfig or SFTConfig field: actor.n_layer=4, sft.lr=5e-4")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("eval", help="sampled and greedy return of an actor checkpoint")
    p.add_argument("--env", default="twenty_questions_subset", choices=list(ENVS))
    p.add_argument("--actor", help="checkpoint dir (default: the shipped SFT actor)")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=10_000_000)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("play", help="play an environment in the terminal")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("archer_lite.envs.play", fromlist=["main"]).main(a.rest))

    p = sub.add_parser("bench", help="benchmarks (see python -m archer_lite.bench --help)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("archer_lite.bench", fromlist=["main"]).main(a.rest))

    args = parser.parse_args(argv)
    if args.command == "eval":
        from archer_lite.seeding import set_threads

        set_threads(0)
    try:
        args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
