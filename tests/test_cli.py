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


@pytest.mark.parametrize("args, message", [
    (["train", "--env", "corridor", "--set", "archer.gama=1"], "Unknown ArcherConfig field(s): gama"),
    (["train", "--env", "corridor", "--set", "archer.tau=0"], "tau must be in"),
    (["train", "--env", "corridor", "--set", "nokeyvalue"], "key=value"),
    (["eval", "--env", "corridor", "--actor", "/nonexistent"], "No actor checkpoint"),
])
def test_bad_input_exits_with_one_clear_message(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
