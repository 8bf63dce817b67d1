"""Shipped demonstrations are reproducible by `python -m archer_lite.data` and replay exactly."""
import json

import pytest

from archer_lite.algorithms.sft import demo_pairs
from archer_lite.data import DEMO_EPISODES, demo_episodes, load_demos
from archer_lite.envs import ENVS, make_env
from archer_lite.paths import DATA_DIR


@pytest.mark.parametrize("name", list(ENVS))
def test_shipped_demos_regenerate_identically(name):
    shipped = load_demos(name)
    assert len(shipped) == DEMO_EPISODES[name]
    again = list(demo_episodes(name, 5))
    assert [json.loads(json.dumps(r)) for r in again] == shipped[:5]


@pytest.mark.parametrize("name", list(ENVS))
def test_demo_returns_are_the_sum_of_rewards_and_replay(name):
    records = load_demos(name)[:20]
    env = make_env(name)
    for record in records:
        assert record["return"] == pytest.approx(sum(record["rewards"]))
        env.reset(seed=record["seed"])
        rewards = [env.step(u)[1] for u, _ in record["turns"]]
        assert rewards == record["rewards"]


def test_demo_pairs_states_are_env_observations():
    pairs = demo_pairs("twenty_questions_subset", max_demos=3)
    record = load_demos("twenty_questions_subset")[0]
    assert pairs[0] == (record["first_observation"], record["turns"][0][0])
    u, r = record["turns"][0]
    assert pairs[1][0] == record["first_observation"] + f"{u}\n{r}\n"


def test_missing_demo_file_says_how_to_rebuild(monkeypatch, tmp_path):
    import archer_lite.data as data

    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m archer_lite.data"):
        data.load_demos("corridor")
