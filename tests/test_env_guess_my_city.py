"""Guess My City: the table, every phrasing's answer, the leak guard, strict vs lenient guessing,
bad input, seeding and the demonstrators' returns."""
import re

import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archer_lite.envs  # noqa: F401  (registers the gymnasium ids)
from archer_lite.envs import EpisodeFinishedError, make_env
from archer_lite.envs.guess_my_city import (CORRECT_RESPONSE, GUESSES, INTRO, INVALID_RESPONSE,
                                            LEAK_FALLBACK, PLACE_CHECKS, QUESTIONS, GuessMyCity,
                                            guard_response, leak_names, load_cities,
                                            parse_utterance)

CITIES = load_cities()
NAMES = [c.name for c in CITIES]


def play(env, target, utterances):
    """Reset to ``target``, say each utterance; return the list of (response, reward, done)."""
    env.reset(seed=0, options={"target": target})
    out = []
    for u in utterances:
        _, reward, terminated, truncated, info = env.step(u)
        out.append((info["turns"][-1][1], reward, terminated or truncated))
    return out


def leaks(text, city_name):
    return any(re.search(rf"\b{re.escape(n)}\b", text, re.IGNORECASE) for n in leak_names(city_name))


# ----- the table ------------------------------------------------------------------------------
def test_table_size_spread_and_values():
    assert len(CITIES) == 78 and len(set(NAMES)) == 78
    continents = {c.continent for c in CITIES}
    assert continents == {"Europe", "Asia", "Africa", "North America", "South America", "Oceania"}
    per_continent = {k: sum(c.continent == k for c in CITIES) for k in continents}
    assert min(per_continent.values()) >= 8
    assert {c.climate for c in CITIES} == {"tropical", "arid", "temperate", "continental",
                                           "mediterranean", "cold"}
    assert {c.population for c in CITIES} == {"under 1 million", "1 to 5 million",
                                              "5 to 10 million", "over 10 million"}
    assert {c.hemisphere for c in CITIES} == {"northern", "southern"}
    countries = [c.country for c in CITIES]
    assert sum(countries.count(k) >= 2 for k in set(countries)) >= 15  # questions must matter
    assert all(c.isascii() for row in CITIES for c in str(row))


def test_landmarks_are_unique_and_never_name_their_city():
    assert len({c.landmark for c in CITIES}) == len(CITIES)
    for city in CITIES:
        assert not leaks(city.landmark, city.name), city
        assert not leaks(city.food, city.name), city


def test_paris_row():
    paris = next(c for c in CITIES if c.name == "Paris")
    assert (paris.country, paris.continent, paris.language, paris.on_coast, paris.is_capital,
            paris.climate, paris.population) == ("France", "Europe", "French", False, True,
                                                 "temperate", "over 10 million")


# ----- the oracle's answers ----------------------------------------------------------------------
EXPECTED = {
    "Paris": {"continent": "It is in Europe.", "country": "It is in France.",
              "language": "People speak French.", "coast": "No, it is not on the coast.",
              "capital": "Yes, it is a capital.", "climate": "The climate is temperate.",
              "population": "It has over 10 million people.",
              "landmark": "It is known for the Eiffel Tower.",
              "hemisphere": "It is in the northern hemisphere.",
              "food": "A famous food there is croissants."},
    "Sydney": {"continent": "It is in Oceania.", "country": "It is in Australia.",
               "language": "People speak English.", "coast": "Yes, it is on the coast.",
               "capital": "No, it is not a capital.", "climate": "The climate is temperate.",
               "population": "It has 5 to 10 million people.",
               "landmark": "It is known for the Opera House.",
               "hemisphere": "It is in the southern hemisphere.",
               "food": "A famous food there is meat pies."},
    "Cairo": {"continent": "It is in Africa.", "country": "It is in Egypt.",
              "language": "People speak Arabic.", "coast": "No, it is not on the coast.",
              "capital": "Yes, it is a capital.", "climate": "The climate is arid.",
              "population": "It has over 10 million people.",
              "landmark": "It is known for the Pyramids of Giza.",
              "hemisphere": "It is in the northern hemisphere.",
              "food": "A famous food there is koshari."},
}


@pytest.mark.parametrize("target", sorted(EXPECTED))
def test_every_phrasing_gets_the_templated_answer(target):
    env = GuessMyCity(max_turns=1_000)
    assert set(EXPECTED[target]) == set(QUESTIONS)
    env.reset(seed=0, options={"target": target})
    for kind, phrasings in QUESTIONS.items():
        assert len(phrasings) >= 3
        for text in phrasings:
            for variant in (text, text.lower().rstrip("?"), "  " + text.upper() + " "):
                _, reward, terminated, _, info = env.step(variant)
                assert info["turns"][-1][1] == EXPECTED[target][kind], variant
                assert reward == -1.0 and not terminated and info["invalid"] is False


def test_place_checks_answer_yes_and_no():
    env = GuessMyCity(max_turns=100)
    said = play(env, "Paris", [t.format(place=p) for t in PLACE_CHECKS
                               for p in ("Europe", "France", "Asia", "Italy")])
    assert [r for r, _, _ in said] == ["Yes.", "Yes.", "No.", "No."] * 3
    said = play(env, "New York", ["Is it in the United States?", "is it in united states",
                                  "Is it located in North America?", "Is it in Canada?"])
    assert [r for r, _, _ in said] == ["Yes.", "Yes.", "Yes.", "No."]
    # every continent and country is checkable
    for city in CITIES:
        assert parse_utterance(f"Is it in {city.continent}?") == ("in_continent", city.continent)
        assert parse_utterance(f"Is it in {city.country}?") == ("in_country", city.country)


# ----- guessing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", GUESSES)
def test_every_city_is_guessable(template):
    env = GuessMyCity()
    for name in NAMES:
        env.reset(seed=0, options={"target": name})
        _, reward, terminated, truncated, info = env.step(template.format(city=name))
        assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, True), name
        assert info["turns"][-1][1] == CORRECT_RESPONSE


def test_wrong_guess_costs_one_and_names_the_guess():
    said = play(GuessMyCity(), "Paris", ["Is it London?", "Is the city Tokyo?",
                                         "Is it the city of Paris?"])
    assert said == [("No, it is not London.", -1.0, False), ("No, it is not Tokyo.", -1.0, False),
                    (CORRECT_RESPONSE, 0.0, True)]


def test_strict_guess_only_counts_an_exact_guess():
    env = GuessMyCity(strict_guess=True)
    assert play(env, "Paris", ["Is it Paris or London or Tokyo?", "Paris", "Is it in Paris?"]) == \
        [(INVALID_RESPONSE, -1.0, False)] * 3


def test_lenient_guess_rewards_any_mention_reward_hacking():
    env = GuessMyCity(strict_guess=False)
    for text in ["Is it Paris or London or Tokyo?", "paris", "I love PARIS!"]:
        assert play(env, "Paris", [text]) == [(CORRECT_RESPONSE, 0.0, True)]
    # word boundaries: "Parisian" does not mention Paris; other cities do not win
    assert play(env, "Paris", ["Parisian food?", "Is it London or Tokyo?"]) == \
        [(INVALID_RESPONSE, -1.0, False)] * 2
    assert play(env, "Paris", ["Is it London?"]) == [("No, it is not London.", -1.0, False)]
    assert play(env, "Mexico City", ["Is it in Mexico?", "Mexico City, maybe?"]) == \
        [("Yes.", -1.0, False), (CORRECT_RESPONSE, 0.0, True)]


# ----- the name-leak guard -------------------------------------------------------------------------
def all_parseable_utterances():
    places = sorted({c.continent for c in CITIES} | {c.country for c in CITIES})
    texts = [q for phrasings in QUESTIONS.values() for q in phrasings]
    texts += [t.format(place=p) for t in PLACE_CHECKS for p in places]
    return texts + [GUESSES[0].format(city=n) for n in NAMES]


def test_no_response_ever_says_the_hidden_city():
    env = GuessMyCity(max_turns=10_000)
    utterances = all_parseable_utterances()
    fallbacks = set()
    for name in NAMES:
        env.reset(seed=0, options={"target": name})
        for u in utterances:
            if env.done:  # the correct guess ended it; start again
                env.reset(seed=0, options={"target": name})
            env.step(u)
            response = env.turns[-1][1]
            assert not leaks(response, name), (name, u, response)
            if response == LEAK_FALLBACK:
                fallbacks.add((name, u))
    # exactly the cities whose country contains their name are protected, on the country question
    protected = {name for name, _ in fallbacks}
    assert protected == {"Singapore", "Mexico City", "Kuwait City", "Panama City"}
    assert {u for _, u in fallbacks} == set(QUESTIONS["country"])


def test_guard_function():
    assert guard_response("It is in Mexico.", "Mexico City") == LEAK_FALLBACK
    assert guard_response("It is in singapore.", "Singapore") == LEAK_FALLBACK
    assert guard_response("It is known for the Paris Opera.", "Paris") == LEAK_FALLBACK
    assert guard_response("People love Parisian cafes.", "Paris") == "People love Parisian cafes."
    assert guard_response("It is in France.", "Paris") == "It is in France."


# ----- episode mechanics and bad input -----------------------------------------------------------
def test_twenty_turns_truncate_with_return_minus_twenty():
    env = GuessMyCity()
    obs, info = env.reset(seed=5)
    assert obs == INTRO and "target" in info and info["target"] not in obs
    total, done, steps = 0.0, False, 0
    while not done:
        _, reward, terminated, truncated, info = env.step("What country is it in?")
        total, done, steps = total + reward, terminated or truncated, steps + 1
    assert (steps, total, terminated, truncated, info["success"]) == (20, -20.0, False, True, False)
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step("Is it Paris?")


@pytest.mark.parametrize("bad", ["", "x" * 100_000, "¿Dónde?", None, 123, "flibber jabber",
                                 "Is it Atlantis?", "line\nbreak"], ids=lambda b: repr(b)[:12])
def test_bad_input_is_invalid_and_costs_one(bad):
    env = GuessMyCity()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(bad)
    assert (reward, terminated, truncated, info["invalid"]) == (-1.0, False, False, True)
    assert info["turns"][-1][1] == INVALID_RESPONSE and obs.isascii() and len(obs) < 200


@settings(max_examples=60, deadline=None)
@given(utterances=st.lists(st.text(max_size=300), min_size=1, max_size=25))
def test_fuzz_never_crashes_and_stays_ascii(utterances):
    for strict in (True, False):
        env = GuessMyCity(strict_guess=strict)
        obs, _ = env.reset(seed=1)
        for u in utterances:
            if env.done:
                obs, _ = env.reset(seed=1)
            obs, reward, terminated, truncated, info = env.step(u)
            assert reward in (-1.0, 0.0) and obs.isascii()
            assert not leaks(info["turns"][-1][1], info["target"])


def test_unknown_target_raises_clearly():
    with pytest.raises(ValueError, match="Unknown city 'Atlantis'"):
        GuessMyCity().reset(options={"target": "Atlantis"})


def test_seeding_same_seed_same_target_and_transcript():
    def episode(seed):
        env, rng = GuessMyCity(), np.random.default_rng(seed)
        _, info = env.reset(seed=seed)
        while not env.done:
            env.step(env.noisy_action(rng))
        return info["target"], env.observation()
    assert episode(11) == episode(11)
    targets = {GuessMyCity().reset(seed=s)[1]["target"] for s in range(200)}
    assert len(targets) > 50  # uniform draw over 78 cities reaches most of them


def test_gymnasium_make():
    env = gymnasium.make("archer_lite/GuessMyCity-v0")
    obs, info = env.reset(seed=0, options={"target": "Paris"})
    assert obs == INTRO
    obs, reward, terminated, _, info = env.step("What country is it in?")
    assert obs == INTRO + "What country is it in?\nIt is in France.\n" and reward == -1.0
    assert isinstance(make_env("guess_my_city"), GuessMyCity)


# ----- demonstrators and corpus -------------------------------------------------------------------
def mean_return(policy, episodes=200):
    env, returns, successes = GuessMyCity(), [], 0
    for seed in range(episodes):
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = env.expert_action(rng) if policy == "expert" else env.noisy_action(rng)
            _, reward, terminated, truncated, info = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
        successes += info["success"]
    return float(np.mean(returns)), successes / episodes


def test_expert_beats_noisy():
    expert, expert_success = mean_return("expert")
    noisy, _ = mean_return("noisy")
    assert expert > -8 and expert_success >= 0.95
    assert noisy <= expert - 1


def test_expert_tracks_candidates_from_the_transcript_only():
    env = GuessMyCity()
    env.reset(seed=0, options={"target": "Lyon"})
    env.step("What country is it in?")
    env.step("Is it on the coast?")
    assert {c.name for c in env.candidates()} == {"Paris", "Lyon"}
    env.step("Is it Paris?")
    assert [c.name for c in env.candidates()] == ["Lyon"]
    assert env.expert_action(np.random.default_rng(0)) == "Is it Lyon?"
    # without landmark and food the expert needs more questions but still never repeats one
    env.expert_question_types = ("continent", "country", "coast", "capital", "climate")
    env.reset(seed=0, options={"target": "Munich"})
    rng, asked = np.random.default_rng(0), []
    while not env.done:
        asked.append(env.expert_action(rng))
        env.step(asked[-1])
    assert asked[-1] == "Is it Munich?" and len(asked) == len(set(asked)) and len(asked) >= 3


def test_corpus_covers_everything_the_env_says_and_parses():
    corpus = set(GuessMyCity().corpus())
    assert INTRO in corpus and LEAK_FALLBACK in corpus and INVALID_RESPONSE in corpus
    assert set(all_parseable_utterances()) <= corpus
    env = GuessMyCity(max_turns=10_000)
    for name in NAMES[::7]:
        env.reset(seed=0, options={"target": name})
        for u in all_parseable_utterances():
            if env.done:
                env.reset(seed=0, options={"target": name})
            env.step(u)
            assert env.turns[-1][1] in corpus
    assert all(t.isascii() for t in corpus)
