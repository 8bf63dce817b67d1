"""What every registered environment must do the same way: API, bad input, seeding, registry."""
import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archer_lite.envs import ENVS, EpisodeFinishedError, env_spec, make_env
from archer_lite.envs.base import MAX_UTTERANCE_CHARS, clean_utterance, normalize_utterance
from archer_lite.envs.batched import BatchedEnv

NAMES = list(ENVS)
BAD_INPUTS = ["", "   ", "x" * 100_000, "¿Es un perro?", "日本語", None, 123, "line one\nline two",
              "\x00\x01"]


@pytest.mark.parametrize("name", NAMES)
def test_gymnasium_make_and_api(name):
    env = gymnasium.make(ENVS[name].gym_id)
    obs, info = env.reset(seed=1)
    assert isinstance(obs, str) and obs.isascii() and obs.endswith("\n")
    obs2, reward, terminated, truncated, info = env.step("hello there")
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert obs2.isascii() and info["turn"] == 1 and len(info["turns"]) == 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda b: repr(b)[:12])
def test_bad_input_costs_a_turn_and_never_crashes(name, bad):
    env = make_env(name)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(bad)
    assert info["invalid"] is True
    assert info["turns"][-1][1] == env.invalid_response
    assert info["turn"] == 1 and not terminated
    assert obs.isascii() and len(obs) < 5_000


@pytest.mark.parametrize("name", NAMES)
def test_stepping_a_finished_episode_raises(name):
    env = make_env(name)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step("nonsense words")
        done = terminated or truncated
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step("hello")


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_episode(name):
    def transcript(seed):
        env, rng = make_env(name), np.random.default_rng(seed)
        obs, info = env.reset(seed=seed)
        done, rewards = False, []
        while not done:
            obs, r, term, trunc, info = env.step(env.noisy_action(rng))
            rewards.append(r)
            done = term or trunc
        return obs, rewards
    assert transcript(7) == transcript(7)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(utterances=st.lists(st.text(max_size=400), min_size=1, max_size=25))
def test_fuzz_never_crashes(name, utterances):
    env = make_env(name)
    obs, _ = env.reset(seed=0)
    for u in utterances:
        if env.done:
            break
        obs, reward, term, trunc, info = env.step(u)
        assert np.isfinite(reward) and obs.isascii()


def test_unknown_env_name_lists_choices():
    with pytest.raises(KeyError, match="Available: twenty_questions"):
        make_env("twenty_qestions")
    assert env_spec("TwentyQuestions").name == "twenty_questions"
    assert env_spec("archer_lite/MiniShop-v0").name == "minishop"


def test_clean_and_normalize():
    assert clean_utterance("  Is it a dog?  ") == "Is it a dog?"
    assert clean_utterance("x" * (MAX_UTTERANCE_CHARS + 1)) is None
    assert clean_utterance("café") is None and clean_utterance(5) is None
    assert normalize_utterance("Is it a DOG ?") == "is it a dog"
    assert normalize_utterance("search[Red T-shirt]") == "search[red t-shirt]"


def test_batched_env_steps_only_active_envs():
    envs = BatchedEnv("corridor", n=3, n_rooms=3)
    obs, infos = envs.reset(seed=10)
    assert len(obs) == 3 and envs.active.all()
    obs, rewards, term, trunc, infos = envs.step(["go right", "wait", "go right"])
    obs, rewards, term, trunc, infos = envs.step(["go right", "go right", "wait"])
    assert list(rewards) == [0.0, -1.0, -1.0] and list(term) == [True, False, False]
    assert list(envs.active) == [False, True, True]
    obs, rewards, term, trunc, infos = envs.step(["go right", "go right", "go right"])
    assert list(rewards) == [0.0, 0.0, 0.0] and list(term) == [False, True, True]
    assert infos[0]["turn"] == 2 and infos[1]["turn"] == 3  # the finished env was not stepped
    assert envs.all_done
    with pytest.raises(ValueError, match="one action per env"):
        envs.step(["wait"])
