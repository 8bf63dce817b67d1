"""MiniShop: WebShop in miniature -- search a small catalog, open a product, pick options, buy.

ArCHer's hardest benchmark is WebShop (Yao et al., 2022): an agent reads a shopping instruction,
types search queries, clicks through result and product pages, and is scored only when it buys.
MiniShop keeps that shape with 240 synthetic products (``data/catalog.jsonl``, built by
:mod:`archer_lite.envs.make_catalog`) and a vocabulary of about a hundred words.

One episode (the expert's on ``instruction_index=27``, 5 turns; B004 is the same shirt over
budget, so the expert clicks B003)::

    Instruction: Find a white linen loose t-shirt, size M, sleeve long, under $30.
    Search page. Actions: search[<words>].
    search[white linen loose t-shirt]
    Results: [B003] white linen loose t-shirt $26.99; [B004] white linen loose t-shirt $33.99;
    [B000] grey linen loose t-shirt $13.99; ... Actions: click[<id>], click[back to search].
    click[B003]
    [B003] white linen loose t-shirt $26.99. Options: size S, M, L, XL; sleeve short, long.
    Actions: click[<option>], click[buy now], click[back to search].
    click[M]
    Selected size M.
    click[long]
    Selected sleeve long.
    click[buy now]
    Bought [B003] (size M, sleeve long).                                  -> reward 1.0

(Each page is one line in the observation; wrapped here.)

Pages and their actions (anything else costs a turn, answers ``"Invalid action."``, reward 0):

* search page: ``search[<words>]`` -> the top 5 products by keyword overlap with the title
  (ties: lower id first).
* results page: ``click[<id>]`` on a shown result -> its product page; ``click[back to search]``.
* product page: ``click[<option value>]`` selects it (one value per option key);
  ``click[buy now]`` ends the episode with :func:`purchase_reward`; ``click[back to search]``.

Reward is 0 on every turn but the purchase; 10 turns without buying ends the episode
(``truncated``) with reward 0. The instruction is the only hidden-free statement of the goal:
:func:`parse_instruction` recovers the goal from its text, and the demonstrators use only that.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from archer_lite.envs.base import EpisodeFinishedError, TextEnv, normalize_utterance
from archer_lite.paths import data_path

TOP_K = 5
"""How many results a search shows."""

SEARCH_PAGE = "Search page. Actions: search[<words>]."
NO_RESULTS = "Results: none. Actions: click[back to search]."
BUY_NOW = "buy now"
BACK_TO_SEARCH = "back to search"

WRONG_TYPE_WEIGHT = 0.1
"""Reward multiplier for buying a product of the wrong category (WebShop's r_type floor)."""


# ----- the catalog ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """One catalog line. ``words`` (the title's words) is what search matches against."""

    id: str
    title: str
    category: str
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price: float

    @property
    def words(self) -> frozenset[str]:
        return frozenset(self.title.split())

    def option_key(self, value: str) -> str | None:
        """The option key offering ``value`` (case-insensitive), or None."""
        for key, values in self.options.items():
            if value.lower() in (v.lower() for v in values):
                return key
        return None


@lru_cache(maxsize=None)
def load_catalog() -> tuple[Product, ...]:
    """The shipped catalog (``data/catalog.jsonl``), read once, in id order."""
    products = []
    with open(data_path("catalog.jsonl"), encoding="ascii") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                products.append(Product(
                    id=row["id"], title=row["title"], category=row["category"],
                    attributes=tuple(row["attributes"]),
                    options={k: tuple(v) for k, v in row["options"].items()},
                    price=float(row["price"]),
                ))
    return tuple(sorted(products, key=lambda p: p.id))


@lru_cache(maxsize=None)
def _products_by_id() -> dict[str, Product]:
    return {p.id.lower(): p for p in load_catalog()}


@lru_cache(maxsize=None)
def _keyword_index() -> dict[str, tuple[int, ...]]:
    """Inverted index: title word -> positions (in :func:`load_catalog`) of products with it."""
    index: dict[str, list[int]] = {}
    for i, product in enumerate(load_catalog()):
        for word in product.words:
            index.setdefault(word, []).append(i)
    return {word: tuple(positions) for word, positions in index.items()}


def search(query: str, k: int = TOP_K) -> list[Product]:
    """The ``k`` products whose titles share the most distinct words with ``query``.

    score(product) = |words(query) & words(title)|; ties go to the lower id; score-0 products
    never show. Words the catalog never uses (``under``, ``$20``) simply score nothing.
    """
    counts: Counter[int] = Counter()
    for word in set(normalize_utterance(query).split()):
        counts.update(_keyword_index().get(word, ()))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # (-score, id order)
    catalog = load_catalog()
    return [catalog[i] for i, _ in ranked[:k]]


# ----- instructions and goals -----------------------------------------------------------------
def price_cap(price: float) -> int:
    """The instruction's budget for a product: its price rounded up to a multiple of $10."""
    return 10 * math.ceil(price / 10)


def make_instruction(product: Product, chosen: dict[str, str]) -> str:
    """``"Find a <title>, <key> <value>, ..., under $<cap>."`` for ``product`` and options."""
    article = "" if product.category.endswith("s") else "a "  # "Find jeans", "Find a mug"
    options = "".join(f", {key} {value}" for key, value in chosen.items())
    return f"Find {article}{product.title}{options}, under ${price_cap(product.price)}."


_INSTRUCTION_RE = re.compile(r"^Find (?:a )?(?P<title>[^,]+)(?P<options>(?:, [^,]+)*), "
                             r"under \$(?P<cap>\d+)\.$")


def parse_instruction(text: str) -> dict[str, Any]:
    """Recover the goal from an instruction's text (what an agent reading the page can know).

    Returns ``{"category", "attributes", "options", "price_cap"}``, e.g. for
    ``"Find a red cotton slim t-shirt, size M, sleeve long, under $20."``:
    ``{"category": "t-shirt", "attributes": ["red", "cotton", "slim"],
    "options": {"size": "M", "sleeve": "long"}, "price_cap": 20.0}``.
    """
    match = _INSTRUCTION_RE.match(text)
    if match is None:
        raise ValueError(f"Not a MiniShop instruction: {text!r} "
                         f"(expected 'Find a <title>, <key> <value>, ..., under $<cap>.').")
    words = match["title"].split()
    options = {}
    for part in match["options"].split(", ")[1:]:
        key, value = part.split(" ", 1)
        options[key] = value
    return {"category": words[-1], "attributes": words[:-1], "options": options,
            "price_cap": float(match["cap"])}


@dataclass(frozen=True)
class Instruction:
    """One task: buy ``target_id`` (or any product as good) with these option values."""

    target_id: str
    text: str
    goal: dict[str, Any]


@lru_cache(maxsize=None)
def all_instructions() -> tuple[Instruction, ...]:
    """Every instruction: each product x each combination of its option values (in file order).

    ``reset(options={"instruction_index": k})`` plays ``all_instructions()[k]``.
    """
    tasks = []
    for product in load_catalog():
        keys = list(product.options)
        for combo in _option_combos([product.options[k] for k in keys]):
            chosen = dict(zip(keys, combo))
            text = make_instruction(product, chosen)
            tasks.append(Instruction(product.id, text, parse_instruction(text)))
    return tuple(tasks)


def _option_combos(value_lists: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for values in value_lists:
        combos = [c + (v,) for c in combos for v in values]
    return combos


def query_words(goal: dict[str, Any]) -> list[str]:
    """The instruction's key words for a search: its attributes then its category."""
    return [*goal["attributes"], goal["category"]]


# ----- the reward -----------------------------------------------------------------------------
def purchase_reward(goal: dict[str, Any], product: Product, selected: dict[str, str]) -> float:
    """WebShop's score, simplified: how well the bought product (with options) fits the goal.

        R = r_type * (n_att + n_opt + 1[price <= cap]) / (|U_att| + |U_opt| + 1)

    * ``U_att`` = ``goal["attributes"]`` (colour, material, feature);
      n_att = how many of them ``product.attributes`` has.
    * ``U_opt`` = ``goal["options"]`` (key -> value); n_opt = how many keys ``selected`` (the
      values clicked before buying) sets to the goal's value (case-insensitive).
    * cap = ``goal["price_cap"]``, compared with ``product.price``.
    * r_type = 1 if ``product.category == goal["category"]`` else :data:`WRONG_TYPE_WEIGHT` (0.1).

    Exactly 1.0 for the right product (or an identical copy under the cap) with the right options;
    e.g. with 3 attributes and 2 options, a wrong colour or size or price gives 5/6, forgetting
    both options gives 4/6. Always in [0, 1].
    """
    attributes = goal["attributes"]
    n_att = sum(a in product.attributes for a in attributes)
    n_opt = sum(str(selected.get(key, "")).lower() == str(value).lower()
                for key, value in goal["options"].items())
    price_ok = float(product.price <= goal["price_cap"])
    r_type = 1.0 if product.category == goal["category"] else WRONG_TYPE_WEIGHT
    return r_type * (n_att + n_opt + price_ok) / (len(attributes) + len(goal["options"]) + 1)


def is_perfect_match(goal: dict[str, Any], product: Product) -> bool:
    """Right category, every goal attribute, and within budget (options are picked later)."""
    return (product.category == goal["category"] and product.price <= goal["price_cap"]
            and all(a in product.attributes for a in goal["attributes"]))


# ----- page texts -----------------------------------------------------------------------------
def result_line(product: Product) -> str:
    return f"[{product.id}] {product.title} ${product.price:.2f}"


def results_page(products: list[Product]) -> str:
    if not products:
        return NO_RESULTS
    lines = "; ".join(result_line(p) for p in products)
    return f"Results: {lines}. Actions: click[<id>], click[{BACK_TO_SEARCH}]."


def product_page(product: Product) -> str:
    options = "; ".join(f"{key} {', '.join(values)}" for key, values in product.options.items())
    return (f"{result_line(product)}. Options: {options}. "
            f"Actions: click[<option>], click[{BUY_NOW}], click[{BACK_TO_SEARCH}].")


def bought_text(product: Product, selected: dict[str, str]) -> str:
    chosen = ", ".join(f"{key} {value}" for key, value in selected.items()) or "no options"
    return f"Bought [{product.id}] ({chosen})."


_ACTION_RE = re.compile(r"^(search|click) ?\[(.*)\]$")


def parse_action(utterance: str) -> tuple[str, str] | None:
    """``"Click[B012]"`` -> ``("click", "b012")``; None unless it is search[...] or click[...]."""
    match = _ACTION_RE.match(normalize_utterance(utterance))
    if match is None or not match[2].strip():
        return None
    return match[1], match[2].strip()


# ----- the environment ------------------------------------------------------------------------
class MiniShop(TextEnv):
    """Search, click, pick options and buy the product the instruction describes (see module doc).

    ``reset(options=...)`` accepts ``{"instruction_index": k}`` (play ``all_instructions()[k]``)
    or ``{"target_id": "B012"}`` (an instruction for that product, options drawn with the seed).
    ``info`` carries ``target_id``, ``instruction``, ``goal`` (hidden), and per step ``page``
    (``search``/``results``/``product``/``done``) and ``valid_actions``.
    """

    max_turns = 10
    invalid_response = "Invalid action."

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self._page = "search"
        self._results: list[Product] = []
        self._product: Product | None = None
        self._selected: dict[str, str] = {}
        self._seen_goal: dict[str, Any] = {}

    # ----- TextEnv hooks ------------------------------------------------------------------
    def _start(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        task = _pick_instruction(rng, options)
        self._page, self._results, self._product, self._selected = "search", [], None, {}
        self._seen_goal = parse_instruction(task.text)  # what the demonstrators may use
        return {"target_id": task.target_id, "instruction": task.text, "goal": task.goal}

    def _intro(self) -> str:
        return f"Instruction: {self._hidden['instruction']}\n{SEARCH_PAGE}\n"

    def _invalid(self) -> tuple[str, float, bool, dict[str, Any]]:
        return self.invalid_response, 0.0, False, {}

    def _respond(self, utterance: str) -> tuple[str, float, bool, dict[str, Any]]:
        action = parse_action(utterance)
        if action is None:
            return self._invalid()
        verb, arg = action
        if self._page == "search" and verb == "search":
            self._results = search(arg)
            self._page = "results"
            return results_page(self._results), 0.0, False, {}
        if verb != "click" or self._page == "search":
            return self._invalid()
        if arg == BACK_TO_SEARCH:
            self._page, self._results, self._product, self._selected = "search", [], None, {}
            return SEARCH_PAGE, 0.0, False, {}
        if self._page == "results":
            shown = {p.id.lower(): p for p in self._results}
            if arg not in shown:
                return self._invalid()
            self._page, self._product, self._selected = "product", shown[arg], {}
            return product_page(self._product), 0.0, False, {}
        # product page: buy now, or an option value
        product = self._product
        if arg == BUY_NOW:
            self._page = "done"
            reward = purchase_reward(self._hidden["goal"], product, self._selected)
            return (bought_text(product, self._selected), reward, True,
                    {"bought_id": product.id, "selected": dict(self._selected),
                     "success": reward >= 1.0})  # success: a perfect match (reward exactly 1)
        key = product.option_key(arg)
        if key is None:
            return self._invalid()
        value = next(v for v in product.options[key] if v.lower() == arg)
        self._selected[key] = value
        return f"Selected {key} {value}.", 0.0, False, {}

    def _info(self, invalid: bool) -> dict[str, Any]:
        info = super()._info(invalid)
        goal = info["goal"]
        info["goal"] = {**goal, "attributes": list(goal["attributes"]),
                        "options": dict(goal["options"])}  # a copy: callers may not edit ours
        info.update(page="done" if self._done else self._page, valid_actions=self.valid_actions())
        return info

    # ----- what an agent can do now -------------------------------------------------------
    def valid_actions(self) -> list[str]:
        """The actions the current page accepts (the search page lists the template only)."""
        if self._done:
            return []
        if self._page == "search":
            return ["search[...]"]
        if self._page == "results":
            return [f"click[{p.id}]" for p in self._results] + [f"click[{BACK_TO_SEARCH}]"]
        values = [v for vals in self._product.options.values() for v in vals]
        return [f"click[{v}]" for v in values] + [f"click[{BUY_NOW}]", f"click[{BACK_TO_SEARCH}]"]

    # ----- demonstrators ------------------------------------------------------------------
    def expert_action(self, rng: np.random.Generator | None = None) -> str:
        """The scripted shopper, reading only the instruction and the pages shown.

        Search the instruction's key words; click the first result that matches every
        attribute within budget; click each required option not yet selected; buy. On a page
        that cannot lead to a perfect match it goes back to search -- unless too few turns are
        left to start over, then it makes the best of what it has.
        """
        self._check_running()
        goal = self._seen_goal
        turns_left = self.max_turns - len(self.turns)
        restart_cost = 4 + len(goal["options"])  # back, search, click, options..., buy
        if self._page == "search":
            return f"search[{' '.join(query_words(goal))}]"
        if self._page == "results":
            perfect = [p for p in self._results if is_perfect_match(goal, p)]
            if perfect:
                return f"click[{perfect[0].id}]"
            if not self._results or turns_left >= restart_cost:
                return f"click[{BACK_TO_SEARCH}]"
            best = max(self._results, key=lambda p: purchase_reward(goal, p, goal["options"]))
            return f"click[{best.id}]"
        product = self._product
        if not is_perfect_match(goal, product) and turns_left >= restart_cost:
            return f"click[{BACK_TO_SEARCH}]"
        for key, value in goal["options"].items():
            if product.option_key(value) == key and self._selected.get(key) != value:
                return f"click[{value}]"
        return f"click[{BUY_NOW}]"

    def noisy_action(self, rng: np.random.Generator, noise: float = 0.5) -> str:
        """With probability ``noise`` a random valid action, else :meth:`expert_action`.

        Random actions: on the search page a search with a random nonempty subset of the
        instruction's key words; elsewhere a uniform pick from :meth:`valid_actions` (a random
        result, a random option, buying early, going back).
        """
        self._check_running()
        if rng.random() >= noise:
            return self.expert_action(rng)
        if self._page == "search":
            words = query_words(self._seen_goal)
            keep = rng.random(len(words)) < 0.5
            keep[rng.integers(len(words))] = True  # never empty
            return f"search[{' '.join(w for w, k in zip(words, keep) if k)}]"
        actions = self.valid_actions()
        return actions[rng.integers(len(actions))]

    def _check_running(self) -> None:
        if self._done:
            raise EpisodeFinishedError("MiniShop: the episode has ended; call env.reset() first.")

    # ----- vocabulary -----------------------------------------------------------------------
    def corpus(self) -> list[str]:
        """Every text the env can show or accept, for fitting a word-level tokenizer."""
        return list(_corpus())


def _pick_instruction(rng: np.random.Generator, options: dict[str, Any]) -> Instruction:
    tasks = all_instructions()
    unknown = set(options) - {"instruction_index", "target_id"}
    if unknown or len(options) > 1:
        raise ValueError(f"MiniShop reset options: give at most one of 'instruction_index' or "
                         f"'target_id'; got {sorted(options)}.")
    if "instruction_index" in options:
        k = options["instruction_index"]
        if not isinstance(k, (int, np.integer)) or not 0 <= k < len(tasks):
            raise ValueError(f"instruction_index must be an int in [0, {len(tasks)}), got {k!r}.")
        return tasks[int(k)]
    if "target_id" in options:
        target = str(options["target_id"])
        mine = [t for t in tasks if t.target_id.lower() == target.lower()]
        if not mine:
            raise ValueError(f"Unknown target_id {target!r}; ids run B000..{tasks[-1].target_id}.")
        return mine[rng.integers(len(mine))]
    return tasks[rng.integers(len(tasks))]


@lru_cache(maxsize=None)
def _corpus() -> tuple[str, ...]:
    texts = [SEARCH_PAGE, NO_RESULTS, MiniShop.invalid_response, "search[<words>]",
             f"click[{BUY_NOW}]", f"click[{BACK_TO_SEARCH}]"]
    for product in load_catalog():
        texts += [product_page(product), f"click[{product.id}]", bought_text(product, {})]
        for key, values in product.options.items():
            texts += [f"Selected {key} {v}." for v in values] + [f"click[{v}]" for v in values]
    queries = set()
    for task in all_instructions():
        texts.append(f"Instruction: {task.text}\n{SEARCH_PAGE}\n")
        query = " ".join(query_words(task.goal))
        if query not in queries:
            queries.add(query)
            texts += [f"search[{query}]", results_page(search(query))]
        texts.append(bought_text(_products_by_id()[task.target_id.lower()], task.goal["options"]))
    return tuple(dict.fromkeys(texts))  # unique, in first-seen order
