"""The forgetting lab's results that notebooks 06 and 07 state in words, checked on the committed sweep.

Prose cannot be formatted from a variable, so each sentence that states a lab result is pinned here: the notebook,
the markdown cell (by id), a phrase of the sentence, and the fact it states, computed from ``results/forgetting-lab/``.
When new runs change a fact, its test fails until the sentence is rewritten; when a sentence is rewritten, its entry
must follow (the phrase test fails until it does). ``test_prose_figures`` does the same for printed numbers.
"""

import json
import re
from functools import cache
from pathlib import Path

import pytest

from minipeft.comparison import fewest_kept_at_matched_loss, lab_kept_parameters, lab_skeleton
from minipeft.forgetting import findings
from minipeft.forgetting.findings import MAIN_SETTINGS, MIN_SEEDS, best_task_loss, compare, front_of, runs_of
from minipeft.forgetting.frontier import pareto
from minipeft.forgetting.lab import MAIN_SEEDS, RANK_RATES, RANK_SETTINGS, RATES, load_runs, setting_name

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FULL, PREFIX, LORA = MAIN_SETTINGS["full"], MAIN_SETTINGS["prefix"], MAIN_SETTINGS["lora"]
TEXTS = ("english", "shakespeare")


@cache
def runs() -> tuple[dict, ...]:
    return tuple(load_runs())


def seeds_per_rate(setting: str) -> list[int]:
    return list(findings.seeds_per_rate(runs(), setting).values())


def overlap(c) -> bool:
    return not any(a.below(b) or b.below(a) for _, a, b in c.rows())


# The facts, each a function of the committed runs.
def main_grid_complete() -> bool:
    """Every rate of every method in the main grid has all its planned seeds, and they are five."""
    counts = {s: findings.seeds_per_rate(runs(), s) for s in MAIN_SETTINGS.values()}
    return len(MAIN_SEEDS) == 5 and all(
        sorted(counts[s]) == pytest.approx(sorted(RATES[k])) and set(counts[s].values()) == {len(MAIN_SEEDS)}
        for k, s in MAIN_SETTINGS.items())


def prefix_front_two_points() -> bool:
    """The prefix's Pareto front is its rates 3.16e-4 and 1e-3 (1e-3 learned more, 3.16e-4 forgot less), and its two
    higher rates learned less and forgot more than 1e-3."""
    best = point(PREFIX, 1e-3)
    return sorted(lr for lr, _ in pareto_rates(PREFIX)) == pytest.approx([3.16e-4, 1e-3]) and all(
        point(PREFIX, lr).loss.mean > best.loss.mean and point(PREFIX, lr).forgot.mean > best.forgot.mean
        for lr in (3.16e-3, 1e-2))


def seeds_behind_the_sizes(at_least: int) -> bool:
    """The sizes 07's 参数效率 reads (the rank runs and the main grid's two) have ``at_least`` seeds at every rate."""
    return min(c for s in [*RANK_SIZES, PREFIX, LORA] for c in seeds_per_rate(s)) >= at_least


def diverged_at_top_rates_only() -> bool:
    """Every run with task loss above 1 sits at the top rate of the prefix's or LoRA's grid, and every seed there."""
    main = [r for s in MAIN_SETTINGS.values() for r in runs_of(runs(), s)]
    diverged = {(setting_name(r), r["lr"]) for r in main if r["task_loss"] > 1.0}
    top = {(PREFIX, max(RATES["prefix"])), (LORA, max(RATES["lora"]))}
    return diverged == top and all(r["task_loss"] > 1.0 for r in main if (setting_name(r), r["lr"]) in top)


def verdict_is(claimed: str, other: str, word: str, direction: str, intervals_overlap: bool,
               texts: tuple[str, ...] = TEXTS) -> bool:
    cs = [compare(runs(), claimed, other, text) for text in texts]
    return all(c.verdict == word and c.direction() == direction and overlap(c) == intervals_overlap for c in cs)


def matched_levels_of_prefix_and_lora(n: int) -> bool:
    return len(compare(runs(), PREFIX, LORA).levels) == n


def prefix_above_lora_at_each_level() -> bool:
    """At every task loss both fronts reach, on both texts, the prefix's 95% interval of forgetting lies above
    LoRA's."""
    cs = [compare(runs(), PREFIX, LORA, text) for text in TEXTS]
    return all(c.rows() and all(lora.below(prefix) for _, prefix, lora in c.rows()) for c in cs)


def lowest_rate_learns_and_forgets_less(setting: str) -> bool:
    """The setting's lowest rate has a higher mean task loss and a lower mean forgetting than its next rate."""
    low, nxt = front_of(runs(), setting)[:2]
    return low.loss.mean > nxt.loss.mean and low.forgot.mean < nxt.forgot.mean


def rank_seeds(settings: list[str], at_least: int) -> bool:
    """Every setting named has ``at_least`` seeds at every rate."""
    return all(c and min(c) >= at_least for c in map(seeds_per_rate, settings))


RANK_SIZES = [f"lora r={r} {t}" for r, t in RANK_SETTINGS]
SIZE_PAIRS = [("lora r=1 qv", LORA), (LORA, "lora r=64 qv"), ("lora r=1 all", "lora r=8 all"),
              ("lora r=8 all", "lora r=64 all"), (LORA, "lora r=8 all")]  # notebook 06 section 6's pairs


def point(setting: str, lr: float):
    """The setting's frontier point at rate ``lr``."""
    (p,) = [p for p in front_of(runs(), setting) if p.lr == pytest.approx(lr)]
    return p


def higher_rate_learns_less_and_forgets_more(settings: list[str]) -> bool:
    """At each setting, the rank runs' higher rate has a higher mean task loss and forgetting than the lower one."""
    low, high = RANK_RATES
    return all(point(s, high).loss.mean > point(s, low).loss.mean
               and point(s, high).forgot.mean > point(s, low).forgot.mean for s in settings)


def diverged_at_top_rank_rate(setting: str) -> tuple[int, int]:
    """How many of the setting's seeds at the rank runs' higher rate diverged (task loss above 1), and of how many."""
    top = [r["task_loss"] for r in runs_of(runs(), setting) if r["lr"] == max(RANK_RATES)]
    return sum(loss > 1.0 for loss in top), len(top)


def front_is_the_lower_rate(settings: list[str]) -> bool:
    return all([lr for lr, _ in pareto_rates(s)] == [min(RANK_RATES)] for s in settings)


def pareto_rates(setting: str) -> list[tuple[float, tuple[float, float]]]:
    means = {p.lr: (p.loss.mean, p.forgot.mean) for p in front_of(runs(), setting)}
    kept = pareto(list(means.values()))
    return [(lr, m) for lr, m in means.items() if m in kept]


def only_first_pair_meets() -> bool:
    return [bool(compare(runs(), a, b).levels) for a, b in SIZE_PAIRS] == [True] + [False] * (len(SIZE_PAIRS) - 1)


def ahead(a: str, b: str) -> str | None:
    """Which of two fronts with no common task loss learned more and forgot less nearest the other, if one did."""
    return compare(runs(), a, b).ahead()


def r64_qv_between_r8_qv_points() -> bool:
    """r=64 q,v forgets more than r=8 q,v at the rank runs' lower rate, which learned less than r=64 did."""
    r64, r8 = point("lora r=64 qv", min(RANK_RATES)), point(LORA, min(RANK_RATES))
    return ahead(LORA, "lora r=64 qv") == "lora r=64 qv" and r64.forgot.mean > r8.forgot.mean \
        and r64.loss.mean < r8.loss.mean


def trade(small: str, large: str) -> bool:
    """No direction: the larger learned more (lower best task loss) and forgot more at its best."""
    (_, (loss_s, forgot_s)), (_, (loss_l, forgot_l)) = pareto_rates(small)[0], pareto_rates(large)[0]
    return ahead(small, large) is None and loss_l < loss_s and forgot_l > forgot_s


def targets_beat_rank() -> bool:
    """At every rank, every projection's best task loss is below q and v's, by more than the spread across ranks
    within either set of targets (means at each setting's best rate)."""
    best = {(r, t): best_task_loss(runs(), f"lora r={r} {t}")[1].mean for r in (1, 8, 64) for t in ("qv", "all")}
    gain = min(best[r, "qv"] - best[r, "all"] for r in (1, 8, 64))
    spread = max(max(best[r, t] for r in (1, 8, 64)) - min(best[r, t] for r in (1, 8, 64)) for t in ("qv", "all"))
    return gain > spread


def best_losses_overlap(a: str, b: str) -> bool:
    (_, la), (_, lb) = best_task_loss(runs(), a), best_task_loss(runs(), b)
    return not (la.below(lb) or lb.below(la))


def smallest_lora_below_the_level_overlapping_the_prefix() -> bool:
    """The level is the prefix's own best mean; the smallest LoRA that reaches it has a best-loss interval wholly below
    the level that overlaps the prefix's."""
    matched = fewest_kept_at_matched_loss(runs(), lab_kept_parameters(lab_skeleton()))
    prefix, lora = (matched.candidates[s][1] for s in (matched.prefix_setting, matched.lora_setting))
    return matched.level == prefix.mean and lora.high < matched.level and not (lora.below(prefix) or prefix.below(lora))


def full_reaches_the_lowest_best_loss() -> bool:
    """Full fine-tuning's best task loss is the lowest mean of every setting in the lab, and the interval of LoRA on
    every projection overlaps it at each rank."""
    settings = {setting_name(r) for r in runs()}
    full = best_task_loss(runs(), FULL)[1].mean
    return all(full < best_task_loss(runs(), s)[1].mean for s in settings - {FULL}) and all(
        best_losses_overlap(FULL, f"lora r={r} all") for r in (1, 8, 64))


def smallest_lora_keeps_fewer() -> bool:
    matched = fewest_kept_at_matched_loss(runs(), lab_kept_parameters(lab_skeleton()))
    if matched is None:
        return False
    kept = {s: c[3] for s, c in matched.candidates.items()}
    return kept[matched.lora_setting] < kept[matched.prefix_setting]


N06, N07 = "06_forgetting.ipynb", "07_comparison.ipynb"
CLAIMS = [  # (notebook, cell id, phrase of the sentence, the fact it states)
    *((nb, cell, phrase, main_grid_complete) for nb, cell, phrase in (
        (N06, "0edaf923", "The committed main grid is complete, five seeds at every rate"),
        (N06, "d2c9e427", "every method at four learning rates (five seeds each)"),
        (N06, "d2c9e427", "five at every rate of the main grid."),
        (N06, "d2c9e427", "With five seeds the interval has four degrees of freedom"),
        (N06, "c160f970", "with five seeds at every rate of the main grid"),
        (N07, "c7f80ae8", "which hold five seeds at every rate of the main grid"),
        (N07, "af7ba7ee", "The committed main grid has five seeds at every rate"),
        (N07, "7c2e9d14", "t-intervals over five seeds"))),
    (N06, "7e00eaef", "The prefix's front is two points, its rates 0.000316 and 0.001: 0.001 learned more, 0.000316 "
                      "forgot less (in the means), and its two higher rates learned less and forgot more than 0.001",
     prefix_front_two_points),
    *((nb, cell, phrase, lambda: matched_levels_of_prefix_and_lora(3)) for nb, cell, phrase in (
        (N06, "e5a18b36", "read at three matched task losses (the table's rows)"),
        (N07, "af7ba7ee", "read at three matched task losses (the cell prints them)"),
        (N07, "7c2e9d14", "The lab compares the two at three matched task losses"))),
    *((nb, cell, phrase, lambda: seeds_behind_the_sizes(3)) for nb, cell, phrase in (
        (N07, "7c2e9d14", "\"reaches\" compares means over three seeds or more"),
        (N07, "d265390d", "by means over three seeds or more"))),
    (N06, "7e00eaef", "every seed at the top rate of the prefix's and of LoRA's grid", diverged_at_top_rates_only),
    (N07, "3e8b61fa", "every seed at those rates diverged", diverged_at_top_rates_only),
    *((nb, cell, phrase, lambda: verdict_is(PREFIX, LORA, "not supported", "more", False)
       and prefix_above_lora_at_each_level()) for nb, cell, phrase in (
        (N06, "e5a18b36", "At each, the prefix's mean forgetting is higher than LoRA's and the two 95% intervals "
                          "separate"),
        (N06, "e5a18b36", "so \"not supported\" here rests on separated intervals, not on the means alone: at matched "
                          "task loss, the prefix forgot more than LoRA"),
        (N06, "c160f970", "is not supported: at the task losses both fronts reach, the prefix's mean forgetting is "
                          "higher than LoRA's, with separated 95% intervals at each of them, so here the prefix "
                          "forgot more"),
        (N07, "af7ba7ee", "so the verdict \"not supported\" rests on separated intervals: at matched task loss the "
                          "prefix forgot more than LoRA here"),
        (N07, "7c2e9d14", "There the prefix's mean forgetting is higher than LoRA's at each, and the printed 95% "
                          "t-intervals over five seeds (section 2.3) separate at each of them"),
        (N07, "51cb7e18", "the prefix's mean is higher and the 95% intervals separate at each of them"),
        (N07, "d265390d", "the prefix's mean forgetting is higher than LoRA's, with separated 95% intervals at each of "
                          "them: here the prefix forgot more"))),
    *((nb, cell, phrase, lambda: verdict_is(FULL, LORA, "supported", "less", False)
       and verdict_is(FULL, PREFIX, "supported", "less", False)) for nb, cell, phrase in (
        (N06, "c160f970", "full fine-tuning forgets less than LoRA and than the prefix at matched task loss "
                          "(supported, on both texts)"),
        (N07, "51cb7e18", "forgets least (supported, against LoRA and the prefix, on both texts)"))),
    *((nb, cell, phrase, lambda: verdict_is("lora r=1 qv", LORA, "not supported", "more", True, ("english",)))
      for nb, cell, phrase in (
        (N06, "rank-reading", "r=1's mean forgetting is higher at each, and the intervals overlap"),
        (N06, "c160f970", "r=1 on q and v does not forget less than r=8 at the same task loss (not supported"),
        (N07, "51cb7e18", "r=1 on q and v did not forget less than r=8"))),
    (N06, "4a6b42c2", "as the lowest rate does against the next for every method in section 5",
     lambda: all(map(lowest_rate_learns_and_forgets_less, (FULL, PREFIX, LORA)))),
    (N06, "rank-reading", "Every rank setting has at least three seeds at both its rates",
     lambda: rank_seeds([*RANK_SIZES, LORA], at_least=MIN_SEEDS)),
    *((nb, cell, phrase, lambda: rank_seeds(RANK_SIZES, at_least=MIN_SEEDS) and MIN_SEEDS == 3
       and {n for lr, n in findings.seeds_per_rate(runs(), LORA).items() if lr in RANK_RATES} == {5})
      for nb, cell, phrase in (
        (N06, "rank-reading", "(r=8 on q and v, the main grid's LoRA, has five)"),
        (N06, "c160f970", "Of the rank runs (three seeds each; five for r=8 on q and v, the main grid's LoRA)"))),
    (N06, "rank-reading", "on every projection at each rank, and for r=64 on q and v, the higher rate learned less and "
                          "forgot more than the lower one (for r=64 on every projection every seed diverged; for r=64 "
                          "on q and v one of its three seeds did",
     lambda: higher_rate_learns_less_and_forgets_more([s for s in RANK_SIZES if s != "lora r=1 qv"])
     and diverged_at_top_rank_rate("lora r=64 all") == (3, 3) and diverged_at_top_rank_rate("lora r=64 qv") == (1, 3)),
    (N06, "c160f970", "(r=1 against r=8 on every projection is a trade)",
     lambda: trade("lora r=1 all", "lora r=8 all")),
    (N06, "rank-reading", "so each of those fronts is one point, its lower rate",
     lambda: front_is_the_lower_rate([s for s in RANK_SIZES if s != "lora r=1 qv"])),
    *((nb, cell, phrase, only_first_pair_meets) for nb, cell, phrase in (
        (N06, "rank-reading", "Every other pair shares no task loss"),
        (N06, "c160f970", "the other pairs of sizes share no task loss, so section 6 gives them directions"),
        (N07, "51cb7e18", "the other pairs of sizes share no task loss, so it gives them directions"))),
    (N06, "rank-reading", "on every projection, r=8 against r=64: r=8 learned more and forgot less",
     lambda: ahead("lora r=8 all", "lora r=64 all") == "lora r=8 all"),
    (N06, "rank-reading", "at r=8, every projection against q and v: every projection learned more and forgot less "
                          "than q and v at its lowest task loss (its rate 0.01",
     lambda: ahead(LORA, "lora r=8 all") == "lora r=8 all" and best_task_loss(runs(), LORA)[0] == pytest.approx(1e-2)),
    (N06, "rank-reading", "r=64 learned more, and forgot less than r=8 at r=8's lowest task loss, but more than r=8 at "
                          "its rate 0.00316, which learned a little less", r64_qv_between_r8_qv_points),
    (N06, "rank-reading", "on every projection, r=1 against r=8 is a trade, not a direction: r=8 learned more and "
                          "forgot more", lambda: trade("lora r=1 all", "lora r=8 all")),
    *((nb, cell, phrase, targets_beat_rank) for nb, cell, phrase in (
        (N06, "rank-reading", "Adding targets lowered the best task loss at every rank, in the means (each setting's "
                              "best rate in the table), by more than any change of rank did with the same targets"),
        (N06, "c160f970", "adding targets lowered the best task loss more than any change of rank did"),
        (N07, "51cb7e18", "LoRA on every projection reached a lower best task loss than on q and v at each rank it "
                          "ran"))),
    (N07, "51cb7e18", "the lab's r=1 and r=8 on q and v reach overlapping best task losses",
     lambda: best_losses_overlap("lora r=1 qv", LORA)),
    (N07, "7c2e9d14", "the smallest LoRA of the lab's that gets there keeps fewer than its prefix",
     smallest_lora_keeps_fewer),
    (N07, "7c2e9d14", "the level is the prefix's own best mean, and the smallest LoRA that reaches it has an interval "
                      "(printed in section 2.1) below the level that still overlaps the prefix's own",
     smallest_lora_below_the_level_overlapping_the_prefix),
    (N07, "51cb7e18", "at each rank it ran, in the means (at r=64 the intervals overlap), by more than any change "
                      "of rank did with the same targets",
     lambda: targets_beat_rank() and best_losses_overlap("lora r=64 qv", "lora r=64 all")),
    (N07, "51cb7e18", "(r=1 against r=8 on every projection is a trade)",
     lambda: trade("lora r=1 all", "lora r=8 all")),
    (N07, "51cb7e18", "In the lab it reached the lowest best task loss in the means, with LoRA on every projection's "
                      "intervals overlapping it", full_reaches_the_lowest_best_loss),
]


def markdown(notebook: str, cell_id: str) -> str:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    (cell,) = [c for c in cells if c.get("id") == cell_id]
    return re.sub(r"\s+", " ", "".join(cell["source"]))


@pytest.mark.parametrize("notebook, cell_id, phrase", [c[:3] for c in CLAIMS], ids=lambda v: str(v)[:40])
def test_the_sentence_is_still_there(notebook, cell_id, phrase):
    assert phrase in markdown(notebook, cell_id), (
        f"{notebook} cell {cell_id} no longer says {phrase!r}: update its entry in CLAIMS with the new sentence")


@pytest.mark.parametrize("notebook, cell_id, phrase, fact", CLAIMS, ids=lambda v: str(v)[:40])
def test_the_committed_sweep_still_says_it(notebook, cell_id, phrase, fact):
    assert fact(), (f"{notebook} cell {cell_id} says {phrase!r}, which the committed sweep in results/forgetting-lab/ "
                    f"no longer bears out: rewrite the sentence (and its entry here) from the stored outputs")
