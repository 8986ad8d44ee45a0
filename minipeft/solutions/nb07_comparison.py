"""Solutions to the exercises of ``07_comparison.ipynb``."""

from __future__ import annotations

from ..exercises import solution
from ..forgetting.frontier import Interval


@solution("07.1")
def verdict_of(claimed: list[Interval], other: list[Interval]) -> str:
    """The verdict on "``claimed`` is lower than ``other``", one pair of 95% intervals per comparison."""
    pairs = list(zip(claimed, other, strict=True))
    lower = any(c.high < o.low for c, o in pairs)  # separated, claimed below
    higher = any(o.high < c.low for c, o in pairs)  # separated, claimed above
    if lower and higher:
        return "depends on the learning rate"
    if lower:
        return "supported"
    if higher or (pairs and all(c.mean >= o.mean for c, o in pairs)):  # never lower, even in the means
        return "not supported"
    return "not settled"
