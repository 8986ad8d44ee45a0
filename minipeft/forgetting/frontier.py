"""The forgetting lab's statistics: frontiers over seeds, comparisons at matched task loss, and the verdicts.

A method's **frontier** is its runs at several learning rates: one point per rate, the mean task loss (how much it
learned; lower is more) against the mean forgetting (how much general-text cross-entropy rose, in nats), each with a
95% interval over the seeds. Two methods are compared **at matched task loss**: "for the same amount learned, which
forgets more?". Along each frontier only the points no other point beats on both axes count (a rate that learns
less *and* forgets more is never the one to pick); forgetting at a task loss between two such points is read off the
straight line joining them. That reading is a weighted sum of two rates' mean forgetting, so its 95% interval is a
t-interval of that sum (Welch's: each rate's seeds are independent runs), the weights held at the mean task losses.

A verdict is one of :data:`VERDICTS`, computed by :func:`verdict` from interval comparisons; it never reads more
into the numbers than the intervals allow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom: intervals over 2 to 31 seeds.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}
VERDICTS = ("supported", "not supported", "depends on the learning rate", "not settled")


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval ``[low, high]`` (equal to the mean when there is one seed only)."""

    mean: float
    low: float
    high: float
    n: int

    def below(self, other: Interval) -> bool:
        """Entirely below ``other``: the two intervals separate."""
        return self.high < other.low

    def bounds(self, spec: str = ".3f") -> str:
        """``[low, high]`` formatted with ``spec``, or ``n/a (1 seed)``: one seed has no interval (its ends equal
        the mean, which would read as "no uncertainty" where the truth is "unknown")."""
        if self.n < 2:
            return f"n/a ({self.n} seed)"
        return f"[{self.low:{spec}}, {self.high:{spec}}]"

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (a rate as a percentage: ``scaled(100)``)."""
        return Interval(self.mean * factor, self.low * factor, self.high * factor, self.n)

    def within(self, lowest: float, highest: float) -> Interval:
        """The interval cut to the values the quantity can take (a rate's t-interval can reach below 0)."""
        return Interval(self.mean, max(self.low, lowest), min(self.high, highest), self.n)

    def format(self, spec: str = ".3f") -> str:
        """``mean [low, high]``, each with ``spec`` (:meth:`bounds`: one seed prints ``n/a``)."""
        return f"{self.mean:{spec}} {self.bounds(spec)}"

    def __str__(self) -> str:
        return self.format()


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval: ``mean ± t(0.975, n-1) * s / sqrt(n)``."""
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value.")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, mean, mean, 1)
    if n - 1 not in T975:
        raise ValueError(f"t_interval covers 2 to {max(T975) + 1} values, got {n}.")
    half = T975[n - 1] * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class Point:
    """One learning rate of one method: the seeds' task losses and forgetting (nats), paired by seed."""

    lr: float
    task_loss: tuple[float, ...]
    forgetting: tuple[float, ...]

    @property
    def loss(self) -> Interval:
        return t_interval(self.task_loss)

    @property
    def forgot(self) -> Interval:
        return t_interval(self.forgetting)


def frontier(runs: Sequence[dict], forgetting: Callable[[dict], float]) -> list[Point]:
    """The runs of one method (and one size) as one point per learning rate, sorted by rate."""
    by_lr: dict[float, list[dict]] = {}
    for run in runs:
        by_lr.setdefault(run["lr"], []).append(run)
    return [Point(lr, tuple(r["task_loss"] for r in rs), tuple(forgetting(r) for r in rs))
            for lr, rs in sorted(by_lr.items())]


def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ``(task loss, forgetting)`` points no other point beats on both, sorted by task loss."""
    kept: list[tuple[float, float]] = []
    for loss, forgot in sorted(points):
        if not kept or forgot < kept[-1][1]:
            kept.append((loss, forgot))
    return kept


def forgetting_at(points: Sequence[tuple[float, float]], loss: float) -> float:
    """Forgetting at task loss ``loss`` on the Pareto front of ``points`` (straight lines between its points);
    NaN outside the losses the front spans."""
    front = pareto(points)
    for (l0, f0), (l1, f1) in zip(front, front[1:]):
        if l0 <= loss <= l1:
            return f0 + (f1 - f0) * (loss - l0) / (l1 - l0)
    return front[0][1] if math.isclose(loss, front[0][0]) else math.nan


def _means(front: Sequence[Point]) -> list[tuple[float, float]]:
    return [(statistics.fmean(p.task_loss), statistics.fmean(p.forgetting)) for p in front]


def matched_levels(a: Sequence[Point], b: Sequence[Point], n: int = 5) -> list[float]:
    """``n`` task losses inside the range both Pareto fronts span, evenly spaced with the ends left out (empty if the
    fronts do not overlap; the one shared loss if the fronts only touch)."""
    fa, fb = pareto(_means(a)), pareto(_means(b))
    low, high = max(fa[0][0], fb[0][0]), min(fa[-1][0], fb[-1][0])
    if low > high:
        return []
    return [low] if math.isclose(low, high) else [low + (high - low) * (k + 1) / (n + 1) for k in range(n)]


def at_matched_loss(front: Sequence[Point], levels: Sequence[float]) -> list[Interval]:
    """Forgetting at each task loss of ``levels`` along ``front``'s mean Pareto front, with a 95% interval: between
    two front points the reading is ``(1 - w) F0 + w F1`` (``w`` from the mean task losses, held fixed), so its
    variance is ``(1 - w)^2 s0^2/n0 + w^2 s1^2/n1`` and its degrees of freedom Welch-Satterthwaite's (rounded down:
    the wider interval). NaN outside the front; with one seed at a rate it reads, the interval is n/a."""
    means = _means(front)
    point = dict(zip(means, front, strict=True))
    kept = pareto(means)
    out = []
    for level in levels:
        pairs = [(a, b) for a, b in zip(kept, kept[1:]) if a[0] <= level <= b[0]] or (
            [(kept[0], kept[0])] if math.isclose(level, kept[0][0]) else [])
        if not pairs:
            out.append(Interval(math.nan, math.nan, math.nan, 0))
            continue
        a, b = pairs[0]
        w = 0.0 if a == b else (level - a[0]) / (b[0] - a[0])
        parts = [(1 - w, point[a].forgetting), (w, point[b].forgetting)] if a != b else [(1.0, point[a].forgetting)]
        parts = [(c, xs) for c, xs in parts if c > 0]
        n = min(len(xs) for _, xs in parts)
        mean = sum(c * statistics.fmean(xs) for c, xs in parts)
        if n < 2:
            out.append(Interval(mean, mean, mean, n))
            continue
        terms = [(c * c * statistics.variance(xs) / len(xs), len(xs) - 1) for c, xs in parts]
        var = sum(t for t, _ in terms)
        df = var * var / sum(t * t / d for t, d in terms) if var > 0 else min(d for _, d in terms)
        half = T975[max(1, min(int(df + 1e-9), max(T975)))] * math.sqrt(var)
        out.append(Interval(mean, mean - half, mean + half, n))
    return out


def verdict(claimed: Sequence[Interval], other: Sequence[Interval]) -> str:
    """Is "``claimed`` forgets less than ``other``" borne out, comparison by comparison (at matched task losses, or
    at matched rates)? ``supported``: less wherever the intervals separate, and they separate somewhere;
    ``not supported``: more wherever they separate, or never less even in the means; ``depends on the learning
    rate``: less at some comparisons, more at others, each separated; ``not settled``: no interval separates and
    the means point both ways (or there is nothing to compare)."""
    pairs = list(zip(claimed, other, strict=True))
    less = any(c.below(o) for c, o in pairs)
    more = any(o.below(c) for c, o in pairs)
    if less and more:
        return "depends on the learning rate"
    if less:
        return "supported"
    if more or (pairs and all(c.mean >= o.mean for c, o in pairs)):
        return "not supported"
    return "not settled"
