"""MiniShop: catalog, reward arithmetic, search, page transitions, bad input, demonstrators."""
from __future__ import annotations

import json
import re
import time

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archer_lite.envs  # noqa: F401  (registers the gymnasium ids)
from archer_lite.envs.base import EpisodeFinishedError
from archer_lite.envs.make_catalog import CATEGORIES, COLOURS, SEED, write_catalog
from archer_lite.envs.minishop import (
    MiniShop, Product, all_instructions, is_perfect_match, load_catalog, parse_action,
    parse_instruction, price_cap, purchase_reward, query_words, search,
)
from archer_lite.paths import data_path

INVALID = "Invalid action."


def _play(env: MiniShop, policy, seed: int) -> float:
    """Run one episode; return the last reward."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    reward = 0.0
    while not env.done:
        _, reward, _, _, _ = env.step(policy(rng))
    return reward


def _product(**fields) -> Product:
    base = dict(id="B999", title="red cotton slim t-shirt", category="t-shirt",
                attributes=("red", "cotton", "slim"),
                options={"size": ("S", "M", "L", "XL"), "sleeve": ("short", "long")}, price=15.99)
    base.update(fields)
    return Product(**base)


GOAL = {"category": "t-shirt", "attributes": ["red", "cotton", "slim"],
        "options": {"size": "M", "sleeve": "long"}, "price_cap": 20.0}


# ----- catalog --------------------------------------------------------------------------------
def test_catalog_shape():
    rows = [json.loads(line) for line in data_path("catalog.jsonl").read_text().splitlines()]
    assert len(rows) == 240 >= 200
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["price"] > 0 for r in rows)
    assert {r["category"] for r in rows} == set(CATEGORIES) and len(CATEGORIES) == 8
    for r in rows:
        colour, material, feature = r["attributes"]
        assert r["title"] == f"{colour} {material} {feature} {r['category']}"
        assert colour in COLOURS and r["options"] == CATEGORIES[r["category"]]["options"]
        values = [v.lower() for vals in r["options"].values() for v in vals]
        assert len(values) == len(set(values))  # click[<value>] names one option
    assert len(load_catalog()) == len(rows)


def test_catalog_regenerates_identically(tmp_path):
    path = write_catalog(tmp_path / "catalog.jsonl", seed=SEED)
    assert path.read_bytes() == data_path("catalog.jsonl").read_bytes()
    other = write_catalog(tmp_path / "other.jsonl", seed=SEED + 1)
    assert other.read_bytes() != path.read_bytes()


# ----- reward ---------------------------------------------------------------------------------
def test_purchase_reward_hand_computed():
    # goal: 3 attributes + 2 options + price => denominator 6
    right = {"size": "M", "sleeve": "long"}
    assert purchase_reward(GOAL, _product(), right) == 1.0
    assert purchase_reward(GOAL, _product(), {"size": "m", "sleeve": "LONG"}) == 1.0
    blue = _product(title="blue cotton slim t-shirt", attributes=("blue", "cotton", "slim"))
    assert purchase_reward(GOAL, blue, right) == pytest.approx(5 / 6)
    assert purchase_reward(GOAL, _product(price=24.99), right) == pytest.approx(5 / 6)
    wrong_size = {"size": "L", "sleeve": "long"}
    assert purchase_reward(GOAL, _product(), wrong_size) == pytest.approx(5 / 6)
    assert purchase_reward(GOAL, _product(), {"size": "M"}) == pytest.approx(5 / 6)
    assert purchase_reward(GOAL, _product(), {}) == pytest.approx(4 / 6)
    blue_linen_dear = _product(attributes=("blue", "linen", "slim"), price=29.99)
    assert purchase_reward(GOAL, blue_linen_dear, {"size": "S"}) == pytest.approx(1 / 6)
    hoodie = _product(category="hoodie", attributes=("red", "cotton", "zip"),
                      options={"size": ("S", "M", "L", "XL")}, price=39.99)
    # wrong type: 0.1 * (2 attributes + size M + over budget 0) / 6
    assert purchase_reward(GOAL, hoodie, {"size": "M"}) == pytest.approx(0.1 * 3 / 6)
    mug_goal = {"category": "mug", "attributes": ["red", "glass", "matte"],
                "options": {"capacity": "16oz"}, "price_cap": 10.0}
    mug = _product(category="mug", attributes=("red", "glass", "glossy"),
                   options={"capacity": ("12oz", "16oz", "20oz")}, price=9.99)
    assert purchase_reward(mug_goal, mug, {"capacity": "16oz"}) == pytest.approx(4 / 5)
    assert purchase_reward(mug_goal, mug, {}) == pytest.approx(3 / 5)


def test_reward_in_unit_interval_over_catalog():
    rng = np.random.default_rng(0)
    tasks = all_instructions()
    for product in load_catalog():
        goal = tasks[rng.integers(len(tasks))].goal
        chosen = {k: v[rng.integers(len(v))] for k, v in product.options.items()}
        assert 0.0 <= purchase_reward(goal, product, chosen) <= 1.0


def test_buying_through_the_env_scores_as_hand_computed():
    env = MiniShop()
    task_index = next(i for i, t in enumerate(all_instructions())
                      if t.goal["options"] == {"size": "M", "sleeve": "long"})
    task = all_instructions()[task_index]

    def buy(*clicks):
        env.reset(options={"instruction_index": task_index})
        env.step(f"search[{' '.join(query_words(task.goal))}]")
        env.step(f"click[{task.target_id}]")
        for value in clicks:
            env.step(f"click[{value}]")
        return env.step("click[buy now]")

    # a t-shirt goal: 3 attributes + 2 options + price => denominator 6
    _, reward, terminated, truncated, info = buy("M", "long")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["bought_id"] == task.target_id
    assert info["selected"] == {"size": "M", "sleeve": "long"}
    assert buy("L", "long")[1] == pytest.approx(5 / 6)
    assert buy("L", "M", "short", "long")[1] == 1.0  # the last click of a key counts
    assert buy("short")[1] == pytest.approx(4 / 6)
    assert buy()[1] == pytest.approx(4 / 6)


# ----- instructions and search ----------------------------------------------------------------
def test_instructions_parse_back_to_their_goal():
    tasks = all_instructions()
    assert len(tasks) == 990
    for task in tasks:
        assert parse_instruction(task.text) == task.goal
        target = next(p for p in load_catalog() if p.id == task.target_id)
        assert task.goal["price_cap"] == price_cap(target.price) >= target.price
        assert purchase_reward(task.goal, target, task.goal["options"]) == 1.0
    text = "Find a red cotton slim t-shirt, size M, sleeve long, under $20."
    assert parse_instruction(text) == GOAL
    assert parse_instruction("Find black denim wide jeans, waist 32, under $80.")["options"] == {
        "waist": "32"}
    with pytest.raises(ValueError, match="Not a MiniShop instruction"):
        parse_instruction("buy me something nice")


def test_search_finds_every_target_in_top5():
    for task in all_instructions():
        results = search(" ".join(query_words(task.goal)))
        assert len(results) == 5
        assert task.target_id in [p.id for p in results]


def test_search_ranking_is_overlap_then_id():
    results = search("red cotton slim t-shirt")
    scores = [len({"red", "cotton", "slim", "t-shirt"} & p.words) for p in results]
    keys = [(-s, p.id) for s, p in zip(scores, results)]
    assert keys == sorted(keys) and scores[0] == 4
    assert search("under $20 please") == []
    assert search("RED  Mug!!") == search("red mug")


def test_parse_action():
    assert parse_action("Click[B012]") == ("click", "b012")
    assert parse_action("search [ red  mug ]") == ("search", "red mug")
    assert parse_action("click[buy now!]") == ("click", "buy now")
    for bad in ["search[", "search[]", "click[ ]", "buy", "click B012", "[b012]"]:
        assert parse_action(bad) is None


# ----- transitions ----------------------------------------------------------------------------
def test_page_transitions():
    env = MiniShop()
    obs, info = env.reset(options={"instruction_index": 0})
    task = all_instructions()[0]
    assert obs == f"Instruction: {task.text}\nSearch page. Actions: search[<words>].\n"
    assert info["target_id"] == task.target_id and info["goal"] == task.goal
    assert info["page"] == "search" and info["valid_actions"] == ["search[...]"]

    obs, reward, *_, info = env.step("click[buy now]")  # no product page yet
    assert (info["invalid"], reward, obs.endswith(INVALID + "\n")) == (True, 0.0, True)

    _, reward, terminated, _, info = env.step(f"search[{' '.join(query_words(task.goal))}]")
    assert (info["page"], reward, terminated, info["invalid"]) == ("results", 0.0, False, False)
    shown = [a[6:-1] for a in info["valid_actions"][:-1]]
    assert len(shown) == 5 and task.target_id in shown
    assert info["valid_actions"][-1] == "click[back to search]"
    assert env.step("search[red mug]")[4]["invalid"]  # no search box on the results page
    not_shown = next(p.id for p in load_catalog() if p.id not in shown)
    assert env.step(f"click[{not_shown}]")[4]["invalid"]

    obs, *_, info = env.step(f"click[{task.target_id.lower()}]")
    product = next(p for p in load_catalog() if p.id == task.target_id)
    assert info["page"] == "product"
    assert obs.endswith(f"[{product.id}] {product.title} ${product.price:.2f}. Options: "
                        "size S, M, L, XL; sleeve short, long. Actions: click[<option>], "
                        "click[buy now], click[back to search].\n")
    assert info["valid_actions"] == ["click[S]", "click[M]", "click[L]", "click[XL]",
                                     "click[short]", "click[long]", "click[buy now]",
                                     "click[back to search]"]
    assert env.step("click[xl]")[0].endswith("Selected size XL.\n")
    assert env.step("click[12oz]")[4]["invalid"]  # a mug option, not this product's
    obs, *_, info = env.step("click[back to search]")
    assert obs.endswith("Search page. Actions: search[<words>].\n") and info["page"] == "search"
    assert len(info["turns"]) == 8 and not env.done


def test_search_without_matches_only_allows_back():
    env = MiniShop()
    env.reset(seed=0)
    obs, *_, info = env.step("search[something else entirely]")
    assert obs.endswith("Results: none. Actions: click[back to search].\n")
    assert info["valid_actions"] == ["click[back to search]"] and not info["invalid"]


def test_ten_turns_truncate_with_zero_reward():
    env = MiniShop()
    env.reset(seed=5)
    for turn in range(1, 11):
        action = "search[red mug]" if turn % 2 else "click[back to search]"
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == 0.0 and not terminated
        assert truncated == (turn == 10)
    assert info["valid_actions"] == [] and info["page"] == "done"
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step("search[red mug]")
    with pytest.raises(EpisodeFinishedError):
        env.expert_action(np.random.default_rng(0))


def test_buying_ends_the_episode():
    env = MiniShop()
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    while not env.done:
        _, reward, terminated, truncated, _ = env.step(env.expert_action(rng))
    assert (reward, terminated, truncated) == (1.0, True, False)
    with pytest.raises(EpisodeFinishedError):
        env.step("click[buy now]")


# ----- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "   ", "x" * 100_000, "caf\u00e9", "click[b\u00fcy now]", None,
                                 123, ["search[red]"], "click[nothing]", "search[", "search[]",
                                 "click[back to results]", "line\nbreak"])
def test_bad_input_is_invalid_not_a_crash(bad):
    env = MiniShop()
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step(bad)
    assert (reward, terminated, truncated, info["invalid"]) == (0.0, False, False, True)
    assert obs.endswith(INVALID + "\n") and obs.isascii() and len(obs) < 1000


def test_reset_options_errors_are_clear():
    env = MiniShop()
    with pytest.raises(ValueError, match="instruction_index"):
        env.reset(options={"instruction_index": 10_000})
    with pytest.raises(ValueError, match="Unknown target_id"):
        env.reset(options={"target_id": "B999"})
    with pytest.raises(ValueError, match="at most one"):
        env.reset(options={"colour": "red"})
    _, info = env.reset(seed=3, options={"target_id": "b017"})
    assert info["target_id"] == "B017"


_ENV = MiniShop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=40), st.none(), st.integers(),
                          st.sampled_from(["search[red cotton t-shirt]", "click[buy now]",
                                           "click[back to search]", "click[M]", "search[mug]"])),
                max_size=14), st.integers(0, 2**16))
def test_fuzz_arbitrary_actions_never_crash(actions, seed):
    obs, _ = _ENV.reset(seed=seed)
    for action in actions:
        if _ENV.done:
            obs, _ = _ENV.reset(seed=seed)
        obs, reward, terminated, truncated, info = _ENV.step(action)
        assert 0.0 <= reward <= 1.0 and obs.isascii()
        assert reward == 0.0 or terminated


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.lists(st.integers(0, 50), min_size=10, max_size=10))
def test_fuzz_random_valid_actions(seed, picks):
    obs, info = _ENV.reset(seed=seed)
    words = query_words(info["goal"])
    for pick in picks:
        if _ENV.done:
            break
        action = info["valid_actions"][pick % len(info["valid_actions"])]
        if action == "search[...]":
            action = f"search[{' '.join(words[: 1 + pick % len(words)])}]"
        obs, reward, terminated, truncated, info = _ENV.step(action)
        assert not info["invalid"] and obs.isascii() and 0.0 <= reward <= 1.0
    assert _ENV.done == (terminated or truncated)


# ----- seeding, demonstrators, registration, vocabulary ---------------------------------------
def test_same_seed_same_instruction():
    a, b = MiniShop(), MiniShop()
    firsts = [a.reset(seed=s)[1]["instruction"] for s in range(20)]
    assert firsts == [b.reset(seed=s)[1]["instruction"] for s in range(20)]
    assert len(set(firsts)) >= 15


def test_expert_beats_noisy():
    env = MiniShop()
    expert = [_play(env, env.expert_action, s) for s in range(200)]
    noisy = [_play(env, lambda rng: env.noisy_action(rng, 0.5), s) for s in range(200)]
    assert np.mean(expert) >= 0.95
    assert np.mean(noisy) <= np.mean(expert) - 0.15
    assert all(0.0 <= r <= 1.0 for r in expert + noisy)


def test_expert_is_short_and_exact_on_every_instruction():
    env = MiniShop()
    rng = np.random.default_rng(0)
    for k in range(0, len(all_instructions()), 7):
        env.reset(options={"instruction_index": k})
        while not env.done:
            _, reward, *_ = env.step(env.expert_action(rng))
        assert reward == 1.0
        assert len(env.turns) == 3 + len(all_instructions()[k].goal["options"])


def test_expert_recovers_from_a_wrong_click():
    env = MiniShop()
    _, info = env.reset(options={"instruction_index": 0})
    info = env.step(f"search[{info['goal']['category']}]")[4]  # a vague search
    goal = parse_instruction(info["instruction"])
    wrong = next(p for p in search(goal["category"]) if not is_perfect_match(goal, p))
    env.step(f"click[{wrong.id}]")
    rng = np.random.default_rng(0)
    actions = []
    while not env.done:
        actions.append(env.expert_action(rng))
        _, reward, *_ = env.step(actions[-1])
    assert reward == 1.0 and actions[0] == "click[back to search]"


def test_gymnasium_make():
    env = gymnasium.make("archer_lite/MiniShop-v0")
    obs, info = env.reset(seed=0)
    assert obs.startswith("Instruction: Find ") and "target_id" in info
    assert isinstance(env.unwrapped, MiniShop)
    obs, reward, terminated, truncated, _ = env.step("search[red]")
    assert "Results: " in obs and reward == 0.0 and not (terminated or truncated)


def _words(text: str) -> set[str]:
    """A word-level tokenizer's view: words (t-shirt, $15.99, 12oz) and single punctuation."""
    return set(re.findall(r"[\w$-]+(?:\.\d+)?|\S", text))


def test_corpus_covers_every_word_the_env_shows():
    env = MiniShop()
    corpus = env.corpus()
    vocab = set().union(*map(_words, corpus))
    assert len(corpus) > 1000 and all(t.isascii() for t in corpus)
    assert {"t-shirt", "$15.99", "12oz", "over-ear", "[", "]", "B017"} <= vocab
    rng = np.random.default_rng(0)
    for seed in range(100):
        env.reset(seed=seed)
        while not env.done:
            env.step(env.noisy_action(rng, 0.7))
        shown = [env.observation().split("\n", 2)[0]] + [r for _, r in env.turns]
        for text in shown + [u for u, _ in env.turns]:  # env texts and demonstrator actions
            assert _words(text) <= vocab, text


def test_step_is_fast():
    env = MiniShop()
    env.reset(seed=0)
    actions = ["search[red cotton slim t-shirt]", "click[back to search]"]
    start, n = time.perf_counter(), 0
    while n < 5000:
        if env.done:
            env.reset()
        env.step(actions[n % 2])
        n += 1
    assert n / (time.perf_counter() - start) >= 5000  # steps per second (measured: ~60k)
