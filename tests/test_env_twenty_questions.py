"""Twenty Questions: the object table, the oracle, rewards, seeding and the demonstrators."""
import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archer_lite.envs  # noqa: F401  (registers the gymnasium ids)
from archer_lite.envs import EpisodeFinishedError, make_env
from archer_lite.envs.base import normalize_utterance
from archer_lite.envs.twenty_questions import (ATTRIBUTE_QUESTIONS, CORRECT, INTRO, INVALID, NO,
                                               SUBSET_OBJECTS, YES, TwentyQuestions, guess_question,
                                               load_objects, question_parser)

TABLE = load_objects()


def play(env, policy, seed, rng):
    """One episode; returns (return, success, turns)."""
    env.reset(seed=seed)
    done, total = False, 0.0
    while not done:
        action = env.expert_action(rng) if policy == "expert" else env.noisy_action(rng)
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
    return total, info["success"], info["turns"]


# ----- the table ---------------------------------------------------------------------------------
def test_table_size_and_distinct_objects():
    n_objects, n_attributes = TABLE.values.shape
    assert (n_objects, len(set(TABLE.categories)), n_attributes) == (140, 15, 40)  # as documented
    assert n_objects == len(TABLE.names) >= 100
    assert len(set(TABLE.categories)) >= 12
    assert 20 <= n_attributes <= 40 and n_attributes == len(TABLE.attributes)
    # No two objects share a full attribute vector, so questions alone can identify every object.
    assert len({tuple(row) for row in TABLE.values}) == n_objects
    assert set(SUBSET_OBJECTS) <= set(TABLE.names)
    # Every attribute splits the table (none is always yes or always no).
    assert (TABLE.values.sum(axis=0) > 0).all() and (TABLE.values.sum(axis=0) < n_objects).all()
    assert not TABLE.values.flags.writeable


def test_table_is_cached():
    assert load_objects() is TABLE
    assert TwentyQuestions().table is TwentyQuestions(subset=True).table


def test_names_and_aliases_are_unique_and_lookup_works():
    names = [normalize_utterance(n) for name, aliases in zip(TABLE.names, TABLE.aliases)
             for n in (name, *aliases)]
    assert len(names) == len(set(names))
    assert TABLE.index("Trousers") == TABLE.index("pants")
    assert TABLE.index("soccer ball") == TABLE.index("football")
    with pytest.raises(KeyError, match="not an object"):
        TABLE.index("unicorn")


@pytest.mark.parametrize("name, true, false", [
    ("dog", ["is_animal", "is_mammal", "has_legs"], ["can_fly", "is_edible", "lives_in_water"]),
    ("banana", ["is_edible", "is_fruit", "is_sweet", "is_yellow", "fits_in_hand"],
     ["is_animal", "is_round", "is_vegetable"]),
    ("truck", ["is_vehicle", "has_wheels", "has_motor", "bigger_than_car", "made_of_metal"],
     ["can_fly", "is_edible", "fits_in_hand"]),
    ("pants", ["is_clothing", "made_of_fabric"], ["needs_electricity", "is_animal"]),
    ("computer", ["needs_electricity", "has_screen"], ["is_animal", "has_wheels"]),
    ("piano", ["is_musical_instrument", "has_strings", "bigger_than_person"],
     ["played_by_blowing", "fits_in_hand"]),
    ("chair", ["is_furniture", "has_legs", "for_sitting"], ["is_animal", "has_wheels"]),
    ("pen", ["is_stationery", "fits_in_hand", "is_long_and_thin"], ["is_sharp", "is_edible"]),
    ("scissors", ["is_sharp", "made_of_metal", "is_tool"], ["needs_electricity", "is_round"]),
    ("football", ["used_for_sports", "is_round", "usually_outdoors"], ["is_edible", "has_legs"]),
    ("eagle", ["is_bird", "can_fly"], ["is_mammal", "lives_in_water"]),
    ("whale", ["is_mammal", "lives_in_water", "bigger_than_car"], ["has_legs", "can_fly"]),
    ("washing machine", ["needs_electricity", "has_motor"], ["is_kitchenware", "fits_in_hand"]),
])
def test_common_sense_facts(name, true, false):
    row = TABLE.row(name)
    assert all(row[a] for a in true), [a for a in true if not row[a]]
    assert not any(row[a] for a in false), [a for a in false if row[a]]


# ----- the oracle --------------------------------------------------------------------------------
def test_phrasings_are_many_distinct_and_never_names():
    parser = question_parser()
    phrasing_keys = [normalize_utterance(q) for qs in ATTRIBUTE_QUESTIONS.values() for q in qs]
    assert len(phrasing_keys) == len(set(phrasing_keys))  # each phrasing means one attribute
    assert all(len(qs) >= 3 and all(q.endswith("?") and q[0].isupper() for q in qs)
               for qs in ATTRIBUTE_QUESTIONS.values())
    guess_keys = {k for k, (kind, _) in parser.items() if kind == "guess"}
    assert guess_keys.isdisjoint(phrasing_keys)
    assert len(parser) == len(phrasing_keys) + len(guess_keys)


@pytest.mark.parametrize("target", ["dog", "banana", "truck", "scissors", "tennis racket"])
def test_every_phrasing_answers_from_the_table(target):
    env = TwentyQuestions(max_turns=1000)
    env.reset(seed=0, options={"target": target})
    row = TABLE.row(target)
    for attribute, phrasings in ATTRIBUTE_QUESTIONS.items():
        expected = YES if row[attribute] else NO
        for question in phrasings:
            for variant in (question, question.lower(), question.upper().rstrip("?") + " ?"):
                _, reward, terminated, truncated, info = env.step(variant)
                assert info["turns"][-1] == (variant.strip(), expected), (variant, attribute)
                assert (reward, terminated, info["invalid"]) == (-1.0, False, False)


def test_transcript_and_return_of_a_short_game():
    env = TwentyQuestions()
    obs, info = env.reset(seed=0, options={"target": "dog"})
    assert obs == INTRO == "Guess the object. Ask yes or no questions.\n"
    assert info["target"] == "dog" and "dog" not in obs
    steps = [env.step(q) for q in
             ["Is it an animal?", "Can it fly?", "Is it a cat?", "Is it a cow?", "Is it the dog?"]]
    rewards = [s[1] for s in steps]
    assert rewards == [-1.0, -1.0, -1.0, -1.0, 0.0] and sum(rewards) == -4.0
    obs, _, terminated, truncated, info = steps[-1]
    assert obs == (INTRO + "Is it an animal?\nYes.\nCan it fly?\nNo.\nIs it a cat?\n"
                   "Invalid question.\nIs it a cow?\nNo.\nIs it the dog?\nYes! You guessed it.\n")
    assert (terminated, truncated, info["success"]) == (True, False, True)
    assert [s[4]["success"] for s in steps[:-1]] == [False] * 4
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step("Is it a dog?")


def test_every_object_and_alias_can_be_guessed():
    env = TwentyQuestions()
    for name, aliases in zip(TABLE.names, TABLE.aliases):
        for said in (name, *aliases):
            for guess in (guess_question(said), f"Is it a {said}?", f"is it {said.upper()}"):
                env.reset(seed=0, options={"target": name})
                _, reward, terminated, truncated, info = env.step(guess)
                assert info["turns"][-1][1] == CORRECT, (name, guess)
                assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, True)


def test_multi_word_names_and_wrong_guesses():
    env = TwentyQuestions()
    env.reset(seed=0, options={"target": "washing machine"})
    assert env.step("Is it a tennis racket?")[1:3] == (-1.0, False)
    assert env.turns[-1] == ("Is it a tennis racket?", NO)
    assert env.step("Is it a washing machine?")[1:3] == (0.0, True)
    assert guess_question("apple") == "Is it an apple?"
    assert guess_question("pants") == "Is it pants?"
    assert guess_question("cactus") == "Is it a cactus?"


def test_twenty_turns_truncate_with_return_minus_twenty():
    env = TwentyQuestions()
    env.reset(seed=3)
    results = [env.step("Is it an animal?") for _ in range(20)]
    assert sum(r[1] for r in results) == -20.0
    assert [r[3] for r in results] == [False] * 19 + [True]
    assert not any(r[2] for r in results)
    with pytest.raises(EpisodeFinishedError):
        env.step("Is it a dog?")
    short = TwentyQuestions(max_turns=3)
    short.reset(seed=0)
    assert [short.step("hello")[3] for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize("bad", ["", "x" * 100_000, "¿Es un perro?", "asdf", None, 123,
                                 "Is it a unicorn?", "Is it a dog? Is it a cat?"],
                         ids=lambda b: repr(b)[:14])
def test_bad_input_is_an_invalid_question(bad):
    env = TwentyQuestions()
    env.reset(seed=0, options={"target": "dog"})
    obs, reward, terminated, truncated, info = env.step(bad)
    assert info["turns"][-1][1] == INVALID and info["invalid"] is True
    assert (reward, terminated, truncated, info["success"]) == (-1.0, False, False, False)
    assert obs.isascii() and len(obs) < 1_000


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_fuzz_one_utterance(text):
    env = TwentyQuestions()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(text)
    assert obs.isascii() and reward in (-1.0, 0.0)
    assert info["turns"][-1][1] in (YES, NO, CORRECT, INVALID)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(), max_size=30))
def test_fuzz_sequences(texts):
    env = TwentyQuestions(subset=True)
    env.reset(seed=1)
    for text in texts:
        if env.done:
            break
        obs, reward, terminated, truncated, info = env.step(text)
        assert obs.isascii() and obs.startswith(INTRO) and reward in (-1.0, 0.0)
    assert len(env.turns) <= env.max_turns


# ----- targets and seeding -----------------------------------------------------------------------
def test_same_seed_same_target_and_transcript():
    def transcript(seed):
        return play(TwentyQuestions(), "noisy", seed, np.random.default_rng(seed))
    assert transcript(11) == transcript(11)
    targets = [TwentyQuestions().reset(seed=s)[1]["target"] for s in range(200)]
    assert targets == [TwentyQuestions().reset(seed=s)[1]["target"] for s in range(200)]
    assert len(set(targets)) >= 60  # 140 objects drawn uniformly: ~106 distinct expected


def test_subset_draws_only_its_ten_objects():
    env = TwentyQuestions(subset=True)
    targets = {env.reset(seed=s)[1]["target"] for s in range(100)}
    assert targets == set(SUBSET_OBJECTS) == set(env.object_names)
    env.reset(seed=0, options={"target": "dog"})
    assert env.step("Is it an elephant?")[0].endswith("Is it an elephant?\nNo.\n")  # known, wrong


def test_forced_targets_and_unknown_names():
    env = TwentyQuestions()
    assert env.reset(options={"target": "Trousers"})[1]["target"] == "pants"
    with pytest.raises(ValueError, match="object_names"):
        env.reset(options={"target": "unicorn"})
    with pytest.raises(ValueError, match="subset=True"):
        TwentyQuestions(subset=True).reset(options={"target": "elephant"})


# ----- demonstrators -----------------------------------------------------------------------------
def test_expert_first_question_on_the_subset_is_the_balanced_split():
    # Of the 10 subset objects, "has legs" splits 4/6 (dog, pants, piano, chair); every other
    # attribute splits at most 3/7, so the expert asks it whatever the rng.
    env = TwentyQuestions(subset=True)
    env.reset(seed=0, options={"target": "pen"})
    firsts = {env.expert_action(np.random.default_rng(s)) for s in range(20)}
    assert firsts == {"Does it have legs?"}


def test_expert_uses_only_the_transcript():
    env = TwentyQuestions(subset=True)
    env.reset(seed=0, options={"target": "dog"})
    env.step("Is it an animal?")
    mask, asked = env.consistent_candidates()
    assert [n for n, m in zip(env.object_names, mask) if m] == ["dog"]
    assert asked == {TABLE.attributes.index("is_animal")}
    assert env.expert_action(np.random.default_rng(0)) == "Is it a dog?"
    # Same transcript, different hidden target: the same action.
    env.reset(seed=0, options={"target": "banana"})
    env.turns = [("Is it an animal?", YES)]
    assert env.expert_action(np.random.default_rng(0)) == "Is it a dog?"


def test_expert_never_repeats_an_attribute_and_always_wins():
    env, rng = TwentyQuestions(), np.random.default_rng(0)
    for seed in range(30):
        _, success, turns = play(env, "expert", seed, rng)
        keys = [question_parser()[normalize_utterance(u)] for u, _ in turns]
        asked = [k for k in keys if k[0] == "attribute"]
        assert success and len(asked) == len(set(asked))


def test_expert_and_noisy_returns():
    def mean_return(env, policy, n=200):
        rng = np.random.default_rng(0)
        results = [play(env, policy, seed, rng) for seed in range(n)]
        return np.mean([r[0] for r in results]), np.mean([r[1] for r in results])

    full, subset = TwentyQuestions(), TwentyQuestions(subset=True)
    expert_full, success_full = mean_return(full, "expert")
    expert_subset, success_subset = mean_return(subset, "expert")
    noisy_full, _ = mean_return(full, "noisy")
    noisy_subset, _ = mean_return(subset, "noisy")
    assert expert_full > -10 and success_full >= 0.95       # measured: about -7.6, always wins
    assert expert_subset >= -5 and success_subset == 1.0    # measured: about -3.4
    assert noisy_full <= expert_full - 1                    # measured: about -13.6
    assert noisy_subset <= expert_subset - 1                # measured: about -6.1


def test_noisy_action_extremes():
    env, rng = TwentyQuestions(), np.random.default_rng(0)
    env.reset(seed=0)
    parser = question_parser()
    actions = [env.noisy_action(rng, noise=1.0) for _ in range(500)]
    kinds = [parser[normalize_utterance(a)][0] for a in actions]
    assert 0.1 < kinds.count("guess") / len(kinds) < 0.3  # 20% random guesses
    canonical = {qs[0] for qs in ATTRIBUTE_QUESTIONS.values()}
    assert {a for a, k in zip(actions, kinds) if k == "attribute"} <= canonical
    assert env.noisy_action(np.random.default_rng(1), noise=0.0) == \
        env.expert_action(np.random.default_rng(1))


# ----- corpus and registry -----------------------------------------------------------------------
def test_corpus_covers_every_question_guess_and_response():
    corpus = TwentyQuestions(subset=True).corpus()
    assert corpus == TwentyQuestions().corpus()  # one tokenizer for both variants
    assert {INTRO, YES, NO, CORRECT, INVALID} <= set(corpus)
    assert {"Is it an animal?", "Is it a tennis racket?", "Is it a washing machine?",
            "Is it trousers?", "Is it an apple?"} <= set(corpus)
    assert all(s.isascii() for s in corpus)
    parser = question_parser()
    parsed = [s for s in corpus if normalize_utterance(s) in parser]
    assert len(parsed) == len(corpus) - 5
    assert len({parser[normalize_utterance(s)] for s in parsed if s.startswith("Is it")}) > 150


def test_gymnasium_make_and_registry():
    env = gymnasium.make("archer_lite/TwentyQuestions-v0")
    obs, info = env.reset(seed=0)
    assert obs == INTRO and info["target"] in TABLE.names
    assert env.step("Is it an animal?")[0].startswith(INTRO + "Is it an animal?\n")
    subset = gymnasium.make("archer_lite/TwentyQuestionsSubset-v0")
    assert subset.reset(seed=0)[1]["target"] in SUBSET_OBJECTS
    assert make_env("twenty_questions_subset").subset is True


def test_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env
    try:
        check_env(TwentyQuestions(), skip_render_check=True)
    except (AssertionError, TypeError, ValueError) as err:  # Text spaces may not pass the checker
        pytest.skip(f"gymnasium's env checker does not support this Text env: {err}")
