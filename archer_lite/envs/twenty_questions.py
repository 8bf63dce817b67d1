"""Twenty Questions: find the hidden object by asking yes/no questions (ArCHer's main benchmark).

The env hides one object from ``data/objects.csv`` (140 objects in 15 categories, each described by
40 yes/no attributes such as ``is_animal``, ``has_wheels`` or ``fits_in_hand``). Each turn the agent
writes one question and the rule-based oracle answers it::

    Guess the object. Ask yes or no questions.
    Is it an animal?
    Yes.
    Does it have legs?
    Yes.
    Is it a dog?
    Yes! You guessed it.

The oracle understands two kinds of utterance, after :func:`normalize_utterance` (lower case, no
punctuation), by exact dictionary lookup (no fuzzy matching):

* an attribute question, in any of its phrasings (:data:`ATTRIBUTE_QUESTIONS`: "Is it an
  animal?", "Is it a kind of animal?", ...) -> ``"Yes."`` or ``"No."``;
* a guess, ``"Is it a <name>?"`` (also "an", "the" or no article; any alias such as "trousers"
  for pants) -> ``"Yes! You guessed it."`` (the episode ends) or ``"No."``.

Anything else is answered ``"Invalid question."``.

Reward: -1 for every turn except the winning guess, which gets 0 and terminates the episode.
After ``max_turns`` (20) turns the episode is truncated, so the return is minus the number of
turns that did not win: -2 for the transcript above, -20 for a game that never finds the object.
``subset=True`` plays the paper's 10-word variant (football, dog, banana, truck, pants, computer,
piano, chair, pen, scissors); guesses of the other table objects are still understood ("No.").

Demonstrators (they read only ``self.turns`` and the public table, never the hidden target):
:meth:`TwentyQuestions.expert_action` asks the most informative question and
:meth:`TwentyQuestions.noisy_action` mixes it with random questions and guesses.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from archer_lite.envs.base import TextEnv, normalize_utterance
from archer_lite.paths import data_path

INTRO = "Guess the object. Ask yes or no questions.\n"
YES, NO, CORRECT = "Yes.", "No.", "Yes! You guessed it."
INVALID = "Invalid question."

SUBSET_OBJECTS = ("football", "dog", "banana", "truck", "pants", "computer", "piano", "chair",
                  "pen", "scissors")
"""The 10 objects of the ``subset=True`` variant (the ArCHer paper's Twenty Questions Subset)."""

RANDOM_GUESS_SHARE = 0.2
"""In :meth:`TwentyQuestions.noisy_action`, the share of random actions that are guesses."""

ATTRIBUTE_QUESTIONS: dict[str, tuple[str, ...]] = {
    # kinds of thing
    "is_animal": ("Is it an animal?", "Is it a kind of animal?", "Is it a creature?"),
    "is_mammal": ("Is it a mammal?", "Is it a kind of mammal?", "Is it a type of mammal?"),
    "is_bird": ("Is it a bird?", "Is it a kind of bird?", "Does it have feathers?"),
    "is_plant": ("Is it a plant?", "Is it a kind of plant?", "Is it a type of plant?"),
    "is_edible": ("Can you eat it?", "Is it edible?", "Is it food?", "Is it something you eat?"),
    "is_fruit": ("Is it a fruit?", "Is it a kind of fruit?", "Is it a type of fruit?"),
    "is_vegetable": ("Is it a vegetable?", "Is it a kind of vegetable?",
                     "Is it a type of vegetable?"),
    "is_sweet": ("Is it sweet?", "Does it taste sweet?", "Is it sugary?"),
    "is_vehicle": ("Is it a vehicle?", "Is it a kind of vehicle?", "Is it a type of vehicle?"),
    "is_clothing": ("Is it clothing?", "Is it a piece of clothing?", "Is it an item of clothing?",
                    "Is it something you wear?"),
    "is_musical_instrument": ("Is it a musical instrument?", "Is it an instrument?",
                              "Can you play music with it?", "Is it used to make music?"),
    "is_furniture": ("Is it furniture?", "Is it a piece of furniture?",
                     "Is it a kind of furniture?"),
    "is_tool": ("Is it a tool?", "Is it a kind of tool?", "Is it a type of tool?"),
    "used_for_sports": ("Is it used for sports?", "Is it sports equipment?",
                        "Is it used to play a sport?", "Is it used in sports?"),
    "is_stationery": ("Is it an office or school supply?", "Is it stationery?",
                      "Is it a school supply?", "Is it an office supply?"),
    "is_kitchenware": ("Is it used in the kitchen?", "Is it kitchenware?", "Is it a kitchen item?",
                       "Do you use it in the kitchen?"),
    # parts and what it does
    "has_wheels": ("Does it have wheels?", "Has it got wheels?", "Does it have any wheels?"),
    "has_motor": ("Does it have a motor or engine?", "Does it have a motor?", "Is it motorized?",
                  "Does it run on a motor or engine?"),
    "needs_electricity": ("Does it need electricity?", "Does it use electricity?",
                          "Is it electric?", "Is it electronic?", "Does it run on electricity?"),
    "has_screen": ("Does it have a screen?", "Has it got a screen?",
                   "Does it have a screen on it?"),
    "has_strings": ("Does it have strings?", "Has it got strings?", "Does it use strings?"),
    "played_by_blowing": ("Do you blow into it?", "Is it a wind instrument?",
                          "Is it played by blowing?", "Do you play it by blowing?"),
    "has_legs": ("Does it have legs?", "Has it got legs?", "Does it have any legs?"),
    "can_fly": ("Can it fly?", "Does it fly?", "Is it able to fly?"),
    "lives_in_water": ("Does it live in water?", "Does it live in the water?", "Is it aquatic?",
                       "Does it grow or live in water?"),
    "is_sharp": ("Is it sharp?", "Does it have a sharp edge or point?",
                 "Has it got a sharp edge or point?"),
    # size and shape
    "fits_in_hand": ("Does it fit in your hand?", "Can it fit in your hand?",
                     "Is it small enough to fit in your hand?", "Would it fit in your hand?"),
    "bigger_than_person": ("Is it bigger than a person?", "Is it larger than a person?",
                           "Is it bigger than a human?", "Is it larger than a human?"),
    "bigger_than_car": ("Is it bigger than a car?", "Is it larger than a car?",
                        "Is it bigger than an automobile?"),
    "is_long_and_thin": ("Is it long and thin?", "Is it long and narrow?",
                         "Is it long and skinny?"),
    "is_round": ("Is it round?", "Is it round in shape?", "Is it circular or spherical?",
                 "Is it shaped like a ball or a circle?"),
    # what it is made of
    "made_of_metal": ("Is it made of metal?", "Is it metal?", "Is it metallic?",
                      "Is it made mostly of metal?"),
    "made_of_wood": ("Is it made of wood?", "Is it wooden?", "Is it made mostly of wood?"),
    "made_of_fabric": ("Is it made of fabric?", "Is it made of cloth?",
                       "Is it made of fabric or cloth?"),
    # colour
    "is_red": ("Is it red?", "Is it usually red?", "Is it red in color?", "Is it red in colour?"),
    "is_green": ("Is it green?", "Is it usually green?", "Is it green in color?",
                 "Is it green in colour?"),
    "is_yellow": ("Is it yellow?", "Is it usually yellow?", "Is it yellow in color?",
                  "Is it yellow in colour?"),
    # where and how it is used
    "usually_outdoors": ("Is it usually outdoors?", "Is it usually found outdoors?",
                         "Is it used outdoors?", "Is it found outside?"),
    "for_sitting": ("Is it for sitting on?", "Do you sit on it?", "Is it made for sitting on?",
                    "Do people sit on it?"),
    "keeps_you_warm": ("Does it keep you warm?", "Is it worn to keep warm?",
                       "Do you wear it when it is cold?", "Is it for cold weather?"),
}
"""Every attribute's accepted phrasings; the first is the canonical one the demonstrators ask."""


# ----- the object table --------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectTable:
    """The public object table, read once from ``data/objects.csv``.

    Attributes:
        names: canonical object names, in file order (``"tennis racket"``).
        categories: each object's category (``"sports equipment"``), for reading only.
        aliases: other names each object answers to (``("trousers", "jeans")`` for pants).
        attributes: attribute column names, in file order (``"is_animal"``, ...).
        values: ``(n_objects, n_attributes)`` read-only bool array; ``values[i, a]``: object i
            has attribute a.
        rows_by_name: normalized name or alias -> object row (``"trousers"`` -> the row of pants).
    """

    names: tuple[str, ...]
    categories: tuple[str, ...]
    aliases: tuple[tuple[str, ...], ...]
    attributes: tuple[str, ...]
    values: np.ndarray
    rows_by_name: Mapping[str, int] = field(repr=False)

    def index(self, name: str) -> int:
        """Row of an object given its name or an alias (any case); unknown: ``KeyError``."""
        key = normalize_utterance(name)
        if key not in self.rows_by_name:
            raise KeyError(f"{name!r} is not an object of the table (see data/objects.csv).")
        return self.rows_by_name[key]

    def row(self, name: str) -> dict[str, bool]:
        """``{attribute: value}`` of one object, e.g. ``table.row("dog")["has_legs"] -> True``."""
        i = self.index(name)
        return {a: bool(v) for a, v in zip(self.attributes, self.values[i])}


@functools.lru_cache(maxsize=None)
def load_objects(filename: str = "objects.csv") -> ObjectTable:
    """Read the object table (cached: building many envs reads the file once)."""
    with data_path(filename).open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        attributes = tuple(header[3:])
        names, categories, aliases, values = [], [], [], []
        for line in reader:
            names.append(line[0].strip())
            categories.append(line[1].strip())
            aliases.append(tuple(a.strip() for a in line[2].split("|") if a.strip()))
            values.append([int(v) for v in line[3:]])
    missing = set(attributes) ^ set(ATTRIBUTE_QUESTIONS)
    if missing:
        raise ValueError(f"{filename}'s attribute columns and ATTRIBUTE_QUESTIONS differ on "
                         f"{sorted(missing)}; every column needs phrasings and vice versa.")
    array = np.array(values, dtype=bool)  # (n_objects, n_attributes)
    array.setflags(write=False)
    rows_by_name: dict[str, int] = {}
    for i, name in enumerate(names):
        for key in map(normalize_utterance, (name, *aliases[i])):
            if rows_by_name.setdefault(key, i) != i:
                raise ValueError(f"{filename}: the name {key!r} is used by two objects.")
    return ObjectTable(tuple(names), tuple(categories), tuple(aliases), attributes, array,
                       MappingProxyType(rows_by_name))


def guess_question(name: str) -> str:
    """The guess for an object name, with a fitting article: "Is it a dog?", "Is it an apple?",
    "Is it pants?" (plural names take none)."""
    if name.endswith("s") and not name.endswith(("ss", "us")):
        return f"Is it {name}?"
    article = "an" if name[0] in "aeiou" else "a"
    return f"Is it {article} {name}?"


@functools.lru_cache(maxsize=None)
def question_parser(filename: str = "objects.csv") -> dict[str, tuple[str, int]]:
    """Normalized utterance -> ``("attribute", column)`` or ``("guess", object_row)``.

    Built once; the oracle's whole parser is one lookup in this dict. Guesses accept "a", "an",
    "the" or no article before any name or alias.
    """
    table = load_objects(filename)
    column = {a: j for j, a in enumerate(table.attributes)}
    parser: dict[str, tuple[str, int]] = {}
    for attribute, phrasings in ATTRIBUTE_QUESTIONS.items():
        for phrasing in phrasings:
            parser[normalize_utterance(phrasing)] = ("attribute", column[attribute])
    for key, row in table.rows_by_name.items():
        for article in ("a ", "an ", "the ", ""):
            guess = f"is it {article}{key}"
            if parser.get(guess, ("guess", row)) != ("guess", row):
                raise ValueError(f"{guess!r} is both a question and a guess; rename the object.")
            parser[guess] = ("guess", row)
    return parser


# ----- the environment ---------------------------------------------------------------------------
class TwentyQuestions(TextEnv):
    """Find the hidden object in at most ``max_turns`` yes/no questions (reward -1 per turn)."""

    invalid_response = INVALID

    def __init__(self, render_mode: str | None = None, subset: bool = False, max_turns: int = 20):
        super().__init__(render_mode)
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (got {max_turns}).")
        self.table = load_objects()
        self.subset, self.max_turns = subset, max_turns
        self._parser = question_parser()
        names = SUBSET_OBJECTS if subset else self.table.names
        self.object_ids = np.array([self.table.index(n) for n in names])  # rows this env plays
        self._values = self.table.values[self.object_ids]  # (n_env_objects, n_attributes)
        self._canonical = [ATTRIBUTE_QUESTIONS[a][0] for a in self.table.attributes]
        self._target = -1

    @property
    def object_names(self) -> list[str]:
        """Canonical names of the objects this env can hide (10 with ``subset=True``)."""
        return [self.table.names[i] for i in self.object_ids]

    # ----- TextEnv hooks -------------------------------------------------------------------------
    def _intro(self) -> str:
        return INTRO

    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        if "target" in options:
            self._target = self._resolve_target(options["target"])
        else:
            self._target = int(self.object_ids[rng.integers(len(self.object_ids))])
        return {"target": self.table.names[self._target]}

    def _resolve_target(self, name: Any) -> int:
        try:
            row = self.table.index(str(name))
        except KeyError:
            row = -1
        if row not in self.object_ids:
            variant = "TwentyQuestions(subset=True)" if self.subset else "TwentyQuestions()"
            raise ValueError(f"Unknown target {name!r} for {variant}: valid names are listed by "
                             f"env.object_names ({len(self.object_ids)} objects; the table is "
                             f"data/objects.csv).")
        return row

    def _respond(self, utterance: str) -> tuple[str, float, bool, dict[str, Any]]:
        parsed = self._parser.get(normalize_utterance(utterance))
        if parsed is None:
            return INVALID, -1.0, False, {"success": False}
        kind, index = parsed
        if kind == "guess":
            if index == self._target:
                return CORRECT, 0.0, True, {"success": True}  # the only turn that costs nothing
            return NO, -1.0, False, {"success": False}
        answer = YES if self.table.values[self._target, index] else NO
        return answer, -1.0, False, {"success": False}

    def _invalid(self) -> tuple[str, float, bool, dict[str, Any]]:
        return INVALID, -1.0, False, {"success": False}

    # ----- demonstrators -------------------------------------------------------------------------
    def consistent_candidates(self) -> tuple[np.ndarray, set[int]]:
        """Which of this env's objects fit the answers so far, and which attributes were asked.

        Reads only the transcript (``self.turns``) and the public table. Returns
        ``(mask, asked)``: ``mask[i]`` is True if ``self.object_names[i]`` is still possible;
        ``asked`` holds the attribute columns already asked (in any phrasing).
        """
        mask = np.ones(len(self.object_ids), dtype=bool)  # (n_env_objects,)
        asked: set[int] = set()
        for utterance, response in self.turns:
            parsed = self._parser.get(normalize_utterance(utterance))
            if parsed is None or response not in (YES, NO):
                continue
            kind, index = parsed
            if kind == "attribute":
                asked.add(index)
                mask &= self._values[:, index] == (response == YES)
            else:  # a wrong guess rules that object out
                mask &= self.object_ids != index
        return mask, asked

    def expert_action(self, rng: np.random.Generator) -> str:
        """Information-gain asker: the canonical question that splits the candidates most evenly.

        A question splitting n candidates into k "yes" and n - k "no" gains
        H(k/n) = -(k/n) log2(k/n) - (1 - k/n) log2(1 - k/n) bits, which grows with min(k, n - k):
        the most balanced split is the most informative one.
        Ties are broken with ``rng``. With one candidate left, or when no unasked attribute splits
        the candidates, it guesses one of them at random.
        """
        mask, asked = self.consistent_candidates()
        if not mask.any():  # the transcript contradicts the table: fall back to everyone
            mask[:] = True
        candidates = np.flatnonzero(mask)
        if len(candidates) > 1:
            yes = self._values[candidates].sum(axis=0)         # (n_attributes,)
            balance = np.minimum(yes, len(candidates) - yes)   # the smaller side of each split
            balance[list(asked)] = 0
            if balance.max() > 0:
                best = np.flatnonzero(balance == balance.max())
                return self._canonical[int(rng.choice(best))]
        pick = candidates[0] if len(candidates) == 1 else rng.choice(candidates)
        return guess_question(self.table.names[self.object_ids[pick]])

    def noisy_action(self, rng: np.random.Generator, noise: float = 0.5) -> str:
        """The suboptimal demonstrator for SFT data.

        With probability ``noise`` a random action: a uniformly random canonical question not asked yet (80%)
        or a guess of a uniformly random object of this env (20%); otherwise the expert's action.
        """
        if rng.random() < noise:
            if rng.random() < RANDOM_GUESS_SHARE:
                row = self.object_ids[rng.integers(len(self.object_ids))]
                return guess_question(self.table.names[row])
            _, asked = self.consistent_candidates()
            fresh = [i for i in range(len(self._canonical)) if i not in asked]  # a weak player, not a looping one
            return self._canonical[int(rng.choice(fresh))] if fresh else \
                self._canonical[rng.integers(len(self._canonical))]
        return self.expert_action(rng)

    def corpus(self) -> list[str]:
        """Every string the env can emit or parse (for the word-level tokenizer).

        The intro, every phrasing of every attribute question, a guess for every object name and
        alias of the whole table (also in the subset variant), and every response.
        """
        questions = [q for phrasings in ATTRIBUTE_QUESTIONS.values() for q in phrasings]
        names = [n for name, aliases in zip(self.table.names, self.table.aliases)
                 for n in (name, *aliases)]
        guesses = [guess_question(n) for n in names]
        return [INTRO, *questions, *guesses, YES, NO, CORRECT, INVALID]
