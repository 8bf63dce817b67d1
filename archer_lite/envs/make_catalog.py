"""Build MiniShop's synthetic product catalog, ``data/catalog.jsonl``, from a seed.

Every product is one JSON line::

    {"id": "B012", "title": "red cotton slim t-shirt", "category": "t-shirt",
     "attributes": ["red", "cotton", "slim"], "options": {"size": ["S", "M", "L", "XL"],
     "sleeve": ["short", "long"]}, "price": 15.99}

A title is always ``<colour> <material> <feature> <category>``, and ``attributes`` are its first
three words, so the whole shop speaks a small fixed vocabulary (:data:`COLOURS` plus the words in
:data:`CATEGORIES`) that a word-level tokenizer covers. Every product of a category offers all of
that category's option values. A title appears at most :data:`MAX_SAME_TITLE` times (at different
prices), so a search with a title's four words always shows all of its copies in the top 5.

Rebuild (byte-identical for the same seed)::

    python -m archer_lite.envs.make_catalog            # writes data/catalog.jsonl, seed 0
    python -m archer_lite.envs.make_catalog --seed 1 --out /tmp/catalog.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 0
"""The seed the shipped ``data/catalog.jsonl`` was built with."""

PRODUCTS_PER_CATEGORY = 30
MAX_SAME_TITLE = 3
"""At most this many products share one title (they differ in price and id)."""

COLOURS = ["red", "blue", "black", "white", "green", "grey"]

CATEGORIES: dict[str, dict] = {
    # category: materials, features, options (key -> values), price range in dollars
    "t-shirt": dict(materials=["cotton", "linen", "polyester"], features=["slim", "loose"],
                    options={"size": ["S", "M", "L", "XL"], "sleeve": ["short", "long"]},
                    price=(6, 35)),
    "hoodie": dict(materials=["cotton", "fleece", "wool"], features=["zip", "pullover"],
                   options={"size": ["S", "M", "L", "XL"]}, price=(20, 60)),
    "jeans": dict(materials=["denim", "cotton", "stretch"], features=["slim", "straight", "wide"],
                  options={"waist": ["28", "30", "32", "34", "36"]}, price=(25, 80)),
    "shoes": dict(materials=["leather", "canvas", "suede"], features=["running", "casual"],
                  options={"size": ["7", "8", "9", "10", "11", "12"]}, price=(30, 120)),
    "mug": dict(materials=["ceramic", "glass", "steel"], features=["matte", "glossy"],
                options={"capacity": ["12oz", "16oz", "20oz"]}, price=(5, 25)),
    "backpack": dict(materials=["nylon", "canvas", "leather"],
                     features=["waterproof", "lightweight"],
                     options={"capacity": ["20l", "30l", "40l"]}, price=(20, 90)),
    "lamp": dict(materials=["metal", "wood", "glass"], features=["desk", "floor"],
                 options={"bulb": ["warm", "cool"]}, price=(15, 70)),
    "headphones": dict(materials=["plastic", "metal"], features=["wireless", "wired"],
                       options={"style": ["over-ear", "in-ear"]}, price=(15, 150)),
}


def make_catalog(seed: int = SEED) -> list[dict]:
    """Draw the catalog: :data:`PRODUCTS_PER_CATEGORY` products per category, ids ``B000``...

    Titles are drawn with replacement (so some repeat, at different prices: the price cap in an
    instruction then decides which copy to buy), rejecting a title once it has
    :data:`MAX_SAME_TITLE` copies.
    """
    rng = np.random.default_rng(seed)
    products: list[dict] = []
    for category, spec in CATEGORIES.items():
        copies: dict[str, int] = {}
        made = 0
        while made < PRODUCTS_PER_CATEGORY:
            colour = COLOURS[rng.integers(len(COLOURS))]
            material = spec["materials"][rng.integers(len(spec["materials"]))]
            feature = spec["features"][rng.integers(len(spec["features"]))]
            title = f"{colour} {material} {feature} {category}"
            if copies.get(title, 0) >= MAX_SAME_TITLE:
                continue
            copies[title] = copies.get(title, 0) + 1
            low, high = spec["price"]
            price = round(int(rng.integers(low, high + 1)) - 0.01, 2)  # always $x.99
            products.append({
                "id": f"B{len(products):03d}",
                "title": title,
                "category": category,
                "attributes": [colour, material, feature],
                "options": {key: list(values) for key, values in spec["options"].items()},
                "price": price,
            })
            made += 1
    return products


def write_catalog(path: str | Path, seed: int = SEED) -> Path:
    """Write :func:`make_catalog` ``(seed)`` to ``path`` as JSON lines; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(product) for product in make_catalog(seed)]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def main(argv: list[str] | None = None) -> None:
    from archer_lite.paths import DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED, help="catalog seed (shipped: 0)")
    parser.add_argument("--out", default=str(DATA_DIR / "catalog.jsonl"), help="output path")
    args = parser.parse_args(argv)
    path = write_catalog(args.out, args.seed)
    print(f"wrote {path} ({len(make_catalog(args.seed))} products, seed {args.seed})")


if __name__ == "__main__":
    main()
