"""The course's offline restaurant set: random MRs in E2E's eight slots, each realised as a few sentences.

Seeded and committed under ``data/restaurants``; rebuild with ``python -m minipeft.data``.
"""

from __future__ import annotations

import random
from pathlib import Path

from .loaders import RESTAURANTS_DIR, SPLITS, write_csv
from .mr import SLOTS, Pair, format_mr

NAMES = (
    "The Copper Kettle", "Blue Heron", "The Lantern", "Saffron Garden", "The Old Forge", "Maple House",
    "The Silver Spoon", "Golden Lotus", "The Red Lion", "Olive Grove", "The Tin Drum", "Juniper",
    "The Bluebell", "Rosemary Kitchen", "The Anchor", "Little Sparrow", "The Pilgrim", "Harvest Moon",
    "The Black Swan", "Cedar Table", "The Wheatsheaf", "Bamboo Court", "The Quayside", "Amber Rooms",
    "The Kingfisher", "Fig and Thistle", "The Nightingale", "Willow Tree", "The Brass Bell", "Orchard Hall",
)
LANDMARKS = (
    "the Town Hall", "St Mary's Church", "the Botanic Garden", "Market Square", "the Grand Hotel",
    "the Museum of Art", "the Corn Exchange", "Castle Hill", "the Guildhall", "the Railway Station",
    "the Old Library", "Parker's Piece",
)
VALUES = {
    "eatType": ("pub", "coffee shop", "restaurant"),
    "food": ("Chinese", "English", "Fast food", "French", "Indian", "Italian", "Japanese"),
    "priceRange": ("cheap", "less than £20", "£20-25", "moderate", "high", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}

# Ways to say each slot value as a predicate ("X ..."). {v} is the value.
_PREDICATES = {
    "food": ("serves {v}", "offers {v}", "has {v} on the menu", "specialises in {v}"),
    "priceRange": {
        "cheap": ("is cheap", "has cheap prices", "is a cheap place to eat"),
        "less than £20": ("costs less than £20", "has prices of less than £20", "charges less than £20"),
        "£20-25": ("costs £20-25", "has a price range of £20-25", "charges £20-25 per person"),
        "moderate": ("is moderately priced", "has moderate prices", "has a moderate price range"),
        "high": ("is expensive", "has high prices", "has a high price range"),
        "more than £30": ("costs more than £30", "has prices of more than £30", "charges more than £30"),
    },
    "customer rating": {
        "low": ("has a low customer rating", "is rated low by customers", "has a low rating"),
        "average": ("has an average customer rating", "is rated average by customers", "has an average rating"),
        "high": ("has a high customer rating", "is rated high by customers", "has a high rating"),
        "1 out of 5": ("has a customer rating of 1 out of 5", "is rated 1 out of 5 by customers"),
        "3 out of 5": ("has a customer rating of 3 out of 5", "is rated 3 out of 5 by customers"),
        "5 out of 5": ("has a customer rating of 5 out of 5", "is rated 5 out of 5 by customers"),
    },
    "area": {
        "city centre": ("is in the city centre", "is located in the city centre", "is found in the city centre"),
        "riverside": ("is by the riverside", "is located on the riverside", "is in the riverside area"),
    },
    "familyFriendly": {
        "yes": ("is family-friendly", "is family friendly", "welcomes families and is family-friendly"),
        "no": ("is not family-friendly", "is not family friendly", "is not a family-friendly place"),
    },
    "near": ("is near {v}", "is close to {v}", "is located near {v}"),
}
_ARTICLE = {"pub": "a pub", "coffee shop": "a coffee shop", "restaurant": "a restaurant"}


def _predicate(slot: str, value: str, rng: random.Random) -> str:
    options = _PREDICATES[slot]
    if isinstance(options, dict):
        return rng.choice(options[value])
    if slot == "food":
        value = "fast food" if value == "Fast food" else f"{value} food"
    return rng.choice(options).format(v=value)


def _join(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


def realise(slots: dict[str, str], rng: random.Random) -> str:
    """One reference sentence (or two) for an MR: a random template, with the facts in random order."""
    name = slots["name"]
    kind = slots.get("eatType")
    facts = [s for s in SLOTS if s not in ("name", "eatType") and s in slots]
    rng.shuffle(facts)
    preds = [_predicate(s, slots[s], rng) for s in facts]
    style = rng.randrange(4)
    if kind and style == 0:  # "X is a pub. It ..., ... and ..."
        opening = f"{name} is {_ARTICLE[kind]}."
        return opening + (f" It {_join(preds)}." if preds else "")
    if kind and style == 1:  # "There is a pub called X that ..."
        return f"There is {_ARTICLE[kind]} called {name}" + (f" that {_join(preds)}." if preds else ".")
    if kind and style == 2 and preds:  # "X, a pub, ... . It ..."
        first, rest = preds[0], preds[1:]
        text = f"{name}, {_ARTICLE[kind]}, {first}."
        return text + (f" It {_join(rest)}." if rest else "")
    if kind:  # "X is a pub which ..."
        return f"{name} is {_ARTICLE[kind]} which " + (_join(preds) if preds else "is open every day") + "."
    if not preds:
        return f"{name} is a place to eat."
    if len(preds) > 2 and rng.random() < 0.5:  # two sentences
        cut = len(preds) // 2
        return f"{name} {_join(preds[:cut])}. It also {_join(preds[cut:])}."
    return f"{name} {_join(preds)}."


def random_mr(rng: random.Random) -> dict[str, str]:
    """A random MR: a name plus 2-7 of the other seven slots, as in E2E (3-8 slots per MR)."""
    others = [s for s in SLOTS if s != "name"]
    chosen = set(rng.sample(others, rng.randint(2, 7)))
    slots = {"name": rng.choice(NAMES)}
    for slot in others:
        if slot in chosen:
            slots[slot] = rng.choice(LANDMARKS) if slot == "near" else rng.choice(VALUES[slot])
    return slots


def generate_restaurants(n_rows: int, seed: int, refs: tuple[int, int] = (3, 5),
                         exclude: set[str] | None = None) -> list[Pair]:
    """``n_rows`` (mr, ref) pairs: distinct random MRs, each with ``refs`` (min, max) references."""
    rng = random.Random(seed)
    exclude = set(exclude or ())
    pairs: list[Pair] = []
    while len(pairs) < n_rows:
        slots = random_mr(rng)
        mr = format_mr(slots)
        if mr in exclude:
            continue
        exclude.add(mr)
        texts = {realise(slots, rng) for _ in range(rng.randint(*refs))}
        pairs += [(mr, text) for text in sorted(texts)][: n_rows - len(pairs)]
    return pairs


def build_restaurant_files(out_dir: Path = RESTAURANTS_DIR, sizes: dict[str, int] | None = None,
                           seed: int = 0) -> dict[str, int]:
    """Write ``train/validation/test.csv`` with MR-disjoint splits; returns the rows per split."""
    sizes = sizes or {"train": 4000, "validation": 400, "test": 200}  # the cpu profile's n_train/n_val/n_test
    seen: set[str] = set()
    for i, split in enumerate(SPLITS):
        pairs = generate_restaurants(sizes[split], seed=seed + i, exclude=seen)
        seen |= {mr for mr, _ in pairs}
        write_csv(pairs, out_dir / f"{split}.csv")
    return sizes
