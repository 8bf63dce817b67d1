"""The benchmarks' bookkeeping: cell budgets, the summary table, cells run in parts, the repeat-gap
and invalid-gap probes."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from archer_lite.bench import (PPO_BUDGET_FACTOR, PPO_EVALUATIONS, PPO_KL_COEF, START_ACTOR_FILE, _locked_json, cell_config,
                                retire_stale_cell, retire_stale_cells, start_actor_digest, summarize)


def _cell(points, wall=10.0):
    metrics = [{"iteration": i, "trajectories": t, "eval_sampled_mean_return": r, "eval_greedy_mean_return": r - 1,
                "eval_sampled_success_rate": 0.5, "eval_sampled_repeat_rate": 0.02}
               for i, (t, r) in enumerate(points)]
    return {"finished": True, "wall_seconds": wall, "metrics": metrics}


def test_ppo_cells_get_twenty_times_the_trajectories():
    archer = cell_config("twenty_questions_subset", "archer", 0, 1000, threads=1)
    ppo = cell_config("twenty_questions_subset", "ppo", 0, 1000, threads=1)
    assert archer.iterations * archer.rollout_trajectories == 1008  # 63 x 16: the budget, rounded up
    assert ppo.iterations * ppo.rollout_trajectories == PPO_BUDGET_FACTOR * 1000 + 32  # 313 x 64
    assert archer.threads == ppo.threads == 1
    assert archer.run_dir.endswith("twenty_questions_subset/archer/seed0")
    assert ppo.ppo == {"kl_coef": PPO_KL_COEF} and PPO_KL_COEF > 0 and archer.ppo == {}


def test_ppo_cells_evaluate_five_times_as_often_as_the_others():
    archer = cell_config("guess_my_city", "archer", 0, 5000, threads=1)
    ppo = cell_config("guess_my_city", "ppo", 0, 5000, threads=1)
    assert (archer.iterations, archer.eval_every) == (313, 15)  # 20 evaluations, every 240 trajectories
    assert (ppo.iterations, ppo.eval_every, PPO_EVALUATIONS) == (1563, 15, 100)  # every 960 trajectories


def test_lora_variants_run_the_same_algorithm_through_adapters():
    for variant, algo in (("archer_lora", "archer"), ("filtered_bc_lora", "filtered_bc")):
        lora, full = cell_config("guess_my_city", variant, 1, 5000), cell_config("guess_my_city", algo, 1, 5000)
        assert lora.algo == algo and lora.actor.lora and not full.actor.lora and lora.actor.lora_r == 8
        assert lora.run_dir == f"runs/bench/guess_my_city/{variant}/seed1"
        differ = {k for k in lora.to_dict() if lora.to_dict()[k] != full.to_dict()[k]}
        assert differ == {"actor", "run_dir"}  # same schedule, budget and seed


def test_conservative_variant_runs_archer_with_the_conservative_critic_term():
    from archer_lite.bench import CONSERVATIVE_COEF

    cons, full = cell_config("guess_my_city", "archer_conservative", 0, 5000), cell_config("guess_my_city", "archer", 0, 5000)
    assert cons.algo == "archer" and cons.archer.conservative_coef == CONSERVATIVE_COEF > 0
    assert full.archer.conservative_coef == 0.0  # the paper's ArCHer cells are unchanged
    differ = {k for k in cons.to_dict() if cons.to_dict()[k] != full.to_dict()[k]}
    assert differ == {"archer", "run_dir"}
    assert {k for k, v in cons.to_dict()["archer"].items() if v != full.to_dict()["archer"][k]} == {"conservative_coef"}


def test_lora_conservative_variant_is_the_lora_actor_plus_the_conservative_critic():
    both = cell_config("twenty_questions", "archer_lora_conservative", 2, 5000).to_dict()
    lora = cell_config("twenty_questions", "archer_lora", 2, 5000).to_dict()
    cons = cell_config("twenty_questions", "archer_conservative", 2, 5000).to_dict()
    assert both["algo"] == "archer" and both["actor"] == lora["actor"] and both["archer"] == cons["archer"]
    assert both["run_dir"] == "runs/bench/twenty_questions/archer_lora_conservative/seed2"
    assert {k for k in both if both[k] != lora[k]} == {"archer", "run_dir"}


def test_a_cell_whose_config_changed_is_set_aside_not_resumed_or_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from archer_lite.train import TrainConfig

    new = cell_config("guess_my_city", "archer", 0, 5000, threads=1)
    old = TrainConfig.from_dict({**new.to_dict(), "archer": {**new.to_dict()["archer"], "critic_warmup_steps": 300}})
    run = Path(new.run_dir)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(old.to_dict()))
    data = {"cells": {"guess_my_city/archer/seed0": {"finished": True, "config": old.to_dict(), "metrics": []}}}
    assert retire_stale_cell(data, "guess_my_city/archer/seed0", new)
    assert data["cells"] == {} and data["superseded"]["guess_my_city/archer/seed0"][0]["config"] == old.to_dict()
    assert not run.exists() and (run.parent / "seed0.superseded-0" / "config.json").exists()
    # threads and the budget are not the setup: a cell with more iterations extends, not restarts
    data["cells"]["guess_my_city/archer/seed0"] = {"finished": True, "config": new.to_dict(), "metrics": []}
    longer = TrainConfig.from_dict({**new.to_dict(), "threads": 2, "iterations": 2 * new.iterations,
                                    "eval_every": 2 * new.eval_every})
    assert not retire_stale_cell(data, "guess_my_city/archer/seed0", longer)
    assert list(data["cells"]) == ["guess_my_city/archer/seed0"] and len(data["superseded"]) == 1


def test_a_cell_started_from_another_sft_actor_is_set_aside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from archer_lite.train import TrainConfig

    ckpt = tmp_path / "sft"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights v1")
    cfg = TrainConfig.from_dict({**cell_config("guess_my_city", "chai", 0, 5000).to_dict(), "init_actor": str(ckpt)})
    v1 = start_actor_digest(cfg)
    assert len(v1) == 16 and v1 == start_actor_digest(cfg)
    (ckpt / "model.safetensors").write_bytes(b"weights v2")  # the SFT actor is rebuilt
    v2 = start_actor_digest(cfg)
    assert v2 != v1 and start_actor_digest(TrainConfig.from_dict({**cfg.to_dict(), "init_actor": "scratch"})) == ""
    key = "guess_my_city/chai/seed0"
    run = Path(cfg.run_dir)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / START_ACTOR_FILE).write_text(v1 + "\n")
    data = {"cells": {key: {"finished": True, "config": cfg.to_dict(), "start_actor": v1, "metrics": []}}}
    assert not retire_stale_cell(data, key, cfg, v1)  # same config, same start: kept
    assert retire_stale_cell(data, key, cfg, v2)
    assert data["cells"] == {} and data["superseded"][key][0]["start_actor"] == v1
    assert not run.exists() and (run.parent / "seed0.superseded-0" / START_ACTOR_FILE).read_text().strip() == v1
    # a record from before digests were kept counts as the same start
    data["cells"][key] = {"finished": True, "config": cfg.to_dict(), "metrics": []}
    assert not retire_stale_cell(data, key, cfg, v2) and key in data["cells"]


def test_rebuilding_an_sft_actor_sets_aside_every_cell_that_started_from_the_old_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = {}
    for key, start in (("guess_my_city/filtered_bc/seed0", "0123456789abcdef"),  # the old actor
                       ("twenty_questions_subset/chai/seed1", None)):             # today's
        env, method, seed = key.split("/")
        cfg = cell_config(env, method, int(seed[4:]), 1000)
        cells[key] = {"finished": True, "config": cfg.to_dict(), "start_actor": start or start_actor_digest(cfg),
                      "metrics": []}
        Path(cfg.run_dir).mkdir(parents=True)
        (Path(cfg.run_dir) / "config.json").write_text(json.dumps(cfg.to_dict()))  # no digest file: an old run
    out = tmp_path / "se.json"
    out.write_text(json.dumps({"cells": cells}))
    assert retire_stale_cells(out) == ["guess_my_city/filtered_bc/seed0"]
    data = json.loads(out.read_text())
    assert list(data["cells"]) == ["twenty_questions_subset/chai/seed1"] and list(data["superseded"]) == [
        "guess_my_city/filtered_bc/seed0"]
    assert sorted(p.name for p in Path("runs/bench/guess_my_city/filtered_bc").iterdir()) == ["seed0.superseded-0"]
    assert retire_stale_cells(out) == []


def test_the_published_cells_are_current_so_resuming_the_grid_keeps_them():
    """Every finished cell in data/benchmarks/ was run with today's cell setup and shipped SFT actor:
    a setup change must move them to 'superseded' (`python -m archer_lite.bench sample-efficiency
    --retire-stale`) rather than leave stale numbers."""
    from archer_lite.bench import RESULTS_DIR, _same_setup

    data = json.loads((RESULTS_DIR / "sample_efficiency.json").read_text())
    assert len(data["cells"]) >= 15  # at least one env's full grid
    for key, cell in data["cells"].items():
        env, method, seed = key.split("/")
        cfg = cell_config(env, method, int(seed.removeprefix("seed")), 1)
        assert _same_setup(cell["config"], cfg.to_dict()), key
        assert cell["start_actor"] == start_actor_digest(cfg), key


def _add_cells(path, first, n):
    for i in range(first, first + n):
        with _locked_json(path) as data:
            data["cells"][f"cell{i}"] = {"finished": True, "metrics": "x" * 2000}  # writes take time


def test_grid_processes_sharing_the_results_file_keep_each_others_cells(tmp_path):
    import multiprocessing

    path = tmp_path / "se.json"
    procs = [multiprocessing.get_context("spawn").Process(target=_add_cells, args=(path, k * 1000, 300))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sorted(json.loads(path.read_text())["cells"]) == sorted(f"cell{k * 1000 + i}" for k in range(2)
                                                                   for i in range(300))  # 317 without the lock
    before = path.stat().st_mtime_ns
    with _locked_json(path) as data:  # read only: the file is not rewritten
        assert len(data["cells"]) == 600
    assert path.stat().st_mtime_ns == before


def test_summary_reports_trajectories_to_reach_filtered_bc_and_lower_bounds(tmp_path, capsys):
    env = "twenty_questions_subset"
    data = {"cells": {
        f"{env}/filtered_bc/seed0": _cell([(500, -9.0), (1000, -8.0)]),
        f"{env}/archer/seed0": _cell([(200, -8.5), (400, -7.5), (1000, -7.0)]),
        f"{env}/archer/seed1": _cell([(200, -9.0), (600, -8.0), (1000, -7.5)]),
        f"{env}/chai/seed0": _cell([(500, -10.0), (1000, -9.0)]),
        f"{env}/ppo/seed0": _cell([(960, -11.0), (1920, -10.0), (2880, -9.5)]),
        f"{env}/archer_lora/seed0": _cell([(300, -8.0), (1000, -6.0)]),
    }}
    summarize(data, tmp_path / "sample_efficiency.json")
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.split()}
    assert "filtered BC's best sampled return = -8.00" in table
    assert rows["archer"][1:4] == ["2", "500", "-7.25"]  # median of 400 and 600; ret@1k median
    assert rows["chai"][2:4] == [">", "1000"]  # never reached: a lower bound, not a guess
    assert rows["ppo"][1:5] == ["1", ">", "2880", "-11.00"]  # ret@1k: the evaluation nearest 1k (960)
    assert rows["archer_lora"][1:4] == ["1", "300", "-6.00"]  # a variant gets its own row
    assert (tmp_path / f"sample_efficiency_{env}.png").stat().st_size > 10_000


def test_a_cell_run_in_two_parts_records_the_time_of_both(tmp_path, monkeypatch, capsys):
    # The grid runs for hours, in parts: a cell stopped after its first checkpoint resumes there,
    # and its wall time sums every kept iteration, not just the last part's.
    monkeypatch.chdir(tmp_path)
    import archer_lite.bench as bench
    from archer_lite.train import TrainConfig

    def small_cell(*args, **kwargs):  # 2 iterations of 4 corridor trajectories, checkpoint each
        cfg = cell_config(*args, **kwargs)
        fields = {**cfg.to_dict(), "iterations": 2, "rollout_trajectories": 4, "rollout_batch": 4,
                  "eval_every": 1, "eval_episodes": 2, "checkpoint_every": 1}
        return TrainConfig.from_dict(fields)

    monkeypatch.setattr(bench, "cell_config", small_cell)
    out = tmp_path / "se.json"
    first = small_cell("corridor", "filtered_bc", 0, 1000, 1)
    fields = {**first.to_dict(), "iterations": 1}
    from archer_lite.train import train
    train(TrainConfig.from_dict(fields))  # the "interrupted" first part: 1 of 2 iterations
    # --report runs nothing and shows the cell under way as a lower bound on its budget
    report = bench.bench_sample_efficiency(["corridor"], ["filtered_bc"], [0], out=out, report=True)
    assert not out.exists() and not report["cells"]["corridor/filtered_bc/seed0"]["finished"]
    table = capsys.readouterr().out
    row = next(line.split() for line in table.splitlines() if line.startswith("filtered_bc (partial)"))
    # 1 seed; no finished filtered-BC cell, so no threshold yet; no return at 1k trajectories yet
    assert row[2:5] == ["1", "n/a", "-"] and float(row[7]) <= 0
    data = bench.bench_sample_efficiency(["corridor"], ["filtered_bc"], [0], out=out, threads=1)
    cell = data["cells"]["corridor/filtered_bc/seed0"]
    assert [r["iteration"] for r in cell["metrics"]] == [1, 2]
    assert cell["wall_seconds"] == sum(r["time_iteration_s"] for r in cell["metrics"])
    assert cell["wall_seconds"] > cell["last_part_wall_seconds"] - 1.0  # both parts counted
    assert cell["code_version"]
    assert cell["machine"]["cpu_capability"] and cell["machine"]["torch"] == torch.__version__


def test_repeat_gap_probe_reports_the_critics_view_of_repeats(tmp_path):
    from archer_lite.bench import bench_repeat_gap

    res = bench_repeat_gap("twenty_questions_subset", steps=3, trajectories=8, held_out=8,
                           out=tmp_path / "gap.json", mc_trajectories=8)
    assert res["states"] > 10  # held-out turns where the SFT actor says something new after >= 1 question
    assert 0.0 <= res["fraction_repeat_below_new"] <= 1.0
    assert abs(res["mean_gap"]) < 5.0 and res["critic_steps"] == 3
    assert json.loads((tmp_path / "gap.json").read_text())["states"] == res["states"]
    assert "mc_gap_same_turn" in res and res["mc_repeats"] >= 0


def test_mc_repeat_gap_by_hand():
    """Two turns; turn 1 repeats in one episode and is new in two: G_1 = r_1 (last turn), so the
    gap at turn 1 is -1 - mean(0, -0.5) = -0.75; turn 0 has no repeats and does not count."""
    from archer_lite.bench import mc_repeat_gap
    from archer_lite.buffer import Trajectory, Transition

    def episode(actions, rewards):
        return Trajectory([Transition("s", a, r, "s2", i == len(actions) - 1, 0, i)
                           for i, (a, r) in enumerate(zip(actions, rewards))])

    trajs = [episode(["q", "q"], [-1.0, -1.0]), episode(["q", "p"], [-1.0, 0.0]),
             episode(["q", "p"], [-1.0, -0.5])]
    assert mc_repeat_gap(trajs, gamma=0.9, min_count=1) == (-0.75, 1)
    gap, count = mc_repeat_gap(trajs, gamma=0.9, min_count=2)  # one repeat is too few
    assert math.isnan(gap) and count == 0


def test_guess_shares_by_hand():
    """Five utterances, two guesses of which one repeats, one repeated question: guess share 3/5
    ("Is it a dog?" twice, "Is it a cat?"), repeat share 2/5, half of the repeats are guesses."""
    from archer_lite.bench import guess_shares
    from archer_lite.buffer import Trajectory, Transition

    def episode(actions):
        return Trajectory([Transition("s", a, -1.0, "s2", i == len(actions) - 1, 0, i)
                           for i, a in enumerate(actions)])

    trajs = [episode(["Is it red?", "Is it a dog?", "Is it a dog?"]), episode(["Is it red?", "Is it red?"]),
             episode(["Is it a cat?"])]
    got = guess_shares(trajs, {"Is it a dog?", "Is it a cat?"})
    assert got == {"utterances": 6, "guess_share": 0.5, "repeat_share": 2 / 6,
                   "repeats_that_are_guesses": 0.5, "mean_return": -2.0}


def test_strategies_reads_the_sft_and_variant_actors_and_refuses_other_envs(tmp_path, monkeypatch):
    from archer_lite.bench import bench_strategies

    monkeypatch.chdir(tmp_path)  # no runs/bench here: only the shipped SFT actor is read
    res = bench_strategies("twenty_questions_subset", episodes=4, out=tmp_path / "s.json")
    assert list(res) == ["SFT (start)"]
    row = res["SFT (start)"]
    assert row["utterances"] >= 4 and 0.0 <= row["guess_share"] <= 1.0 and 0.0 <= row["repeat_share"] <= 1.0
    assert -20.0 <= row["mean_return"] <= 0.0
    assert json.loads((tmp_path / "s.json").read_text())["actors"] == res
    # a variant's cell is read as the paper's methods are (here: the SFT actor saved as its final actor)
    import shutil

    from archer_lite.train import sft_checkpoint_dir
    cell = Path(cell_config("twenty_questions_subset", "archer_conservative", 0, 1).run_dir)
    shutil.copytree(sft_checkpoint_dir("twenty_questions_subset"), cell / "checkpoint" / "actor")
    both = bench_strategies("twenty_questions_subset", episodes=4, out=tmp_path / "s.json")
    assert list(both) == ["SFT (start)", "archer_conservative"] and both["archer_conservative"] == row
    with pytest.raises(ValueError, match="not a TwentyQuestions env"):
        bench_strategies("guess_my_city", episodes=1, out=tmp_path / "g.json")


def test_corruptions_break_utterances_as_collapsing_actors_did():
    from archer_lite.bench import corrupt, invalid_checker

    rng = np.random.default_rng(0)
    u = "Is it on the coast?"
    loop = corrupt(u, "word_loop", rng).split()
    assert len(loop) >= 4 and len(set(loop[-3:])) == 1  # the same word at least three times at the end
    doubled = corrupt(u, "doubled_prefix", rng)
    assert doubled.endswith(u) and doubled != u and u.startswith(doubled[: len(doubled) - len(u)])
    assert corrupt(u, "truncated", rng) == "Is it"  # the first 5 // 2 words
    assert sorted(corrupt(u, "shuffled", rng).split()) == sorted(u.split())
    with pytest.raises(ValueError, match="word_loop"):
        corrupt(u, "reversed", rng)
    is_invalid = invalid_checker("guess_my_city")
    assert not is_invalid(u) and all(is_invalid(corrupt(u, k, rng)) for k in ("word_loop", "doubled_prefix"))


def test_invalid_gap_probe_reports_every_corruption(tmp_path):
    from archer_lite.bench import CORRUPTIONS, bench_invalid_gap

    res = bench_invalid_gap("guess_my_city", steps=2, trajectories=4, held_out=4, out=tmp_path / "gap.json")
    for kind in CORRUPTIONS:
        assert res[kind]["states"] > 5 and 0.0 <= res[kind]["fraction_below"] <= 1.0
        assert abs(res[kind]["mean_gap"]) < 5.0 and len(res[kind]["examples"]) == 3
    assert res["all"]["states"] == sum(res[k]["states"] for k in CORRUPTIONS)
    assert json.loads((tmp_path / "gap.json").read_text())["all"] == res["all"]


def test_cell_speed_times_the_iterations_after_the_warm_up(tmp_path, monkeypatch, capsys):
    import archer_lite.bench as bench
    from archer_lite.train import TrainConfig

    seen = []

    def small_cell(*args, **kwargs):  # corridor, 4 trajectories per iteration, warm-up of 2
        cfg = cell_config(*args, **kwargs)
        fields = {**cfg.to_dict(), "iterations": 7, "rollout_trajectories": 4, "rollout_batch": 4,
                  "eval_episodes": 2, "run_dir": str(tmp_path / "unused"),
                  "archer": {**cfg.to_dict()["archer"], "warmup_iterations": 2, "critic_steps": 2, "batch_size": 8}}
        seen.append(TrainConfig.from_dict(fields))
        return seen[-1]

    monkeypatch.setattr(bench, "cell_config", small_cell)
    rows = bench.bench_cell_speed(["corridor"], ["archer", "filtered_bc"], measured=2, threads=1,
                                  out=tmp_path / "speed.json")
    assert [(r["method"], r["trajectories_per_iteration"], r["cell_iterations"]) for r in rows] == \
        [("archer", 4, 7), ("filtered_bc", 4, 7)]
    for r in rows:
        assert r["s_per_iteration"] == pytest.approx(r["rollout_s"] + r["update_s"])
        assert r["cell_hours"] == pytest.approx(r["s_per_iteration"] * 7 / 3600)
        assert r["recorded_cpu_s_per_iteration"] is None  # no corridor cells in the grid
    assert [c.iterations for c in seen] == [4, 3]  # warm-up (2 ArCHer, 1 others) + 2 timed
    assert not (tmp_path / "unused").exists()  # scratch run dirs only
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["device"] == "cpu" and saved["measured_iterations"] == 2 and len(saved["rows"]) == 2
    assert "full cell h" in capsys.readouterr().out


@pytest.mark.parametrize("argv, threads, device", [
    (["sample-efficiency", "--report"], 0, "cpu"),  # defaults: 0 (= the cell preset's 2 threads), cpu
    (["--threads", "1", "sample-efficiency", "--report"], 1, "cpu"),
    (["sample-efficiency", "--threads", "1", "--report"], 1, "cpu"),  # after the subcommand too
    (["--threads", "2", "--device", "cpu", "sample-efficiency", "--threads", "1"], 1, "cpu"),  # after wins
])
def test_bench_takes_threads_and_device_before_or_after_the_subcommand(argv, threads, device, monkeypatch):
    import archer_lite.bench as bench

    seen = {}
    monkeypatch.setattr(bench, "bench_sample_efficiency", lambda *a, **k: seen.update(k))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.update(set_num_threads=n))
    bench.main(argv)
    assert (seen["threads"], seen["device"]) == (threads, device)
    assert seen["set_num_threads"] == (threads or len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1", "envs"], "threads must be >= 0 (got -1); 0 uses every core."),
    (["envs", "--device", "tpu"], "Unknown device 'tpu'; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'."),
])
def test_bench_refuses_a_bad_thread_count_or_device_before_running(argv, message, monkeypatch, capsys):
    import archer_lite.bench as bench

    monkeypatch.setattr(bench, "bench_envs", lambda *a: pytest.fail("ran despite bad input"))
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
