"""Guess My City: find a hidden city by asking open questions (ArCHer's second task).

The env hides one city from ``data/cities.csv``; the agent asks questions in plain English and a
rule-based oracle answers from the table with fixed templates::

    Guess my city. Ask me questions.
    Which continent is it on?
    It is in Europe.
    What language do people speak there?
    People speak French.
    Is it Paris?
    Yes! You guessed it.

Unlike Twenty Questions, most questions are *open*: "What country is it in?" splits the
candidates many ways at once, so a good agent learns which question to ask first.

Reward: -1 for every turn, 0 for the turn with the correct guess (which ends the episode);
after ``max_turns`` (20) turns the episode is truncated. So the return is minus the number of
turns that were not the winning one, between 0 and -20.

The oracle (the paper's is an LLM; ours is a dictionary lookup, fast and deterministic):

* An utterance is normalised (:func:`~archer_lite.envs.base.normalize_utterance`) and looked up in
  one table of known phrasings (:data:`QUESTIONS`, :data:`PLACE_CHECKS`, :data:`GUESSES`).
  Anything else gets "I don't understand." and costs a turn like any other question.
* **Name-leak guard.** The oracle must never say the hidden city's name: "What country is it in?"
  about Singapore, or "It is in Mexico." about Mexico City, would give the answer away.
  :func:`guard_response` checks every response and replaces a leaking one by
  "I can't say that." (the table is also chosen so that landmarks avoid their city's name).
* **strict_guess.** With ``strict_guess=True`` (default) only a guess ("Is it Paris?") that names
  exactly the hidden city wins. With ``strict_guess=False`` the env copies the paper's lenient
  rule: *any* utterance that mentions the hidden city's name wins, so "Is it Paris or London or
  Tokyo?" is a cheap way to win. It is kept on purpose, to show reward hacking: an RL agent finds
  and exploits a loophole in the reward function rather than solving the task.

Demonstrators (:meth:`GuessMyCity.expert_action`, :meth:`GuessMyCity.noisy_action`) only read
what the agent could see (the transcript and the public table), never the hidden city.
"""
from __future__ import annotations

import csv
import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from archer_lite.envs.base import TextEnv, normalize_utterance
from archer_lite.paths import data_path

INTRO = "Guess my city. Ask me questions.\n"
INVALID_RESPONSE = "I don't understand."
LEAK_FALLBACK = "I can't say that."
CORRECT_RESPONSE = "Yes! You guessed it."

QUESTIONS: dict[str, tuple[str, ...]] = {
    "continent": ("Which continent is it on?", "What continent is it in?", "What continent?",
                  "Which continent is the city in?"),
    "country": ("What country is it in?", "Which country is it in?", "What country?",
                "Which country is the city in?"),
    "language": ("What language do people speak there?", "What language is spoken there?",
                 "What language?", "Which language do people speak?"),
    "coast": ("Is it on the coast?", "Is it a coastal city?", "Is it by the sea?",
              "Is the city on the coast?"),
    "capital": ("Is it a capital city?", "Is it a capital?", "Is it the capital?",
                "Is it the capital of its country?"),
    "climate": ("What is the climate like?", "What is the climate?", "What is the weather like?",
                "What climate does it have?"),
    "population": ("How big is it?", "How many people live there?", "What is the population?",
                   "How large is the city?"),
    "landmark": ("What is it famous for?", "What is a famous landmark?", "What is it known for?",
                 "Which landmark is it known for?"),
    "hemisphere": ("Which hemisphere is it in?", "What hemisphere is it in?",
                   "Is it in the northern or southern hemisphere?"),
    "food": ("What food is it famous for?", "What is a famous food there?",
             "What do people eat there?"),
}
"""Open (attribute) questions: question type -> its phrasings, the first being the canonical one."""

PLACE_CHECKS: tuple[str, ...] = ("Is it in {place}?", "Is the city in {place}?",
                                 "Is it located in {place}?")
"""Yes/no checks, filled with every continent and every country ("Is it in France?")."""

GUESSES: tuple[str, ...] = ("Is it {city}?", "Is the city {city}?", "Is it the city of {city}?")
"""Guess phrasings, filled with every city name."""


# ----- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class City:
    """One row of ``data/cities.csv`` (population band: the city with its suburbs, rounded)."""

    name: str
    country: str        # as said in a sentence: "France", "the United States"
    continent: str
    language: str
    on_coast: bool
    is_capital: bool
    climate: str        # tropical, arid, temperate, continental, mediterranean or cold
    population: str     # under 1 million, 1 to 5 million, 5 to 10 million, over 10 million
    landmark: str
    hemisphere: str     # northern or southern
    food: str


@functools.lru_cache(maxsize=None)
def load_cities() -> tuple[City, ...]:
    """The public city table, read once from ``data/cities.csv``."""
    with open(data_path("cities.csv"), newline="", encoding="ascii") as f:
        rows = list(csv.DictReader(f))
    cities = []
    for row in rows:
        flags = {key: _yes_no(row[key], row["name"], key) for key in ("on_coast", "is_capital")}
        cities.append(City(**{**row, **flags}))
    return tuple(cities)


def _yes_no(value: str, name: str, column: str) -> bool:
    if value not in ("yes", "no"):
        raise ValueError(f"cities.csv: {name}'s {column} must be 'yes' or 'no', got {value!r}.")
    return value == "yes"


@functools.lru_cache(maxsize=None)
def cities_by_name() -> dict[str, City]:
    """``{name: City}`` for the whole table."""
    return {city.name: city for city in load_cities()}


def _without_article(place: str) -> str:
    return place[4:] if place.startswith("the ") else place


# ----- parsing: one dictionary from normal form to meaning --------------------------------------
@functools.lru_cache(maxsize=None)
def utterance_table() -> dict[str, tuple[str, str]]:
    """``{normalized utterance: (kind, argument)}`` for every utterance the oracle understands.

    kind is a question type of :data:`QUESTIONS` (argument ``""``), ``"in_continent"`` /
    ``"in_country"`` (argument: the place), or ``"guess"`` (argument: the city name).
    "Is it in the United States?" and "Is it in United States?" both parse.
    """
    cities = load_cities()
    table: dict[str, tuple[str, str]] = {}

    def add(text: str, meaning: tuple[str, str]) -> None:
        key = normalize_utterance(text)
        if table.get(key, meaning) != meaning:  # a phrasing that could mean two things is a bug
            raise ValueError(f"{text!r} would parse as both {table[key]} and {meaning}.")
        table[key] = meaning

    for kind, phrasings in QUESTIONS.items():
        for text in phrasings:
            add(text, (kind, ""))
    for kind, places in (("in_continent", {c.continent for c in cities}),
                         ("in_country", {c.country for c in cities})):
        for place in places:
            for template in PLACE_CHECKS:
                add(template.format(place=place), (kind, place))
                add(template.format(place=_without_article(place)), (kind, place))
    for city in cities:
        for template in GUESSES:
            add(template.format(city=city.name), ("guess", city.name))
    return table


def parse_utterance(utterance: str) -> tuple[str, str] | None:
    """``(kind, argument)`` of an utterance, or ``None`` if the oracle does not understand it."""
    return utterance_table().get(normalize_utterance(utterance))


# ----- the oracle --------------------------------------------------------------------------------
def fact_answer(city: City, kind: str, argument: str = "") -> str:
    """The templated answer to a question of type ``kind`` about ``city`` (before the guard)."""
    if kind == "continent":
        return f"It is in {city.continent}."
    if kind == "country":
        return f"It is in {city.country}."
    if kind == "language":
        return f"People speak {city.language}."
    if kind == "coast":
        return "Yes, it is on the coast." if city.on_coast else "No, it is not on the coast."
    if kind == "capital":
        return "Yes, it is a capital." if city.is_capital else "No, it is not a capital."
    if kind == "climate":
        return f"The climate is {city.climate}."
    if kind == "population":
        return f"It has {city.population} people."
    if kind == "landmark":
        return f"It is known for {city.landmark}."
    if kind == "hemisphere":
        return f"It is in the {city.hemisphere} hemisphere."
    if kind == "food":
        return f"A famous food there is {city.food}."
    if kind == "in_continent":
        return "Yes." if city.continent == argument else "No."
    if kind == "in_country":
        return "Yes." if city.country == argument else "No."
    raise ValueError(f"Unknown question type {kind!r}; known: {', '.join(QUESTIONS)}, "
                     f"in_continent, in_country.")


def leak_names(city_name: str) -> tuple[str, ...]:
    """The strings that would give ``city_name`` away: the name, and "Mexico" for "Mexico City"."""
    if city_name.endswith(" City"):
        return city_name, city_name[: -len(" City")]
    return (city_name,)


@functools.lru_cache(maxsize=None)
def _leak_pattern(city_name: str) -> re.Pattern[str]:
    names = "|".join(re.escape(name) for name in leak_names(city_name))
    return re.compile(rf"\b(?:{names})\b", re.IGNORECASE)


def guard_response(response: str, city_name: str) -> str:
    """Return ``response``, or :data:`LEAK_FALLBACK` if it says the hidden city's name.

    Word-boundary and case-insensitive: "It is in Mexico." leaks Mexico City; "Paris" does not
    leak in "Parisian".
    """
    if _leak_pattern(city_name).search(response):
        return LEAK_FALLBACK
    return response


@functools.lru_cache(maxsize=None)
def _name_pattern(city_name: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(normalize_utterance(city_name))}\b")


def mentions_city(utterance: str, city_name: str) -> bool:
    """Whether the (normalized) utterance says ``city_name`` anywhere (the lenient win rule)."""
    return _name_pattern(city_name).search(normalize_utterance(utterance)) is not None


@functools.lru_cache(maxsize=1 << 16)
def oracle_response(city_name: str, utterance: str, strict_guess: bool = True) -> tuple[str, bool]:
    """``(response, correct)``: what the oracle says to ``utterance`` if the city is ``city_name``.

    A pure function of its arguments, so the expert can ask "what would the oracle have said if
    the city were X?" and keep exactly the candidates consistent with the transcript.
    """
    # the exploitable rule of the paper: any mention of the name wins
    if not strict_guess and mentions_city(utterance, city_name):
        return CORRECT_RESPONSE, True
    parsed = parse_utterance(utterance)
    if parsed is None:
        return INVALID_RESPONSE, False
    kind, argument = parsed
    if kind == "guess":
        if argument == city_name:
            return CORRECT_RESPONSE, True
        response = f"No, it is not {argument}."
    else:
        response = fact_answer(cities_by_name()[city_name], kind, argument)
    return guard_response(response, city_name), False  # the leak guard sees every response


# ----- the environment ---------------------------------------------------------------------------
class GuessMyCity(TextEnv):
    """Find the hidden city by asking questions; -1 per turn, 0 for the correct guess.

    Args:
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns the transcript).
        strict_guess: if True only "Is it <city>?" naming the hidden city wins; if False any
            utterance mentioning the city's name wins (the paper's exploitable rule).
        max_turns: turns before truncation.
    """

    invalid_response = INVALID_RESPONSE
    expert_question_types: tuple[str, ...] = tuple(q for q in QUESTIONS if q not in ("landmark", "food"))
    """Question types the scripted expert asks. Landmark and food name one city each, so they are
    left to the learner: the demonstrations never use that shortcut and RL can discover it."""

    def __init__(self, render_mode: str | None = None, strict_guess: bool = True,
                 max_turns: int = 20):
        super().__init__(render_mode)
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (got {max_turns}).")
        self.strict_guess, self.max_turns = bool(strict_guess), max_turns
        self.target = ""

    # ----- TextEnv hooks -------------------------------------------------------------------
    def _intro(self) -> str:
        return INTRO

    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        cities = load_cities()
        if "target" in options:
            target = options["target"]
            if target not in cities_by_name():
                raise ValueError(f"Unknown city {target!r} in options['target']; choose one of "
                                 f"data/cities.csv, e.g. {', '.join(c.name for c in cities[:5])}.")
        else:
            target = cities[int(rng.integers(len(cities)))].name  # uniform over the table
        self.target = target
        return {"target": target}

    def _respond(self, utterance: str) -> tuple[str, float, bool, dict[str, Any]]:
        response, correct = oracle_response(self.target, utterance, self.strict_guess)
        return response, (0.0 if correct else -1.0), correct, {"success": correct}

    def _invalid(self) -> tuple[str, float, bool, dict[str, Any]]:
        return self.invalid_response, -1.0, False, {"success": False}

    # ----- demonstrators --------------------------------------------------------------------
    def candidates(self) -> list[City]:
        """Cities consistent with every answer so far (reads only ``self.turns`` and the table).

        A city stays if the oracle, had it been the hidden one, would have given exactly the
        responses in the transcript. Turns answered "I don't understand." carry no information
        (their shown text may differ from what was typed), so they are skipped.
        """
        informative = [(u, r) for u, r in self.turns if r != self.invalid_response]
        kept = [city for city in load_cities()
                if all(oracle_response(city.name, u, self.strict_guess)[0] == r
                       for u, r in informative)]
        return kept or list(load_cities())  # never empty, even after odd transcripts

    def expert_action(self, rng: np.random.Generator) -> str:
        """Ask the most informative question type, or guess once one candidate is left.

        Information gain with a uniform prior over the N candidates: a question splitting them
        into answer groups of sizes n_g leaves an expected entropy sum_g (n_g/N) log2 n_g;
        the expert asks the question minimising it (ties broken by ``rng``). Questions already
        asked do not split the candidates any more, so they are never repeated. When one city
        remains (or nothing splits the rest), it guesses one; a wrong guess removes that city.
        """
        candidates = self.candidates()
        if len(candidates) > 1:
            best: list[str] = []
            best_entropy = math.log2(len(candidates))  # a question must do better than nothing
            for kind in self.expert_question_types:
                question = QUESTIONS[kind][0]
                groups = Counter(oracle_response(c.name, question, self.strict_guess)[0]
                                 for c in candidates)
                entropy = sum(n / len(candidates) * math.log2(n) for n in groups.values())
                if entropy < best_entropy - 1e-9:
                    best, best_entropy = [question], entropy
                elif abs(entropy - best_entropy) <= 1e-9 and best:
                    best.append(question)
            if best:
                return best[int(rng.integers(len(best)))]
        guess = candidates[int(rng.integers(len(candidates)))]
        return GUESSES[0].format(city=guess.name)

    def noisy_action(self, rng: np.random.Generator, noise: float = 0.5) -> str:
        """With probability ``noise`` a random action (70% a random question, 30% a random
        city guess), otherwise the expert's action."""
        if rng.random() >= noise:
            return self.expert_action(rng)
        if rng.random() < 0.3:
            cities = load_cities()
            return GUESSES[0].format(city=cities[int(rng.integers(len(cities)))].name)
        kinds = list(QUESTIONS) + ["in_continent", "in_country"]
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind in QUESTIONS:
            phrasings = QUESTIONS[kind]
            return phrasings[int(rng.integers(len(phrasings)))]
        places = sorted({getattr(c, kind[3:]) for c in load_cities()})  # continent or country
        place = places[int(rng.integers(len(places)))]
        return PLACE_CHECKS[int(rng.integers(len(PLACE_CHECKS)))].format(place=place)

    def corpus(self) -> list[str]:
        """Every string the env can emit or parse (for the word-level tokenizer)."""
        cities = load_cities()
        texts = [INTRO, INVALID_RESPONSE, LEAK_FALLBACK, CORRECT_RESPONSE]
        texts += [q for phrasings in QUESTIONS.values() for q in phrasings]
        for place in sorted({c.continent for c in cities} | {c.country for c in cities}):
            texts += [t.format(place=p) for t in PLACE_CHECKS
                      for p in dict.fromkeys([place, _without_article(place)])]
        texts += [t.format(city=c.name) for t in GUESSES for c in cities]
        texts += [f"No, it is not {c.name}." for c in cities]
        responses = {guard_response(fact_answer(c, kind), c.name)
                     for c in cities for kind in QUESTIONS}
        return texts + sorted(responses | {"Yes.", "No."})
