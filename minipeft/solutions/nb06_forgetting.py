"""Solutions to the exercises of ``06_forgetting.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("06.1")
def perplexity_increase(before: float, after: float) -> float:
    """Increase of perplexity in percent: 0 when unchanged, 100 when doubled."""
    return 100 * (after / before - 1)
