"""What the forgetting lab found: its runs read as frontiers, compared at matched task loss, and judged.

Notebook 06 shows these results and notebook 07's forgetting row reads the same functions, so the article's claim
(prefix-tuning 避免灾难性遗忘 高, LoRA 低: "the prefix avoids forgetting better") has one rule: :func:`compare`,
which hands :func:`.frontier.verdict` the forgetting of two methods at the task losses both reach.

A verdict needs :data:`MIN_SEEDS` seeds at every rate of both methods; with fewer, intervals are too wide (or, with
one seed, absent) and the answer is "not settled" whatever the means say.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..profiles import Profile, get_profile
from .frontier import Interval, Point, at_matched_loss, frontier, matched_levels, pareto, verdict
from .lab import RATES, LabRun, forgetting_nats, lab_scale, load_runs, main_grid, setting_name

MIN_SEEDS = 3
MAIN_SETTINGS = {"full": "full", "prefix": "prefix P=10", "lora": "lora r=8 qv"}  # the main grid's sizes
WEIGHT_METRICS = ("dw_rel_norm", "dw_effective_rank", "intruders")


def runs_of(records: Sequence[dict], setting: str, steps: int | None = None) -> list[dict]:
    """The runs of one setting (``setting_name``: ``full``, ``prefix P=10``, ``lora r=8 qv``, ...)."""
    return [r for r in records if setting_name(r) == setting and (steps is None or r["steps"] == steps)]


def seeds_per_rate(records: Sequence[dict], setting: str) -> dict[float, int]:
    """How many seeds each rate of one setting has run."""
    seeds: dict[float, set[int]] = {}
    for r in runs_of(records, setting):
        seeds.setdefault(r["lr"], set()).add(r["seed"])
    return {lr: len(s) for lr, s in seeds.items()}


def front_of(records: Sequence[dict], setting: str, text: str = "english") -> list[Point]:
    """One setting's frontier: a point per rate, forgetting (nats on ``text``) and task loss paired by seed."""
    return frontier(runs_of(records, setting), lambda r: forgetting_nats(r, text))


def fewest_seeds(front: Sequence[Point]) -> int:
    return min((len(p.task_loss) for p in front), default=0)


@dataclass(frozen=True)
class MatchedComparison:
    """Forgetting of ``claimed_method`` and ``other_method`` at the same task losses (``levels``), and the verdict
    on "``claimed_method`` forgets less"."""

    claimed_method: str
    other_method: str
    text: str
    levels: list[float]
    claimed: list[Interval]
    other: list[Interval]
    seeds: int
    verdict: str
    claimed_span: str = "not run"  # each front's task losses, "0.416 to 0.525" (read where no loss is shared)
    other_span: str = "not run"
    claimed_front: tuple[tuple[float, float], ...] = ()  # each front's Pareto means, (task loss, forgetting)
    other_front: tuple[tuple[float, float], ...] = ()

    def rows(self) -> list[tuple[float, Interval, Interval]]:
        return list(zip(self.levels, self.claimed, self.other, strict=True))

    def where(self) -> str:
        """Where the fronts were read: "at the one matched task loss 0.442" or "at 3 matched task losses, 0.426 to
        0.446"."""
        if len(self.levels) == 1:
            return f"at the one matched task loss {self.levels[0]:.3f}"
        return f"at {len(self.levels)} matched task losses, {self.levels[0]:.3f} to {self.levels[-1]:.3f}"

    def direction(self) -> str:
        """Which way the means point: "less", "more", or "less at 1 of 3" (``claimed_method`` forgets ...)."""
        less = sum(c.mean < o.mean for _, c, o in self.rows())
        return "less" if less == len(self.levels) else "more" if less == 0 else f"less at {less} of {len(self.levels)}"

    def finding(self) -> str:
        """What the comparison found, in one short sentence: which way the means point at the matched task losses,
        whether the 95% intervals separate there, and the verdict (marked provisional while a rate has fewer than
        :data:`MIN_SEEDS` seeds). With no common task loss: each front's task-loss span instead."""
        gate = "" if self.seeds >= MIN_SEEDS else f"; {self.seeds} seed(s) so far, {MIN_SEEDS} needed for a verdict"
        if not self.levels:
            spans = " and ".join(f"{name}'s front {span}" for name, span in
                                 ((self.claimed_method, self.claimed_span), (self.other_method, self.other_span)))
            yet = " yet" if self.seeds < MIN_SEEDS else ""
            return (f"{self.claimed_method} vs {self.other_method}: no common task loss{yet} ({spans}{gate})"
                    f"{self.apart()}.")
        way = self.direction()
        where = (f"{way} matched task losses, {self.levels[0]:.3f} to {self.levels[-1]:.3f}" if " of " in way
                 else f"{way} {self.where()}")
        apart = sum(c.below(o) or o.below(c) for _, c, o in self.rows())
        separate = ("one seed: no intervals" if any(min(c.n, o.n) < 2 for _, c, o in self.rows()) else
                    "the 95% intervals overlap" if not apart else "the 95% intervals separate" if len(self.levels) == 1
                    else f"the 95% intervals separate at {apart} of {len(self.levels)}")

        def span(xs: list[Interval]) -> str:
            if len(xs) == 1:
                return xs[0].format("+.2f")
            low, high = f"{min(x.mean for x in xs):+.2f}", f"{max(x.mean for x in xs):+.2f}"
            return low if low == high else f"{low} to {high}"

        return (f"{self.claimed_method} forgets {where}, in the means ({span(self.claimed)} nats against "
                f"{span(self.other)} for {self.other_method}; {separate}): \"{self.claimed_method} forgets less\" is "
                f"{self.verdict}{gate}.")

    def apart(self) -> str:
        """Where the fronts share no task loss: "; X learned more and forgot less ..." if the front that reaches the
        lower task loss also forgot less, in the means, at its point nearest the other front (so, were its front to
        keep falling as task loss rises, it would forget less at the other's nearest point too); else ""."""
        ahead = self.ahead()
        if ahead is None:
            return ""
        _, (loss, forgot), (other_loss, other_forgot) = self._nearest()
        return (f"; {ahead} learned more and forgot less, in the means (task loss {loss:.3f}, {forgot:+.2f} nats "
                f"against {other_loss:.3f}, {other_forgot:+.2f}): if its front keeps falling past the rates run, "
                f"it forgets less at task loss {other_loss:.3f} too; a direction, not a verdict")

    def _nearest(self) -> tuple[str, tuple[float, float], tuple[float, float]]:
        """The setting whose front reaches the lower task loss, and the two fronts' nearest points (task loss,
        forgetting): that front's last, the other's first."""
        (lower_name, lower), (_, upper) = sorted(((self.claimed_method, self.claimed_front),
                                                 (self.other_method, self.other_front)), key=lambda f: f[1][0][0])
        return lower_name, lower[-1], upper[0]

    def ahead(self) -> str | None:
        """With both fronts run: the setting whose front reaches the lower task loss, if it also forgot less at its
        point nearest the other front (in the means); else None."""
        if not (self.claimed_front and self.other_front):
            return None
        lower, (_, forgot), (_, other_forgot) = self._nearest()
        return lower if forgot < other_forgot else None

    def summary(self) -> str:
        """One sentence, every number formatted from the comparison."""
        if not self.levels:
            return (f"{self.claimed_method} and {self.other_method} reach no common task loss yet: "
                    f"verdict {self.verdict}.")
        spans = ", ".join(f"at task loss {lv:.3f} {c.mean:+.2f} {c.bounds('+.2f')} vs {o.mean:+.2f} "
                          f"{o.bounds('+.2f')}" for lv, c, o in self.rows())
        return (f"Forgetting on {self.text} text (nats, mean and 95% t-interval over {self.seeds} seed(s)), "
                f"{self.claimed_method} vs {self.other_method}: {spans}. \"{self.claimed_method} forgets less\": "
                f"{self.verdict}.")


def compare(records: Sequence[dict], claimed: str, other: str, text: str = "english", n_levels: int = 3
            ) -> MatchedComparison:
    """Is "``claimed`` forgets less than ``other``" borne out at matched task loss? ``claimed`` and ``other`` are
    setting names; the verdict is "not settled" until both have :data:`MIN_SEEDS` seeds at every rate."""
    a, b = front_of(records, claimed, text), front_of(records, other, text)
    seeds = min(fewest_seeds(a), fewest_seeds(b))
    levels = matched_levels(a, b, n_levels) if a and b else []
    ia, ib = (at_matched_loss(a, levels), at_matched_loss(b, levels)) if levels else ([], [])
    word = verdict(ia, ib) if seeds >= MIN_SEEDS else "not settled"
    return MatchedComparison(claimed, other, text, levels, ia, ib, seeds, word, loss_span(a), loss_span(b),
                             tuple(front_means(a)) if a else (), tuple(front_means(b)) if b else ())


def loss_span(front: Sequence[Point]) -> str:
    """The task losses a front's Pareto points span (means over seeds): "0.416 to 0.525", "0.404 only"."""
    kept = front_means(front) if front else []
    if not kept:
        return "not run"
    return f"{kept[0][0]:.3f} only" if len(kept) == 1 else f"{kept[0][0]:.3f} to {kept[-1][0]:.3f}"


def article_forgetting_claim(records: Sequence[dict] | None = None, text: str = "english") -> MatchedComparison:
    """The article's 避免灾难性遗忘 row (prefix 高, LoRA 低) as "the prefix forgets less than LoRA at the same task
    loss", on the main grid's sizes; ``records`` default to the committed lab runs."""
    records = load_runs() if records is None else records
    return compare(records, MAIN_SETTINGS["prefix"], MAIN_SETTINGS["lora"], text)


def best_task_loss(records: Sequence[dict], setting: str) -> tuple[float, Interval]:
    """The rate with the lowest mean task loss for ``setting``, and that loss's interval over the seeds."""
    front = front_of(records, setting)
    if not front:
        raise ValueError(f"No runs of {setting!r}: settings present are {sorted({setting_name(r) for r in records})}.")
    best = min(front, key=lambda p: p.loss.mean)
    return best.lr, best.loss


def best_rate(records: Sequence[dict], setting: str) -> float:
    """The rate to pick for ``setting``: of the rates whose mean task loss is within :data:`~minipeft.ladder.RATE_TIE`
    nats of the lowest, the smallest (``scripts/lr_check.py``'s rule): rates that close tie, and the smallest moves
    the model least."""
    from ..ladder import RATE_TIE

    front = front_of(records, setting)
    if not front:
        raise ValueError(f"No runs of {setting!r}: settings present are {sorted({setting_name(r) for r in records})}.")
    lowest = min(p.loss.mean for p in front)
    return min(p.lr for p in front if p.loss.mean <= lowest + RATE_TIE)


def live_slice(profile: str | Profile | None, records: Sequence[dict]) -> list[LabRun]:
    """The runs a notebook trains live: on a GPU (not a dry run) the whole main grid; elsewhere each method once,
    seed 0, at its :func:`best_rate` in ``records`` (the middle of its grid when it has no runs there), so a ``cpu``
    run repeats three committed runs and shows they reproduce."""
    profile = get_profile(profile)
    scale = lab_scale(profile)
    if profile.name == "gpu" and not profile.dry_run:
        return main_grid()
    runs = []
    for method, setting in MAIN_SETTINGS.items():
        size = next(r for r in main_grid() if r.method == method)
        lr = best_rate(records, setting) if runs_of(records, setting) else RATES[method][1]
        runs.append(LabRun(method, lr, 0, size.r, size.targets, size.length, scale.steps))
    return runs


def front_means(front: Sequence[Point]) -> list[tuple[float, float]]:
    """The Pareto front of a frontier's means, ``(task loss, forgetting)``, for plotting."""
    return pareto([(p.loss.mean, p.forgot.mean) for p in front])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"spearman needs two sequences of the same length >= 3, got {len(x)} and {len(y)}.")
    rx, ry = ranks(x), ranks(y)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return math.nan  # a constant has no rank order
    return statistics.correlation(rx, ry)


def weight_correlations(records: Sequence[dict], text: str = "english", max_task_loss: float = 1.0
                        ) -> dict[str, dict[str, float]]:
    """Per method (full, LoRA) and weight-space measure: Spearman's correlation with forgetting across runs that
    learned the task (``task_loss <= max_task_loss``; diverged runs would dominate any correlation)."""
    out: dict[str, dict[str, float]] = {}
    for method in ("full", "lora"):
        runs = [r for r in records if r["method"] == method and r["task_loss"] <= max_task_loss
                and all(k in r for k in WEIGHT_METRICS)]
        if len(runs) < 3:
            continue
        forgot = [forgetting_nats(r, text) for r in runs]
        out[method] = {k: spearman([float(r[k]) for r in runs], forgot) for k in WEIGHT_METRICS}
        out[method]["n"] = len(runs)
    return out

