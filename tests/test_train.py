"""The training loop: seeded reproducibility, resume == uninterrupted, configs, bad input."""
import json
import shutil

import pytest
import torch

from archer_lite.train import TrainConfig, preset, read_metrics, train

TINY = {"actor": {"n_embd": 32, "n_layer": 1, "n_head": 2, "max_utterance_tokens": 4},
        "critic": {"d_model": 32, "n_layer": 1, "n_head": 2, "hidden": 32}}


def tiny_config(run_dir, algo="archer", iterations=3, eval_every=2, **kw):
    """A seconds-long run on the corridor; ``kw`` overrides fields, nested dicts merge into sections."""
    fields = {"archer": {"critic_steps": 2, "actor_steps": 1, "batch_size": 8, "warmup_iterations": 1},
              "filtered_bc": {"steps": 1, "batch_size": 8}, "ppo": {"epochs": 1, "minibatch_size": 8},
              **{k: dict(v) for k, v in TINY.items()}}
    for key, value in kw.items():
        fields[key] = {**fields[key], **value} if isinstance(value, dict) and key in fields else value
    return preset("cpu_course", env="corridor", algo=algo, init_actor="scratch", iterations=iterations,
                  rollout_trajectories=4, rollout_batch=4, eval_every=eval_every, eval_episodes=4,
                  run_dir=str(run_dir), progress=False, threads=1, **fields)


def _numbers(run_dir):
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in read_metrics(run_dir)]


@pytest.mark.parametrize("algo", ["archer", "archer_baseline", "chai", "filtered_bc", "ppo"])
def test_same_seed_same_metrics(tmp_path, algo):
    a = _numbers(train(tiny_config(tmp_path / "a", algo)))
    b = _numbers(train(tiny_config(tmp_path / "b", algo)))
    assert len(a) == 3 and a == b
    assert a[-1]["trajectories"] == 12
    assert "eval_sampled_mean_return" in a[1] and "eval_greedy_mean_return" in a[2]


def test_different_seeds_differ(tmp_path):
    a = _numbers(train(tiny_config(tmp_path / "a", seed=0)))
    b = _numbers(train(tiny_config(tmp_path / "b", seed=1)))
    assert a != b


@pytest.mark.parametrize("algo,overrides", [
    ("archer", {}), ("archer_baseline", {}), ("chai", {}), ("filtered_bc", {}),
    ("ppo", {"ppo": {"kl_coef": 0.05}}),  # the grid's PPO: its reference policy is checkpointed too
    ("archer", {"archer": {"kl_coef": 0.05, "conservative_coef": 1.0}}),
    ("filtered_bc", {"actor": {"lora": True}}),  # adapters on a scratch base: the base must be saved
], ids=["archer", "archer_baseline", "chai", "filtered_bc", "ppo_kl", "archer_kl_conservative", "lora"])
def test_resume_equals_uninterrupted(tmp_path, algo, overrides):
    """Every grid method resumes to the numbers of an uninterrupted run (grid cells resume often)."""
    full = _numbers(train(tiny_config(tmp_path / "full", algo, iterations=4, **overrides)))
    train(tiny_config(tmp_path / "part", algo, iterations=2, **overrides))
    resumed = _numbers(train(tiny_config(tmp_path / "part", algo, iterations=4, **overrides)))
    assert len(full) == 4 and resumed == full


def test_stop_inside_checkpoint_swap_resumes_from_the_new_checkpoint(tmp_path):
    # save_checkpoint writes checkpoint.tmp, deletes the old checkpoint, then renames: a run killed
    # between the two must resume from the complete tmp, not start over (and wipe its metrics).
    full = _numbers(train(tiny_config(tmp_path / "full", iterations=4)))
    run = train(tiny_config(tmp_path / "part", iterations=2))
    first_part = read_metrics(run)  # with its wall times: a restart from scratch would rewrite them
    (run / "checkpoint").rename(run / "checkpoint.tmp")  # as if killed right after the rmtree
    resumed = _numbers(train(tiny_config(tmp_path / "part", iterations=4)))
    assert resumed == full and read_metrics(run)[:2] == first_part
    assert not (run / "checkpoint.tmp").exists()


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    run = train(tiny_config(tmp_path / "r", iterations=1))
    with pytest.raises(ValueError, match="algo='archer'"):
        train(tiny_config(tmp_path / "r", algo="chai", iterations=2))
    (run / "checkpoint" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        train(tiny_config(tmp_path / "r", iterations=2))


def test_config_json_round_trip(tmp_path):
    cfg = tiny_config(tmp_path / "x")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.archer.batch_size == 8 and again.actor.n_embd == 32


def test_config_errors_name_the_fix():
    with pytest.raises(KeyError, match="Available"):
        TrainConfig(env="twenty_qs")
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig(algo="sac")
    with pytest.raises(ValueError, match="Unknown TrainConfig field"):
        TrainConfig.from_dict({"iteratons": 3})
    with pytest.raises(ValueError, match="gamma"):
        preset("cpu_course", archer={"gamma": 1.5})
    with pytest.raises(ValueError, match="actor.lora takes true or false"):
        preset("cpu_course", actor={"lora": 1})  # a bool field takes only a bool
    with pytest.raises(ValueError, match="archer.batch_size takes a whole number"):
        preset("cpu_course", archer={"batch_size": True})
    assert preset("cpu_course", archer={"tau": 1}).archer.tau == 1  # an int is a float
    with pytest.raises(ValueError, match="preset"):
        preset("gpu_huge")
    with pytest.raises(FileNotFoundError, match="sft"):
        train(TrainConfig(env="corridor", init_actor="/nonexistent/actor", progress=False))


def test_evaluation_does_not_change_training(tmp_path):
    often = _numbers(train(tiny_config(tmp_path / "a", iterations=4, eval_every=1)))
    rarely = _numbers(train(tiny_config(tmp_path / "b", iterations=4, eval_every=4)))
    train_keys = [k for k in often[0] if not k.startswith("eval_")]
    assert [{k: r[k] for k in train_keys} for r in often] == [{k: r[k] for k in train_keys} for r in rarely]
    assert often[-1]["eval_sampled_mean_return"] == rarely[-1]["eval_sampled_mean_return"]


def test_lora_applies_to_the_loaded_sft_actor(tmp_path):
    """actor.lora=true with init_actor="sft" wraps the shipped actor in adapters (it was silently
    ignored before): only LoRA weights train, the first outputs equal the SFT actor's (B = 0), and
    the adapter checkpoint loads back with the same outputs."""
    from archer_lite.actor import Actor
    from archer_lite.train import load_initial_actor, sft_checkpoint_dir

    cfg = preset("cpu_course", env="twenty_questions_subset", actor={"lora": True, "lora_r": 4})
    actor, sft = load_initial_actor(cfg), Actor.load(sft_checkpoint_dir("twenty_questions_subset"))
    trainable = [n for n, p in actor.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert actor.num_parameters(trainable_only=True) < 0.1 * actor.num_parameters()
    states, actions = ["Is it an animal? No."], ["Is it a fruit?"]
    with torch.no_grad():
        torch.testing.assert_close(actor.utterance_logprob(states, actions), sft.utterance_logprob(states, actions))
        for p in actor.model.parameters():
            if p.requires_grad:
                p.add_(0.01)  # move the adapters so the round trip is not trivially SFT
        before = actor.utterance_logprob(states, actions)
        actor.save(tmp_path / "actor")
        after = Actor.load(tmp_path / "actor").utterance_logprob(states, actions)
    torch.testing.assert_close(after, before)
    assert (before - sft.utterance_logprob(states, actions)).abs().item() > 1e-4


def test_filtered_bc_leaves_out_what_the_actor_cannot_say(tmp_path):
    # A scratch actor's "to"+"area" is decoded as "toarea", which re-encodes as [UNK]: log pi = -inf.
    # Filtered BC must clone only what the actor can say, so its loss stays finite.
    rows = read_metrics(train(tiny_config(tmp_path / "run", "filtered_bc")))
    assert all(r["unsayable_pairs"] > 0 for r in rows)  # the scratch actor does say such things
    assert all(0.0 < r["bc_loss"] < 20.0 for r in rows)  # finite: about log(vocab) per token
