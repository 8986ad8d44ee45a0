"""Meaning representations (MRs), E2E's input: ``name[The Eagle], eatType[pub], area[riverside]``."""

from __future__ import annotations

import re
from collections.abc import Sequence

SLOTS = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")
Pair = tuple[str, str]  # (mr, ref): an MR and one human sentence for it

_SLOT_RE = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*")


def parse_mr(mr: str, line: int | None = None) -> dict[str, str]:
    """``"name[The Eagle], area[riverside]"`` -> ``{"name": "The Eagle", "area": "riverside"}``.

    Raises ``ValueError`` naming the line for unbalanced brackets, an unknown or repeated slot, or text
    outside ``slot[value]`` items.
    """
    where = f"line {line}: " if line is not None else ""
    depth = 0
    for ch in mr:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth not in (0, 1):
            break
    if depth != 0:
        raise ValueError(f"{where}malformed MR {mr!r}: unbalanced brackets (write each slot as slot[value])")
    slots: dict[str, str] = {}
    for item in _split_items(mr):
        match = _SLOT_RE.fullmatch(item)
        if match is None:
            raise ValueError(f"{where}malformed MR {mr!r}: {item.strip()!r} is not of the form slot[value]")
        slot, value = match.group(1), match.group(2).strip()
        if slot not in SLOTS:
            raise ValueError(f"{where}unknown slot {slot!r} in MR {mr!r}; E2E slots are: {', '.join(SLOTS)}")
        if slot in slots:
            raise ValueError(f"{where}slot {slot!r} appears twice in MR {mr!r}")
        slots[slot] = value
    if not slots:
        raise ValueError(f"{where}empty MR {mr!r}: expected items such as name[The Eagle]")
    return slots


def _split_items(mr: str) -> list[str]:
    """Split on the commas between ``slot[value]`` items (not on commas inside a value)."""
    items, current, depth = [], "", 0
    for ch in mr:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [item for item in [*items, current] if item.strip()]


def format_mr(slots: dict[str, str]) -> str:
    """The inverse of :func:`parse_mr`, in E2E's slot order."""
    return ", ".join(f"{slot}[{slots[slot]}]" for slot in SLOTS if slot in slots)


def check_pairs(pairs: Sequence[Pair], source: str = "dataset") -> list[Pair]:
    """Validate every MR (errors name the CSV line) and refuse an empty dataset."""
    if len(pairs) == 0:
        raise ValueError(f"The {source} is empty: no (mr, ref) pairs. Check the file or split name, "
                         f"or raise the profile's n_train / n_val / n_test.")
    for i, (mr, _) in enumerate(pairs):
        parse_mr(mr, line=i + 2)  # +2: CSV line numbers count the header and start at 1
    return list(pairs)
