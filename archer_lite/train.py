"""The training loop every algorithm shares. It reads top to bottom:

    for each iteration:
        rollout   -> trajectories from the current policy, pushed into the replay buffer
        update    -> the algorithm's critic/actor steps (ArCHer, filtered BC, CHAI, PPO)
        evaluate  -> every ``eval_every`` iterations: sampled (temperature 1) and greedy return
        log       -> one JSON line in runs/<name>/metrics.jsonl
        checkpoint-> runs/<name>/checkpoint/ (actor, critic, target, optimisers, buffer, RNGs)

``train(cfg)`` resumes from the run's checkpoint when one exists, and a resumed run writes the
same numbers as an uninterrupted one.
"""
from __future__ import annotations

import json
import random
import subprocess
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from archer_lite.actor import Actor, ActorConfig
from archer_lite.algorithms.archer import Archer, ArcherConfig
from archer_lite.algorithms.chai import Chai, ChaiConfig
from archer_lite.algorithms.filtered_bc import FilteredBC, FilteredBCConfig
from archer_lite.buffer import ReplayBuffer
from archer_lite.critic import CriticConfig, DoubleCritic
from archer_lite.envs import env_spec
from archer_lite.paths import sft_checkpoint_dir
from archer_lite.rollout import EpisodeStats, collect, evaluate as evaluate_policies
from archer_lite.seeding import resolve_device, set_seed, set_threads

ALGOS = ("archer", "archer_baseline", "filtered_bc", "chai", "ppo")


@dataclass
class TrainConfig:
    """One training run. Defaults mirror the paper's schedule; ``preset("cpu_course")`` shrinks it."""

    env: str = "twenty_questions_subset"
    """Environment short name (see archer_lite.envs.ENVS)."""
    algo: str = "archer"
    """One of: archer, archer_baseline, filtered_bc, chai, ppo."""
    seed: int = 0
    """Seeds torch/numpy/python, the buffer and every rollout."""
    iterations: int = 100
    """Training iterations (rollout + update)."""
    rollout_trajectories: int = 128
    """Trajectories collected per iteration."""
    rollout_batch: int = 32
    """Environments stepped together during a rollout."""
    buffer_capacity: int = 10_000
    """Replay buffer capacity in transitions (paper: 10k)."""
    eval_every: int = 5
    """Evaluate every N iterations (and after the last)."""
    eval_episodes: int = 64
    """Episodes per evaluation, for the sampled and for the greedy policy."""
    init_actor: str = "sft"
    """"sft" (the shipped SFT checkpoint of ``env``), "scratch", or a checkpoint path."""
    run_dir: str = "runs/default"
    """Where config.json, metrics.jsonl and checkpoint/ go."""
    checkpoint_every: int = 1
    """Save a checkpoint every N iterations (0 = never)."""
    threads: int = 0
    """torch threads, set explicitly (0 = every available core; see seeding.set_threads)."""
    device: str = "cpu"
    """Where the actor, critic and updates run: "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA
    when torch sees a GPU). Environments, the buffer and checkpoints stay on the CPU."""
    progress: bool = True
    """Show a tqdm progress bar."""
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    archer: ArcherConfig = field(default_factory=ArcherConfig)
    filtered_bc: FilteredBCConfig = field(default_factory=FilteredBCConfig)
    chai: ChaiConfig = field(default_factory=ChaiConfig)
    ppo: dict = field(default_factory=dict)
    """PPOConfig fields (see archer_lite.algorithms.ppo)."""

    def __post_init__(self):
        env_spec(self.env)  # unknown names raise a KeyError listing the choices
        if self.algo not in ALGOS:
            raise ValueError(f"Unknown algo {self.algo!r}; choose one of {', '.join(ALGOS)}.")
        if self.iterations < 0 or self.rollout_trajectories < 1 or self.eval_every < 1:
            raise ValueError("iterations must be >= 0, rollout_trajectories and eval_every >= 1.")
        resolve_device(self.device, check_available=False)  # a config may be written for another machine
        if self.ppo:  # checked now, not when PPO is built: a typo fails before anything runs
            from archer_lite.algorithms.ppo import PPOConfig
            config_from_dict(PPOConfig, self.ppo, "ppo.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise an error naming them."""
        return config_from_dict(cls, data)


def config_from_dict(cls, data: dict[str, Any], prefix: str = ""):
    """A ``cls`` config dataclass from ``data`` (nested dicts build nested configs); unknown keys
    raise one error naming them and the known ones, and a value of the wrong type (``--set
    actor.lora=maybe``) one naming the field and the type it takes. ``prefix`` is the section's
    place in ``--set`` keys ("actor.")."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}. "
                         f"Known: {', '.join(known)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        section = _section(known[name])
        if section is not None and isinstance(value, dict):
            kwargs[name] = config_from_dict(section, value, f"{prefix}{name}.")
            continue
        _check_type(prefix + name, value, hints[name])
        kwargs[name] = value
    return cls(**kwargs)


def _section(f) -> type | None:
    """The config dataclass a field holds (TrainConfig.actor -> ActorConfig), else None."""
    default = f.default_factory() if callable(f.default_factory) else None
    return type(default) if is_dataclass(default) else None


def field_type(cls, key: list[str]) -> Any:
    """The annotation of the dotted field ``key`` of config dataclass ``cls`` (["archer",
    "actor_lr"] -> float), or None when there is no such field."""
    for part in key[:-1]:
        f = {f.name: f for f in fields(cls)}.get(part)
        cls = _section(f) if f is not None else None
        if cls is None:
            return None
    return typing.get_type_hints(cls).get(key[-1])


_TYPE_EXAMPLES = {bool: "true or false", int: "a whole number, e.g. 4", float: "a number, e.g. 1e-4",
                  str: "text", dict: 'a JSON object, e.g. {"kl_coef": 0.05}'}


def _check_type(key: str, value: Any, hint: Any) -> None:
    """Raise if ``value`` cannot be a ``hint`` (bool, int, float, str, dict or a union of them);
    ints pass for floats, bools pass only for bools."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)

    def fits(t) -> bool:
        if t is type(None):
            return value is None
        if t is bool or isinstance(value, bool):  # bool is an int subclass: only a bool field takes one
            return t is bool and isinstance(value, bool)
        if t is float:
            return isinstance(value, (int, float))
        return not isinstance(t, type) or isinstance(value, t)

    if not any(fits(t) for t in allowed):
        wanted = " or ".join(_TYPE_EXAMPLES.get(t, getattr(t, "__name__", str(t))) for t in allowed)
        raise ValueError(f"{key} takes {wanted} (got {value!r}); on the command line: "
                         f"--set {key}=<value>, the value written as JSON (true, 4, 1e-4, \"text\").")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu_course": {
        "iterations": 25, "rollout_trajectories": 16, "rollout_batch": 16, "eval_every": 5,
        "eval_episodes": 64, "threads": 2,
        "archer": {"critic_steps": 10, "actor_steps": 2, "batch_size": 64, "warmup_iterations": 3},
        "filtered_bc": {"steps": 4, "batch_size": 64},
    },
}
"""Named overrides: "paper" = the defaults; "cpu_course" trains in minutes on 2 cores."""


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a named preset plus overrides (nested dicts merge into sub-configs)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    data = json.loads(json.dumps(PRESETS[name]))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return TrainConfig.from_dict(data)


def load_initial_actor(cfg: TrainConfig) -> Actor:
    if cfg.init_actor == "scratch":
        return Actor.from_config(cfg.actor, env=cfg.env)
    path = sft_checkpoint_dir(cfg.env) if cfg.init_actor == "sft" else Path(cfg.init_actor)
    if not path.exists():
        raise FileNotFoundError(f"No actor checkpoint at {path}. Build the SFT actor with "
                                f"`python -m archer_lite sft --env {cfg.env}`, or set init_actor='scratch'.")
    actor = Actor.load(path)
    actor.config.max_utterance_tokens = cfg.actor.max_utterance_tokens
    actor.config.temperature = cfg.actor.temperature
    if cfg.actor.lora and not actor.config.lora:  # fine-tune the loaded actor through adapters
        actor.config.lora, actor.config.lora_r, actor.config.lora_alpha = True, cfg.actor.lora_r, cfg.actor.lora_alpha
        actor.add_lora()
    return actor


def build_algorithm(cfg: TrainConfig, actor: Actor):
    if cfg.algo in ("archer", "archer_baseline", "chai"):
        critic = DoubleCritic.from_config(cfg.critic, env=cfg.env).to(actor.device)  # beside the actor
        archer_cfg = ArcherConfig(**{**asdict(cfg.archer),
                                     "token_baseline": cfg.archer.token_baseline or cfg.algo == "archer_baseline"})
        if cfg.algo == "chai":
            return Chai(actor, critic, archer_cfg, cfg.chai)
        return Archer(actor, critic, archer_cfg)
    if cfg.algo == "filtered_bc":
        return FilteredBC(actor, cfg.filtered_bc, seed=cfg.seed)
    from archer_lite.algorithms.ppo import PPO, PPOConfig

    return PPO(actor, config_from_dict(PPOConfig, cfg.ppo, "ppo."), seed=cfg.seed)


def evaluate(algo, env: str, episodes: int, seed: int, batch: int = 32) -> dict[str, float]:
    """Sampled (temperature 1) and greedy evaluation on fixed seeds (the same every time).

    Runs on a forked torch RNG: how often a run evaluates never changes what it trains on.
    """
    stats = evaluate_policies({"sampled": algo.act, "greedy": _greedy_policy(algo)}, env, episodes, seed, batch)
    return {f"eval_{k}": v for k, v in stats.items()}


def _greedy_policy(algo):
    if hasattr(algo, "act_greedy"):
        return algo.act_greedy
    return lambda states: algo.actor.sample(states, greedy=True)


def train(cfg: TrainConfig, algo=None) -> Path:
    """Run (or resume) one training run; returns its run directory."""
    device = resolve_device(cfg.device)  # an unusable device fails before anything is written
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.threads)
    set_seed(cfg.seed)
    actor = load_initial_actor(cfg).to(device)
    algo = algo or build_algorithm(cfg, actor)
    buffer = ReplayBuffer(cfg.buffer_capacity, seed=cfg.seed)
    start, trajectories_seen = 0, 0
    checkpoint = run / "checkpoint"
    finished_tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    if not (checkpoint / "state.pt").exists() and (finished_tmp / "buffer.json").exists():
        import shutil  # stopped between save_checkpoint's rmtree and rename: the tmp is complete

        shutil.rmtree(checkpoint, ignore_errors=True)
        finished_tmp.rename(checkpoint)
    if (checkpoint / "state.pt").exists():
        start, trajectories_seen = load_checkpoint(checkpoint, cfg, algo, buffer)
        kept = [r for r in read_metrics(run) if r["iteration"] <= start]  # drop lines past the checkpoint
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    else:
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        (run / "metrics.jsonl").write_text("")
    eval_seed = 10_000_000  # evaluation episodes never overlap training seeds
    bar = tqdm(range(start, cfg.iterations), desc=f"{cfg.algo} {cfg.env}", disable=not cfg.progress,
               initial=start, total=cfg.iterations)
    for iteration in bar:
        t0 = time.perf_counter()
        # 1. rollout with the current policy; every utterance-level transition goes to the buffer
        new = collect(algo.act, cfg.env, cfg.rollout_trajectories,
                      seed=cfg.seed * 1_000_003 + iteration * cfg.rollout_trajectories,
                      batch_size=cfg.rollout_batch)
        for traj in new:
            buffer.add_trajectory(traj)
        trajectories_seen += len(new)
        t_rollout = time.perf_counter() - t0
        # 2. the algorithm's critic and actor steps
        metrics = algo.update(buffer, new, iteration)
        t_update = time.perf_counter() - t0 - t_rollout
        # 3. periodic evaluation (sampled and greedy)
        record = {"iteration": iteration + 1, "trajectories": trajectories_seen,
                  **{f"train_{k}": v for k, v in asdict(EpisodeStats.of(new)).items() if k != "n"},
                  **metrics}
        if (iteration + 1) % cfg.eval_every == 0 or iteration + 1 == cfg.iterations:
            record.update(evaluate(algo, cfg.env, cfg.eval_episodes, eval_seed, cfg.rollout_batch))
        record.update(time_rollout_s=t_rollout, time_update_s=t_update,
                      time_iteration_s=time.perf_counter() - t0)
        # 4. log and checkpoint
        with (run / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(ret=f"{record['train_mean_return']:.2f}")
        if cfg.checkpoint_every and ((iteration + 1) % cfg.checkpoint_every == 0
                                     or iteration + 1 == cfg.iterations):
            save_checkpoint(checkpoint, cfg, algo, buffer, iteration + 1, trajectories_seen)
    return run


# ----- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: Path, cfg: TrainConfig, algo, buffer: ReplayBuffer, iteration: int,
                    trajectories: int) -> None:
    """Actor (safetensors), algorithm state (critic, target, optimisers), buffer and every RNG."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    algo.actor.save(tmp / "actor")
    torch.save({"iteration": iteration, "trajectories": trajectories, "algo": cfg.algo,
                "env": cfg.env, "algo_state": algo.state_dict(),
                "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python_rng": random.getstate()}, tmp / "state.pt")
    buffer.save(tmp / "buffer.json")  # written last: its presence marks a complete tmp
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)  # replace atomically-ish: a crash mid-save leaves the old checkpoint


def load_checkpoint(path: Path, cfg: TrainConfig, algo, buffer: ReplayBuffer) -> tuple[int, int]:
    """Restore a run; a corrupt or mismatched checkpoint raises a clear error."""
    try:
        # on the CPU first (a checkpoint saved on a GPU opens where there is none); load_state_dict
        # then copies every tensor onto the run's device
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(f"Checkpoint {path} is corrupt ({type(err).__name__}: {err}). Delete "
                         f"{path} to restart the run from scratch.") from err
    if (state.get("algo"), state.get("env")) != (cfg.algo, cfg.env):
        raise ValueError(f"Checkpoint {path} is for algo={state.get('algo')!r} env={state.get('env')!r}, "
                         f"not algo={cfg.algo!r} env={cfg.env!r}: use another run_dir.")
    loaded = Actor.load(path / "actor")
    algo.actor.model.load_state_dict(loaded.model.state_dict())
    algo.load_state_dict(state["algo_state"])
    buffer.load_state_dict(ReplayBuffer.load(path / "buffer.json").state_dict())
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():  # saved where a GPU was; resumed on one
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return state["iteration"], state["trajectories"]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metrics.jsonl of a run as a list of dicts (what the plots and widgets read)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"No metrics at {path}: train a run there first.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def code_version() -> str:
    """The git commit of the package, with "+dirty" when archer_lite/ has uncommitted changes."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, cwd=here, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
