"""The command line: a tiny run end to end, and bad input gives one clear error."""
import json

import pytest

from archer_lite.__main__ import main


def test_train_cli_writes_a_run(tmp_path):
    run = tmp_path / "run"
    main(["train", "--env", "corridor", "--iterations", "1", "--run-dir", str(run),
          "--set", "init_actor=scratch", "--set", "rollout_trajectories=4", "--set", "eval_episodes=4",
          "--set", "archer.critic_steps=1", "--set", "archer.batch_size=8", "--set", "progress=false", "--set", "threads=1",
          "--set", "actor.n_embd=32", "--set", "actor.n_head=2", "--set", "critic.d_model=32",
          "--set", "critic.n_head=2"])
    config = json.loads((run / "config.json").read_text())
    assert config["archer"]["critic_steps"] == 1 and config["actor"]["n_embd"] == 32
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["trajectories"] == 4


def test_sft_cli_builds_a_recipe_elsewhere_and_leaves_the_shipped_actor(tmp_path):
    from archer_lite.paths import sft_checkpoint_dir

    shipped = (sft_checkpoint_dir("corridor") / "model.safetensors").read_bytes()
    out = tmp_path / "corridor_sft"
    main(["sft", "--env", "corridor", "--epochs", "1", "--eval-episodes", "4", "--out", str(out),
          "--set", "actor.n_embd=32", "--set", "actor.n_head=2", "--set", "sft.length_window=4",
          "--set", "sft.lr=5e-4"])
    report = json.loads((out / "eval.json").read_text())
    assert report["actor"] == {"n_layer": 2, "n_embd": 32, "n_head": 2} and report["lr"] == 5e-4
    assert report["eval_episodes"] == 4 and (out / "model.safetensors").exists()
    assert report["machine"]["cpu_capability"]  # what bit-exact rebuilding depends on (README)
    assert (sft_checkpoint_dir("corridor") / "model.safetensors").read_bytes() == shipped


def test_sft_cli_runs_dagger_from_a_saved_actor_without_cloning_again(tmp_path):
    from archer_lite.paths import sft_checkpoint_dir

    shipped = sft_checkpoint_dir("corridor")
    weights = (shipped / "model.safetensors").read_bytes()
    out = tmp_path / "corridor_dagger"
    main(["sft", "--env", "corridor", "--init", str(shipped), "--out", str(out), "--eval-episodes", "4",
          "--set", "sft.dagger_rounds=1", "--set", "sft.dagger_episodes=3"])
    report = json.loads((out / "eval.json").read_text())
    assert report["init"] == str(shipped) and report["final_loss"] is None  # no behaviour cloning
    assert report["epochs"] == 0 and report["unlikelihood"] == 0.0  # corridor's recipe: no L_UL
    assert [r["round"] for r in report["dagger"]] == [0] and report["dagger"][0]["labelled_states"] >= 3
    assert (out / "model.safetensors").read_bytes() != weights  # DAgger trained it
    assert (shipped / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("args, message", [
    (["train", "--env", "corridor", "--set", "archer.gama=1"], "Unknown ArcherConfig field(s): gama"),
    (["train", "--env", "corridor", "--set", "archer.tau=0"], "tau must be in"),
    (["train", "--env", "corridor", "--set", "nokeyvalue"], "key=value"),
    (["eval", "--env", "corridor", "--actor", "/nonexistent"], "No actor checkpoint"),
    (["train", "--env", "corridor", "--device", "gpu"], "Unknown device 'gpu'; use 'cpu', 'cuda'"),
    (["eval", "--env", "corridor", "--device", "tpu"], "Unknown device 'tpu'"),
    (["sft", "--env", "corridor", "--device", "gpu0"], "Unknown device 'gpu0'"),
    (["sft", "--env", "corridor", "--set", "actor.n_layr=4"], "Unknown ActorConfig field(s): n_layr"),
    (["sft", "--env", "corridor", "--set", "sft.window=4"], "Unknown SFTConfig field(s): window"),
    (["sft", "--env", "corridor", "--set", "epochs=4"], "sft --set takes actor.<field>=value"),
    (["sft", "--env", "corridor", "detective", "--out", "/tmp/x"], "give one --env"),
    (["sft", "--env", "corridor", "--init", "data/checkpoints/corridor"], "sft.dagger_rounds=N"),
    (["train", "--env", "corridor", "--set", "actor.lora=maybe"], "actor.lora takes true or false (got 'maybe')"),
    (["train", "--env", "corridor", "--set", "archer.actor_lr=1e-4x"], "archer.actor_lr takes a number"),
    (["train", "--env", "corridor", "--set", "eval_episodes=6.5"], "eval_episodes takes a whole number"),
    (["train", "--env", "corridor", "--algo", "ppo", "--set", "ppo.kl_coef=x"], "ppo.kl_coef takes a number"),
    (["train", "--env", "corridor", "--algo", "ppo", "--set", "ppo.klcoef=0.1"], "Unknown PPOConfig field(s): klcoef"),
    (["sft", "--env", "corridor", "--set", "sft.epochs=two"], "sft.epochs takes a whole number"),
    (["train", "--env", "corridor", "--set", "env=detective"], "--env corridor and --set env=detective disagree"),
    (["train", "--seed", "1", "--set", "seed=2"], "--seed 1 and --set seed=2 disagree"),
    (["train", "--set", "env=nowhere"], "Unknown environment 'nowhere'"),
])
def test_bad_input_exits_with_one_clear_message(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    captured = capsys.readouterr()
    assert message in captured.err + captured.out


def test_set_keeps_text_that_reads_as_a_number_for_text_fields():
    from archer_lite.__main__ import _overrides
    from archer_lite.actor import ActorConfig
    from archer_lite.algorithms.sft import SFTConfig
    from archer_lite.train import TrainConfig, preset

    got = _overrides(["run_dir=2024", "init_actor=\"7\"", "actor.model=123", "archer.actor_lr=1e-4",
                      "progress=false", "archer.gama=1", "critic.encoder=null"], TrainConfig)
    assert got == {"run_dir": "2024", "init_actor": "7", "actor": {"model": "123"},
                   "archer": {"actor_lr": 1e-4, "gama": 1}, "progress": False,
                   "critic": {"encoder": "null"}}
    assert _overrides(["run_dir=2024"]) == {"run_dir": 2024}  # without a config: JSON as before
    assert preset("cpu_course", **_overrides(["run_dir=2024"], TrainConfig)).run_dir == "2024"
    sft = _overrides(["actor.tokenizer=42", "sft.lr=5e-4"], {"actor": ActorConfig, "sft": SFTConfig})
    assert sft == {"actor": {"tokenizer": "42"}, "sft": {"lr": 5e-4}}


def test_set_may_give_what_a_flag_gives(tmp_path):
    run = tmp_path / "2024"
    main(["train", "--iterations", "0", "--set", "env=corridor", "--set", "seed=2", "--set", f"run_dir={run}",
          "--set", "algo=filtered_bc", "--set", "progress=false"])
    config = json.loads((run / "config.json").read_text())
    assert (config["env"], config["seed"], config["algo"], config["run_dir"]) == ("corridor", 2, "filtered_bc", str(run))
