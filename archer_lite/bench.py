"""Benchmarks: they print tables and write results files (never timed tests).

    python -m archer_lite.bench envs                 # demonstrator returns + env steps/s
    python -m archer_lite.bench throughput           # batched sampler vs generate loop, update samples/s
    python -m archer_lite.bench --device cuda cell-speed   # s/iteration of the grid's cells on a GPU
    python -m archer_lite.bench repeat-gap           # does the critic see a repeated question?
    python -m archer_lite.bench strategies           # what the grid's trained 20Q policies say
    python -m archer_lite.bench sample-efficiency    # the ArCHer-vs-baselines grid (hours of CPU)
    python -m archer_lite.bench sample-efficiency --envs twenty_questions_subset --methods archer filtered_bc --seeds 0

The sample-efficiency grid is resumable: every (env, method, seed) cell is a training run under
``runs/bench/`` (itself resumable) and is merged into ``data/benchmarks/sample_efficiency.json``
as soon as it finishes, with its wall time and the code version. Re-running skips finished cells.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from archer_lite.paths import DATA_DIR

RESULTS_DIR = DATA_DIR / "benchmarks"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several grid processes may write at once
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


@contextlib.contextmanager
def _locked_json(path: Path):
    """Read-modify-write ``path`` under an exclusive lock (``path``.lock): yields the data (a new
    ``{"cells": {}}`` if absent), writes it back on exit if it changed. Grid processes for
    different cells share the results file; without the lock two writers lose each other's cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"cells": {}}
        before = json.dumps(data)
        yield data
        if json.dumps(data) != before or not path.exists():
            _write_json(path, data)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----- envs ------------------------------------------------------------------------------------------
def bench_envs(episodes: int = 1000, out: Path | None = None) -> dict[str, Any]:
    """Scripted expert vs noisy demonstrator mean return, and env steps/s, for every env."""
    from archer_lite.data import play_episode
    from archer_lite.envs import ENVS, make_env

    results, rows = {}, []
    for name in ENVS:
        env, rng = make_env(name), np.random.default_rng(0)
        entry: dict[str, Any] = {}
        for policy in ("expert", "noisy"):
            records = [play_episode(env, policy, rng, seed=i) for i in range(episodes)]
            entry[f"{policy}_mean_return"] = float(np.mean([r["return"] for r in records]))
            entry[f"{policy}_success_rate"] = float(np.mean([r["success"] for r in records]))
            entry[f"{policy}_mean_turns"] = float(np.mean([len(r["turns"]) for r in records]))
        # steps/s: replay recorded noisy actions (no demonstrator time in the measurement)
        actions = [[u for u, _ in r["turns"]] for r in records[:200]]
        steps, t0 = 0, time.perf_counter()
        for seed, episode in enumerate(actions):
            env.reset(seed=seed)
            for a in episode:
                env.step(a)
                steps += 1
        entry["steps_per_second"] = steps / (time.perf_counter() - t0)
        results[name] = entry
        rows.append([name, entry["expert_mean_return"], entry["noisy_mean_return"],
                     entry["expert_success_rate"], entry["noisy_success_rate"], round(entry["steps_per_second"])])
    print(_table(rows, ["env", "expert return", "noisy return", "expert success", "noisy success", "steps/s"]))
    _write_json(out or RESULTS_DIR / "envs.json", {"episodes": episodes, "results": results})
    return results


# ----- throughput -----------------------------------------------------------------------------------
def bench_throughput(env: str = "twenty_questions_subset", n_states: int = 64, repeats: int = 3,
                     out: Path | None = None, device: str = "cpu") -> dict[str, float]:
    """Utterances/s of the batched sampler vs a per-state ``model.generate`` loop; update samples/s.
    Results go to ``data/benchmarks/throughput.json`` (``throughput_<device>_b<batch>.json`` for
    another device or batch)."""
    import torch

    from archer_lite.actor import Actor, ActorConfig
    from archer_lite.algorithms.archer import ArcherConfig, actor_step, critic_step
    from archer_lite.buffer import ReplayBuffer
    from archer_lite.critic import CriticConfig, DoubleCritic, make_target
    from archer_lite.rollout import collect
    from archer_lite.seeding import resolve_device, set_seed
    from archer_lite.train import sft_checkpoint_dir

    set_seed(0)
    dev = resolve_device(device)
    path = sft_checkpoint_dir(env)
    actor = (Actor.load(path) if path.exists() else Actor.from_config(ActorConfig(), env=env)).to(dev)
    buffer = ReplayBuffer(10_000)
    for traj in collect(actor.sample, env, 64, seed=0):
        buffer.add_trajectory(traj)
    states = buffer.sample(n_states).states
    res: dict[str, Any] = {"device": str(dev), "device_name": _device_name(dev), "threads": torch.get_num_threads(),
                           "batch": n_states}

    actor.sample(states)  # warm-up: the first call pays one-time set-up costs
    t0 = time.perf_counter()
    for _ in range(repeats):
        actor.sample(states)
    res["batched_sampler_utterances_per_s"] = repeats * n_states / (time.perf_counter() - t0)

    looped = states[:64]  # one state at a time: 64 give the rate
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in looped:
            ids = torch.tensor([actor.encode_states([s])[0]], device=dev)
            actor.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 max_new_tokens=actor.config.max_utterance_tokens,
                                 eos_token_id=actor.stop_id, pad_token_id=actor.pad_id)
    res["generate_loop_utterances_per_s"] = len(looped) / (time.perf_counter() - t0)

    critic = DoubleCritic.from_config(CriticConfig(), env=env).to(dev)
    target, cfg = make_target(critic), ArcherConfig(batch_size=n_states)
    c_opt = torch.optim.Adam(critic.parameters(), 1e-3)
    a_opt = torch.optim.Adam(actor.model.parameters(), 2e-4)
    critic_step(critic, target, actor, buffer.sample(n_states), c_opt, cfg)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        critic_step(critic, target, actor, buffer.sample(n_states), c_opt, cfg)
    res["critic_update_samples_per_s"] = repeats * n_states / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        actor_step(actor, critic, buffer.sample(n_states).states, a_opt, cfg)
    res["actor_update_samples_per_s"] = repeats * n_states / (time.perf_counter() - t0)
    res["speedup_batched_vs_generate"] = res["batched_sampler_utterances_per_s"] / res["generate_loop_utterances_per_s"]
    print(_table([[k, v] for k, v in res.items()], ["measure", "value"]))
    default = "throughput.json" if (str(dev), n_states) == ("cpu", 64) else f"throughput_{dev.type}_b{n_states}.json"
    _write_json(out or RESULTS_DIR / default, {"env": env, **res})
    return res


# ----- how long a grid cell takes, per device ------------------------------------------------------
def bench_cell_speed(envs: list[str], methods: list[str], measured: int = 2, device: str = "cpu",
                     threads: int = 0, out: Path | None = None) -> list[dict[str, Any]]:
    """Seconds per training iteration of each grid cell's config (seed 0) on ``device``: runs
    the warm-up iterations (ArCHer's actor-free ones; one for the others) plus ``measured`` more
    into a scratch run dir and times the latter (rollout + update, evaluation left out). Beside
    it: the same time in the recorded (CPU) cells of ``sample_efficiency.json``, and the hours one
    cell of the full budget would take here (evaluations not counted). Writes
    ``data/benchmarks/cell_speed_<device>.json``."""
    import tempfile

    import torch

    from archer_lite.seeding import resolve_device
    from archer_lite.train import read_metrics, train

    dev = resolve_device(device)
    recorded = json.loads((RESULTS_DIR / "sample_efficiency.json").read_text())["cells"] \
        if (RESULTS_DIR / "sample_efficiency.json").exists() else {}
    rows: list[dict[str, Any]] = []
    for env in envs:
        for method in methods:
            cfg = cell_config(env, method, 0, BUDGETS.get(env, 1000), threads, str(dev))
            warmup = cfg.archer.warmup_iterations if cfg.algo in ("archer", "archer_baseline") else 1
            full_iterations = cfg.iterations
            with tempfile.TemporaryDirectory() as tmp:
                cfg.iterations, cfg.run_dir, cfg.checkpoint_every = warmup + measured, tmp, 0
                cfg.eval_every, cfg.eval_episodes = cfg.iterations + 1, 4  # one small, untimed evaluation
                train(cfg)
                timed = read_metrics(tmp)[warmup:]
            rollout = float(np.mean([r["time_rollout_s"] for r in timed]))
            update = float(np.mean([r["time_update_s"] for r in timed]))
            per_iter = rollout + update
            rows.append({"env": env, "method": method, "trajectories_per_iteration": cfg.rollout_trajectories,
                         "s_per_iteration": per_iter, "rollout_s": rollout, "update_s": update,
                         "recorded_cpu_s_per_iteration": _recorded_s_per_iteration(recorded, env, method, warmup),
                         "cell_iterations": full_iterations, "cell_hours": per_iter * full_iterations / 3600})
    table = [[r["env"], r["method"], r["trajectories_per_iteration"], r["rollout_s"], r["update_s"],
              r["s_per_iteration"], r["recorded_cpu_s_per_iteration"] or "-",
              (r["recorded_cpu_s_per_iteration"] or math.nan) / r["s_per_iteration"], r["cell_hours"]]
             for r in rows]
    print(f"device {dev} ({_device_name(dev)}), {torch.get_num_threads()} torch threads")
    print(_table(table, ["env", "method", "traj/iter", "rollout s", "update s", "s/iter",
                         "recorded CPU s/iter", "speed-up", "full cell h"]))
    _write_json(out or RESULTS_DIR / f"cell_speed_{dev.type}.json",
                {"device": str(dev), "device_name": _device_name(dev), "threads": torch.get_num_threads(), "measured_iterations": measured, "rows": rows})
    return rows


def _device_name(dev) -> str:
    """"NVIDIA H200" for a CUDA device, else its type ("cpu")."""
    import torch

    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type


def _recorded_s_per_iteration(cells: dict[str, Any], env: str, method: str, warmup: int) -> float | None:
    """Median over the finished recorded cells of (env, method) of their mean rollout + update
    seconds per iteration after the warm-up (as :func:`bench_cell_speed` times); None if none ran."""
    runs = [[r["time_rollout_s"] + r["time_update_s"] for r in c["metrics"][warmup:]]
            for k, c in cells.items() if k.startswith(f"{env}/{method}/") and c.get("finished")]
    return float(np.median([np.mean(r) for r in runs if r])) if any(runs) else None


# ----- does the critic see repeats? ---------------------------------------------------------------
def mc_repeat_gap(trajectories, gamma: float, min_count: int = 5) -> tuple[float, int]:
    """What a repeat costs the policy that made the trajectories, by Monte Carlo: per turn t,
    mean discounted return-to-go G_t after repeating an earlier utterance minus after saying a new
    one; averaged over turns weighted by their repeats (turns with >= ``min_count`` of each).
    Returns ``(gap, repeats counted)``; (nan, 0) without enough repeats. Repeats happen more in
    episodes already going badly, so this over- rather than under-states the cost."""
    by_turn: dict[int, tuple[list[float], list[float]]] = {}
    for traj in trajectories:
        g, returns = 0.0, []
        for t in reversed(traj.transitions):
            g = t.reward + gamma * g
            returns.append(g)
        said: set[str] = set()
        for t, g in zip(traj.transitions, reversed(returns)):
            by_turn.setdefault(t.turn, ([], []))[t.action in said].append(g)  # [new, repeat]
            said.add(t.action)
    gaps, weights = [], []
    for new, rep in by_turn.values():
        if len(new) >= min_count and len(rep) >= min_count:
            gaps.append(np.mean(rep) - np.mean(new))
            weights.append(len(rep))
    return (float(np.average(gaps, weights=weights)), int(sum(weights))) if gaps else (float("nan"), 0)


def sft_critic(env: str, steps: int, trajectories: int, overrides: dict | None = None):
    """A fresh critic (cpu_course settings + ``overrides``) trained ``steps`` critic steps on
    ``trajectories`` SFT rollouts (seed 0), as the probes below use it. Returns
    ``(cfg, actor, critic, train_seconds)``."""
    import torch

    from archer_lite.actor import Actor
    from archer_lite.algorithms.archer import critic_step
    from archer_lite.buffer import ReplayBuffer
    from archer_lite.critic import DoubleCritic, make_target
    from archer_lite.rollout import collect
    from archer_lite.seeding import set_seed
    from archer_lite.train import preset, sft_checkpoint_dir

    set_seed(0)
    cfg = preset("cpu_course", env=env, **(overrides or {}))
    actor = Actor.load(sft_checkpoint_dir(env))
    critic = DoubleCritic.from_config(cfg.critic, env=env)
    target = make_target(critic)
    opt = torch.optim.Adam([p for p in critic.parameters() if p.requires_grad], lr=cfg.archer.critic_lr)
    buffer = ReplayBuffer(cfg.buffer_capacity, seed=0)
    for traj in collect(actor.sample, env, trajectories, seed=0):
        buffer.add_trajectory(traj)
    t0 = time.perf_counter()
    for _ in range(steps):
        critic_step(critic, target, actor, buffer.sample(cfg.archer.batch_size), opt, cfg.archer)
    return cfg, actor, critic, time.perf_counter() - t0


def min_q_gap(critic, states: list[str], actions: list[str], reference: list[str]) -> np.ndarray:
    """min_i Q_i(s, action) - min_i Q_i(s, reference) per state   (N,)."""
    return (critic.min_q(states, actions) - critic.min_q(states, reference)).cpu().numpy()


def _gap_stats(gap: np.ndarray) -> dict[str, float]:
    return {"states": int(len(gap)), "mean_gap": float(gap.mean()) if len(gap) else float("nan"),
            "median_gap": float(np.median(gap)) if len(gap) else float("nan"),
            "fraction_below": float(np.mean(gap < 0)) if len(gap) else float("nan")}


def bench_repeat_gap(env: str = "twenty_questions_subset", steps: int = 400, trajectories: int = 320,
                     held_out: int = 128, out: Path | None = None, overrides: dict | None = None,
                     mc_trajectories: int = 1000) -> dict[str, float]:
    """Train a fresh critic (cpu_course settings) on the SFT actor's rollouts, then ask it, on
    held-out SFT states, how much worse re-asking an earlier question is than the SFT actor's new
    utterance: gap = min Q(s, earlier) - min Q(s, new). A wasted turn naively costs
    -1 - (1 - gamma) V(s) (about -0.5 on the 20Q subset, V ~ -9), so a critic that sees repeats has
    gap < 0 in most states; what a repeat really costs the SFT policy is measured beside it.
    ``overrides`` change the cpu_course config (``{"critic": {"action_in_context": True}}``).
    Beside it, the gap the critic should see: :func:`mc_repeat_gap` on ``mc_trajectories`` more
    SFT rollouts.
    """
    import torch

    from archer_lite.rollout import collect

    cfg, actor, critic, seconds = sft_critic(env, steps, trajectories, overrides)
    states, earlier, new = [], [], []
    for traj in collect(actor.sample, env, held_out, seed=5_000_000):
        said: list[str] = []
        for tr in traj.transitions:
            asked = [a for a in dict.fromkeys(said) if a != tr.action]
            if asked and tr.action not in said:  # the actor says something new; compare a repeat
                states.append(tr.state)
                earlier.append(asked[len(asked) // 2])
                new.append(tr.action)
            said.append(tr.action)
    gap = min_q_gap(critic, states, earlier, new)
    with torch.no_grad():
        v1, v2 = critic.values(states)
    stats = _gap_stats(gap)
    res = {"env": env, "overrides": json.dumps(overrides or {}), "critic_steps": steps,
           "train_trajectories": trajectories, "states": stats["states"],
           "mean_gap": stats["mean_gap"], "median_gap": stats["median_gap"],
           "fraction_repeat_below_new": stats["fraction_below"],
           "mean_v": float(torch.minimum(v1, v2).mean()), "train_seconds": seconds}
    res["mc_gap_same_turn"], res["mc_repeats"] = mc_repeat_gap(
        collect(actor.sample, env, mc_trajectories, seed=9_000_000), cfg.archer.gamma)
    print(_table([[k, v] for k, v in res.items()], ["measure", "value"]))
    _write_json(out or RESULTS_DIR / f"repeat_gap_{env}.json", res)
    return res


# ----- does the critic see malformed text? --------------------------------------------------------
CORRUPTIONS = ("word_loop", "doubled_prefix", "truncated", "shuffled")
"""How :func:`corrupt` breaks an utterance; the first two are what collapsing actors produced
("Is it for for for for", "Is itIs it a dog?")."""


def corrupt(utterance: str, kind: str, rng: np.random.Generator) -> str:
    """``utterance`` broken one way (:data:`CORRUPTIONS`):
    word_loop: the first k words, then word k repeated 3-8 times; doubled_prefix: the first k
    characters glued before the whole; truncated: the first half of the words; shuffled: the
    words in a random order."""
    words = utterance.split()
    if kind == "word_loop":
        k = int(rng.integers(1, max(2, len(words))))
        return " ".join(words[:k] + [words[k - 1]] * int(rng.integers(3, 9)))
    if kind == "doubled_prefix":
        return utterance[: int(rng.integers(2, max(3, len(utterance) // 2 + 1)))] + utterance
    if kind == "truncated":
        return " ".join(words[: max(1, len(words) // 2)])
    if kind == "shuffled":
        return " ".join(rng.permutation(words).tolist())
    raise ValueError(f"Unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}.")


def invalid_checker(env: str):
    """A function telling whether ``env`` answers an utterance with its invalid response, asked as
    the first turn of a fresh episode (the question games parse an utterance the same way in
    every state)."""
    from functools import lru_cache

    from archer_lite.envs import make_env

    game = make_env(env)

    @lru_cache(maxsize=None)
    def is_invalid(utterance: str) -> bool:
        game.reset(seed=0)
        return bool(game.step(utterance)[4]["invalid"])

    return is_invalid


def bench_invalid_gap(env: str = "guess_my_city", steps: int = 400, trajectories: int = 320,
                      held_out: int = 128, out: Path | None = None, overrides: dict | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """Train a fresh critic as :func:`bench_repeat_gap` does, then compare, in held-out SFT
    states, the SFT actor's valid utterance a with a malformed copy of it (:func:`corrupt`, kept
    only if the env calls it invalid): gap = min Q(s, malformed) - min Q(s, a). An invalid
    utterance wastes the turn like a repeat (-1, no information), so a critic that knows it has
    gap < 0 in most states; a critic extrapolating to text it never saw may rate it higher, and a
    fully fine-tuned actor following that critic then drifts into it."""
    from archer_lite.rollout import collect

    cfg, actor, critic, seconds = sft_critic(env, steps, trajectories, overrides)
    rng = np.random.default_rng(seed)
    is_invalid = invalid_checker(env)
    states: dict[str, list[str]] = {k: [] for k in CORRUPTIONS}
    broken: dict[str, list[str]] = {k: [] for k in CORRUPTIONS}
    valid: dict[str, list[str]] = {k: [] for k in CORRUPTIONS}
    for traj in collect(actor.sample, env, held_out, seed=5_000_000):
        for tr in traj.transitions:
            if is_invalid(tr.action):
                continue
            for kind in CORRUPTIONS:
                bad = corrupt(tr.action, kind, rng)
                if is_invalid(bad):
                    states[kind].append(tr.state)
                    broken[kind].append(bad)
                    valid[kind].append(tr.action)
    res: dict[str, Any] = {"env": env, "overrides": json.dumps(overrides or {}), "critic_steps": steps,
                           "train_trajectories": trajectories, "train_seconds": seconds}
    rows, gaps = [], []
    for kind in CORRUPTIONS:
        gap = min_q_gap(critic, states[kind], broken[kind], valid[kind])
        gaps.append(gap)
        res[kind] = {**_gap_stats(gap), "examples": broken[kind][:3]}
        rows.append([kind, res[kind]["states"], res[kind]["mean_gap"], res[kind]["median_gap"],
                     res[kind]["fraction_below"]])
    res["all"] = _gap_stats(np.concatenate(gaps))
    rows.append(["all", res["all"]["states"], res["all"]["mean_gap"], res["all"]["median_gap"],
                 res["all"]["fraction_below"]])
    print(_table(rows, ["corruption", "states", "mean gap", "median gap", "share malformed < valid"]))
    _write_json(out or RESULTS_DIR / f"invalid_gap_{env}.json", res)
    return res


def guess_shares(trajectories, guesses: set[str]) -> dict[str, float]:
    """Of all utterances: the share that are direct guesses, the share that repeat an earlier
    utterance of the episode; of the repeats, the share that are guesses; and the mean return."""
    n = n_guess = n_repeat = n_repeat_guess = 0
    for traj in trajectories:
        said: set[str] = set()
        for tr in traj.transitions:
            is_guess, is_repeat = tr.action in guesses, tr.action in said
            n, n_guess, n_repeat = n + 1, n_guess + is_guess, n_repeat + is_repeat
            n_repeat_guess += is_guess and is_repeat
            said.add(tr.action)
    return {"utterances": n, "guess_share": n_guess / max(n, 1), "repeat_share": n_repeat / max(n, 1),
            "repeats_that_are_guesses": n_repeat_guess / max(n_repeat, 1),
            "mean_return": float(np.mean([t.ret for t in trajectories]))}


def bench_strategies(env: str = "twenty_questions_subset", seed: int = 0, episodes: int = 64,
                     out: Path | None = None) -> dict[str, dict[str, float]]:
    """How the SFT actor and the final actor of each grid method and variant (``seed``'s cell under
    runs/bench/) play TwentyQuestions: do they ask or guess ("Is it a dog?"), and are their repeats
    guesses?
    Sampled (temperature 1) on ``episodes`` fixed evaluation episodes. CHAI is left out: its
    actor stays the SFT actor (its policy reranks that actor's samples under the critic)."""
    from archer_lite.actor import Actor
    from archer_lite.envs import make_env
    from archer_lite.envs.twenty_questions import TwentyQuestions, guess_question
    from archer_lite.rollout import collect
    from archer_lite.seeding import set_seed
    from archer_lite.train import sft_checkpoint_dir

    game = make_env(env)
    if not isinstance(game.unwrapped, TwentyQuestions):
        raise ValueError(f"strategies reads TwentyQuestions guesses; {env!r} is not a TwentyQuestions env.")
    guesses = {guess_question(name) for name in game.unwrapped.object_names}
    actors = {"SFT (start)": sft_checkpoint_dir(env)}
    for method in (m for m in METHODS + VARIANT_METHODS if m != "chai"):
        path = Path(cell_config(env, method, seed, 1).run_dir) / "checkpoint" / "actor"
        if path.exists():
            actors[method] = path
    res = {}
    for name, path in actors.items():
        actor = Actor.load(path)
        set_seed(0)
        res[name] = guess_shares(collect(actor.sample, env, episodes, seed=20_000_000), guesses)
    print(_table([[name, r["guess_share"], r["repeat_share"], r["repeats_that_are_guesses"], r["mean_return"]]
                  for name, r in res.items()],
                 ["actor", "guess share", "repeat share", "repeats that are guesses", "mean return"]))
    _write_json(out or RESULTS_DIR / f"strategies_{env}.json",
                {"env": env, "seed": seed, "episodes": episodes, "actors": res})
    return res


# ----- sample efficiency --------------------------------------------------------------------------
METHODS = ("archer", "archer_baseline", "filtered_bc", "chai", "ppo")
"""The paper's five: the grid's default."""
CONSERVATIVE_COEF = 1.0
"""``archer.conservative_coef`` of the archer_conservative variant (the CQL-style critic term in
algorithms/archer.py)."""
_LORA_ACTOR = {"actor": {"lora": True}}
_CONSERVATIVE_CRITIC = {"archer": {"conservative_coef": CONSERVATIVE_COEF}}
VARIANTS = {
    "archer_lora": ("archer", _LORA_ACTOR),
    "filtered_bc_lora": ("filtered_bc", _LORA_ACTOR),
    "archer_conservative": ("archer", _CONSERVATIVE_CRITIC),
    "archer_lora_conservative": ("archer", {**_LORA_ACTOR, **_CONSERVATIVE_CRITIC}),
}
"""Variants outside the paper's five, run with ``--methods archer_lora ...``: (algorithm, config
overrides), same schedule. The _lora ones fine-tune the SFT actor through LoRA adapters (rank 8 on
the attention projections) instead of all its weights: fully fine-tuned, the 0.56M actor loses
track of what it already said (README). archer_conservative's critic also pushes Q down at the
actor's fresh utterances; archer_lora_conservative does both (the two fixes that each kept the text
valid on their own)."""
VARIANT_METHODS = tuple(VARIANTS)
BUDGETS = {"twenty_questions_subset": 1_000, "twenty_questions": 5_000, "guess_my_city": 5_000}
"""ArCHer's trajectory budget per env; PPO gets PPO_BUDGET_FACTOR times as many."""
PPO_BUDGET_FACTOR = 20
PPO_EVALUATIONS = 100
"""Evaluations in a PPO cell (the others have 20): at 20x the budget, 20 would leave 5,000
trajectories between GuessMyCity evaluations, too coarse to place where PPO crosses a threshold
that ArCHer's budget is measured against. eval_every is not part of a cell's setup, so cells
recorded with 20 stay valid."""
PPO_KL_COEF = 0.05
"""The grid's PPO pays beta * (log pi - log pi_SFT) per token, as RLHF's PPO does: plain PPO's text
collapsed on the 20Q subset (sampled invalid rate 42% -> 82%, return -14.0 -> -19.4 within 6,720
trajectories; data/benchmarks/ppo_plain_twenty_questions_subset_partial.json)."""
ROWS = [m + tag for m in METHODS + VARIANT_METHODS for tag in ("", " (partial)")]
"""Summary rows: each method's finished cells, then its cells still under way (--report)."""


def _wall_seconds(metrics: list[dict[str, Any]]) -> float:
    """A run's compute time, summed per iteration (so a run in several parts counts them all)."""
    return sum(r["time_iteration_s"] for r in metrics)


def _same_setup(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two cell configs train the same way per iteration: threads, the device, the progress bar
    and the budget (iterations, and the evaluation spacing that follows it) do not count, so a
    larger budget extends a cell instead of restarting it, and a cell begun on the CPU can go on
    on a GPU."""
    from archer_lite.train import TrainConfig

    def canonical(config: dict[str, Any]) -> dict[str, Any]:  # fields added since get their defaults
        try:
            return TrainConfig.from_dict(config).to_dict()
        except (TypeError, ValueError):
            return config

    a, b = canonical(a), canonical(b)
    drop = ("threads", "device", "progress", "iterations", "eval_every")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def start_actor_digest(cfg) -> str:
    """sha256 (first 16 hex digits) of the weights a cell starts from (the shipped SFT actor of its
    env, or ``init_actor``'s checkpoint); "" when there are none. A rebuilt SFT actor changes it,
    and with it every cell that started from the old one is stale."""
    import hashlib

    from archer_lite.train import sft_checkpoint_dir

    if cfg.init_actor == "scratch":
        return ""
    path = sft_checkpoint_dir(cfg.env) if cfg.init_actor == "sft" else Path(cfg.init_actor)
    digest = hashlib.sha256()
    files = sorted(path.glob("*.safetensors"))
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16] if files else ""


START_ACTOR_FILE = "start_actor.sha256"
"""Written into a cell's run dir when it starts: the digest of the actor it started from."""


def retire_stale_cell(data: dict[str, Any], key: str, cfg, start_actor: str = "") -> bool:
    """A cell recorded (or a run dir started) under another config than ``cfg``, or from another
    start actor than ``start_actor`` (see :func:`start_actor_digest`; records without a digest
    count as the same), is set aside, not resumed or skipped: its JSON entry moves to
    ``data["superseded"][key]`` (kept, with its config) and its run dir is renamed
    ``<run_dir>.superseded-N``. Returns True when something moved."""

    def stale(config: dict[str, Any], recorded_start: str | None) -> bool:
        return not _same_setup(config, cfg.to_dict()) or bool(
            start_actor and recorded_start and recorded_start != start_actor)

    moved = False
    cell = data["cells"].get(key)
    if cell is not None and stale(cell["config"], cell.get("start_actor")):
        data.setdefault("superseded", {}).setdefault(key, []).append(data["cells"].pop(key))
        moved = True
    run = Path(cfg.run_dir)
    recorded = (run / START_ACTOR_FILE).read_text().strip() if (run / START_ACTOR_FILE).exists() else None
    # the run that made a retired cell goes with it
    if (run / "config.json").exists() and (moved or stale(json.loads((run / "config.json").read_text()), recorded)):
        n = 0
        while run.with_name(f"{run.name}.superseded-{n}").exists():
            n += 1
        run.rename(run.with_name(f"{run.name}.superseded-{n}"))
        moved = True
    if moved:
        print(f"== cell {key}: its config or start actor changed since it ran; the old result is kept "
              f"under 'superseded' and the cell runs again", flush=True)
    return moved


def retire_stale_cells(out: Path) -> list[str]:
    """Set aside every recorded cell of ``out`` whose setup or start actor is no longer today's
    (say, after an SFT actor was rebuilt), so the table never shows numbers of an actor that is no
    longer shipped; returns their keys. Their runs start afresh the next time the grid runs."""
    retired = []
    with _locked_json(out) as data:
        for key in list(data["cells"]):
            env, method, seed = key.split("/")
            cfg = cell_config(env, method, int(seed.removeprefix("seed")), BUDGETS.get(env, 1000))
            if retire_stale_cell(data, key, cfg, start_actor_digest(cfg)):
                retired.append(key)
    return retired


def cell_config(env: str, method: str, seed: int, budget: int, threads: int = 0, device: str = "cpu"):
    """The TrainConfig of one grid cell (cpu_course schedule, sized to the trajectory budget;
    ``threads`` torch threads, 0 = the preset's; on ``device``)."""
    from archer_lite.train import preset

    algo, overrides = VARIANTS.get(method, (method, {}))
    per_iter = 64 if algo == "ppo" else 16
    total = budget * (PPO_BUDGET_FACTOR if algo == "ppo" else 1)
    iterations = -(-total // per_iter)  # ceil: the budget is always reached
    evaluations = PPO_EVALUATIONS if algo == "ppo" else 20
    return preset("cpu_course", env=env, algo=algo, seed=seed, iterations=iterations,
                  rollout_trajectories=per_iter, rollout_batch=min(per_iter, 32),
                  eval_every=max(1, iterations // evaluations), eval_episodes=64, progress=False,
                  run_dir=f"runs/bench/{env}/{method}/seed{seed}", checkpoint_every=5,
                  **({"ppo": {"kl_coef": PPO_KL_COEF}} if algo == "ppo" else {}),
                  **overrides, device=device,
                  **({"threads": threads} if threads else {}))


def bench_sample_efficiency(envs: list[str], methods: list[str], seeds: list[int],
                            out: Path | None = None, budget_scale: float = 1.0,
                            threads: int = 0, report: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Run the unfinished cells of the grid (or, with ``report``, run nothing and summarise the
    finished cells plus the cells still under way in runs/bench/, marked "(partial)")."""
    from archer_lite.seeding import machine_info
    from archer_lite.train import code_version, read_metrics, train

    out = out or RESULTS_DIR / "sample_efficiency.json"
    data = json.loads(out.read_text()) if out.exists() else {"cells": {}}
    if report:
        partial = dict(data, cells=dict(data["cells"]))
        for env in envs:
            for method in methods:
                for seed in seeds:
                    key = f"{env}/{method}/seed{seed}"
                    run = Path(cell_config(env, method, seed, 1).run_dir)
                    if key not in data["cells"] and (run / "metrics.jsonl").exists():
                        metrics = read_metrics(run)
                        if any("eval_sampled_mean_return" in r for r in metrics):
                            partial["cells"][key] = {"finished": False, "metrics": metrics,
                                                     "wall_seconds": _wall_seconds(metrics)}
        report_path = Path("runs/bench/sample_efficiency_report.json")  # beside the runs, not in data/
        report_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(report_path, partial)
        summarize(partial, report_path)
        return partial
    for env in envs:
        for method in methods:
            for seed in seeds:
                key = f"{env}/{method}/seed{seed}"
                cfg = cell_config(env, method, seed, int(BUDGETS.get(env, 1000) * budget_scale), threads, device)
                start_actor = start_actor_digest(cfg)
                with _locked_json(out) as data:  # with the cells other processes finished meanwhile
                    retire_stale_cell(data, key, cfg, start_actor)
                if data["cells"].get(key, {}).get("finished"):
                    continue
                Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
                (Path(cfg.run_dir) / START_ACTOR_FILE).write_text(start_actor + "\n")
                version, t0 = code_version(), time.perf_counter()  # the code this process runs
                print(f"== cell {key}: {cfg.iterations} iterations x {cfg.rollout_trajectories} trajectories",
                      flush=True)
                train(cfg)  # resumes from the cell's last checkpoint if an earlier run stopped
                metrics = read_metrics(cfg.run_dir)
                with _locked_json(out) as data:
                    data["cells"][key] = {"finished": True, "wall_seconds": _wall_seconds(metrics),
                                          "last_part_wall_seconds": time.perf_counter() - t0,
                                          "code_version": version, "start_actor": start_actor,
                                          "machine": machine_info(cfg.device),
                                          "config": cfg.to_dict(), "metrics": metrics}
    summarize(data, out)
    return data


def summarize(data: dict[str, Any], out: Path) -> None:
    """Print the table (trajectories to reach filtered BC's best; return at 1k/5k/20k) and plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from archer_lite.train import sft_checkpoint_dir

    curves: dict[tuple[str, str], list[list[tuple[int, float, float, float]]]] = {}
    finals: dict[tuple[str, str], list[dict[str, float]]] = {}
    for key, cell in data["cells"].items():
        env, method, _ = key.split("/")
        method += "" if cell.get("finished", True) else " (partial)"  # a lower bound on its budget
        evals = [r for r in cell["metrics"] if "eval_sampled_mean_return" in r]
        curves.setdefault((env, method), []).append(
            [(r["trajectories"], r["eval_sampled_mean_return"], r["eval_greedy_mean_return"],
              r["eval_sampled_success_rate"]) for r in evals])
        finals.setdefault((env, method), []).append(
            {"repeat": evals[-1]["eval_sampled_repeat_rate"], "greedy": evals[-1]["eval_greedy_mean_return"],
             "wall": cell["wall_seconds"]})
    for env in sorted({e for e, _ in curves}):
        bc = [p[1] for run in curves.get((env, "filtered_bc"), []) for p in run]
        threshold = max(bc) if bc else None
        rows = []
        sft_eval = sft_checkpoint_dir(env) / "eval.json"
        if sft_eval.exists():
            sft = json.loads(sft_eval.read_text())
            rows.append(["SFT (start)", "-", "-", "-", "-", "-", f"{sft['sampled_mean_return']:.2f}",
                         f"{sft['greedy_mean_return']:.2f}", f"{sft['sampled_repeat_rate']:.1%}", "-"])
        for method in ROWS:
            runs = curves.get((env, method))
            if not runs:
                continue
            reach = []
            for run in runs:
                hit = next((t for t, r, *_ in run if threshold is not None and r >= threshold), None)
                reach.append(hit)
            budget = max(t for run in runs for t, *_ in run)
            reached = [r for r in reach if r is not None]
            need = (f"{int(np.median(reached))}" if len(reached) == len(reach) else f"> {budget}") \
                if threshold is not None else "n/a"
            at = []
            for mark in (1_000, 5_000, 20_000):  # the evaluation nearest the mark, within 10%
                near = [min(((abs(t - mark), r) for t, r, *_ in run if abs(t - mark) <= mark / 10),
                            default=None) for run in runs]
                vals = [v[1] for v in near if v is not None]
                at.append(f"{np.median(vals):.2f}" if vals else "-")
            end = finals[(env, method)]
            rows.append([method, len(runs), need, *at, f"{np.median([run[-1][1] for run in runs]):.2f}",
                         f"{np.median([f['greedy'] for f in end]):.2f}",
                         f"{np.median([f['repeat'] for f in end]):.1%}",
                         f"{np.median([f['wall'] for f in end]):.0f}"])
        thr = f"{threshold:.2f}" if threshold is not None else "n/a"
        print(f"\n{env}: filtered BC's best sampled return = {thr} (medians over seeds; "
              f"'> N' = not reached within N trajectories)")
        print(_table(rows, ["method", "seeds", "traj to reach BC best", "ret@1k", "ret@5k", "ret@20k",
                            "final sampled", "final greedy", "repeat rate", "wall s/seed"]))
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
        for method in ROWS:
            runs = curves.get((env, method))
            if not runs:
                continue
            for ax, idx, label in zip(axes, (1, 2, 3), ("sampled return", "greedy return", "success rate")):
                xs = sorted({p[0] for run in runs for p in run})
                grid = np.array([[np.interp(x, [p[0] for p in run], [p[idx] for p in run]) for x in xs] for run in runs])
                ax.plot(xs, np.median(grid, 0), label=method)
                ax.fill_between(xs, grid.min(0), grid.max(0), alpha=0.2)
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping 2x10^2 ...
                ax.set_xlabel("trajectories collected")
                ax.set_ylabel(label)
        if sft_eval.exists():  # where every method starts
            for ax, key in zip(axes, ("sampled_mean_return", "greedy_mean_return", "sampled_success_rate")):
                ax.axhline(sft[key], color="grey", linestyle="--", linewidth=1, label="SFT start")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{env}: median and range over seeds")
        fig.tight_layout()
        fig.savefig(out.with_name(f"{out.stem}_{env}.png"), dpi=100)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from archer_lite.envs import ENVS

    parser = argparse.ArgumentParser(prog="python -m archer_lite.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # --threads and --device go before or after the subcommand; a subcommand's copies default to
    # SUPPRESS, so they set a value only when given there (and then win over one given before)
    common = argparse.ArgumentParser(add_help=False)
    for target, unset in ((parser, False), (common, True)):
        target.add_argument("--threads", type=int, default=argparse.SUPPRESS if unset else 0,
                            help="torch threads (0 = all cores; a sample-efficiency cell: its preset's "
                                 "2, so give each cell 1 when two cells share 2 cores)")
        target.add_argument("--device", default=argparse.SUPPRESS if unset else "cpu",
                            help="cpu, cuda, cuda:N or auto: where throughput and sample-efficiency run")
    sub = parser.add_subparsers(dest="what", required=True)

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("envs")
    p.add_argument("--episodes", type=int, default=1000)
    p = add("cell-speed", help="seconds per iteration of each grid cell's config on --device")
    p.add_argument("--envs", nargs="+", default=["guess_my_city"], choices=list(ENVS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS + VARIANT_METHODS))
    p.add_argument("--measured", type=int, default=2, help="iterations timed after the warm-up")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default data/benchmarks/cell_speed_DEVICE.json)")
    p = add("throughput")
    p.add_argument("--env", default="twenty_questions_subset", choices=list(ENVS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default data/benchmarks/throughput*.json)")
    for name, env, question in (
            ("repeat-gap", "twenty_questions_subset", "see repeated questions?"),
            ("invalid-gap", "guess_my_city", "rate malformed text below valid?")):
        p = add(name, help=f"does a critic trained on SFT rollouts {question}")
        p.add_argument("--env", default=env, choices=list(ENVS))
        p.add_argument("--steps", type=int, default=400)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, e.g. --set critic.action_in_context=true")
        p.add_argument("--out", type=Path, default=None,
                       help=f"results JSON (default data/benchmarks/{name.replace('-', '_')}_ENV.json)")
    p = add("strategies", help="ask or guess? the SFT and trained 20Q policies' utterances")
    p.add_argument("--env", default="twenty_questions_subset", choices=list(ENVS))
    p.add_argument("--seed", type=int, default=0, help="which grid seed's final actors")
    p.add_argument("--episodes", type=int, default=64)
    p = add("sample-efficiency")
    p.add_argument("--envs", nargs="+", default=["twenty_questions_subset", "twenty_questions", "guess_my_city"],
                   choices=list(ENVS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS + VARIANT_METHODS),
                   help="default: the paper's five; variants: " + " ".join(VARIANT_METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget-scale", type=float, default=1.0, help="scale every trajectory budget")
    p.add_argument("--report", action="store_true",
                   help="run nothing: print the table of finished cells plus those under way in runs/bench/")
    p.add_argument("--retire-stale", action="store_true",
                   help="run nothing: set aside every recorded cell whose setup or start actor changed")
    args = parser.parse_args(argv)
    from archer_lite.seeding import resolve_device, set_threads

    try:  # one usage error, before anything runs
        set_threads(args.threads)
        resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    if args.what == "envs":
        bench_envs(args.episodes)
    elif args.what == "cell-speed":
        bench_cell_speed(args.envs, args.methods, args.measured, device=args.device, threads=args.threads,
                         out=args.out)
    elif args.what == "throughput":
        bench_throughput(args.env, args.batch, out=args.out, device=args.device)
    elif args.what in ("repeat-gap", "invalid-gap"):
        from archer_lite.__main__ import _overrides
        from archer_lite.train import TrainConfig

        probe = bench_repeat_gap if args.what == "repeat-gap" else bench_invalid_gap
        probe(args.env, args.steps, out=args.out, overrides=_overrides(args.set, TrainConfig))
    elif args.what == "strategies":
        bench_strategies(args.env, args.seed, args.episodes)
    elif args.retire_stale:
        out = RESULTS_DIR / "sample_efficiency.json"
        retired = retire_stale_cells(out)
        print(f"{len(retired)} stale cell(s) set aside under 'superseded' in {out}")
    else:
        bench_sample_efficiency(args.envs, args.methods, args.seeds, budget_scale=args.budget_scale,
                                threads=args.threads, report=args.report, device=args.device)


if __name__ == "__main__":
    main()
