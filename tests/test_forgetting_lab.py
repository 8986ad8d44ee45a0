"""The forgetting lab: its statistics and verdicts on constructed cases, and one run measured on a tiny model."""

import math

import pytest

from minipeft.forgetting.frontier import (
    Interval,
    Point,
    at_matched_loss,
    forgetting_at,
    frontier,
    matched_levels,
    pareto,
    t_interval,
    verdict,
)


def test_t_interval_matches_a_hand_computed_one():
    # values 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.303, half width 4.303 / sqrt(3) = 2.4843
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    assert math.isclose(iv.high - 2.0, 2.4843, abs_tol=1e-4) and math.isclose(2.0 - iv.low, 2.4843, abs_tol=1e-4)
    assert t_interval([5.0]) == Interval(5.0, 5.0, 5.0, 1)
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])


def test_pareto_drops_points_beaten_on_both_axes():
    # (0.5, 2.0) learns less and forgets more than (0.4, 1.0): never the rate to pick
    assert pareto([(0.4, 1.0), (0.5, 2.0), (0.3, 3.0), (0.6, 0.5)]) == [(0.3, 3.0), (0.4, 1.0), (0.6, 0.5)]


def test_forgetting_at_interpolates_along_the_front_and_refuses_to_extrapolate():
    points = [(0.3, 3.0), (0.4, 1.0), (0.6, 0.5)]
    assert math.isclose(forgetting_at(points, 0.35), 2.0)
    assert math.isclose(forgetting_at(points, 0.5), 0.75)
    assert forgetting_at(points, 0.6) == 0.5
    assert math.isnan(forgetting_at(points, 0.7)) and math.isnan(forgetting_at(points, 0.2))


def test_frontier_groups_seeds_by_rate_and_keeps_them_paired():
    runs = [{"lr": 1e-3, "task_loss": 0.5, "f": 1.0}, {"lr": 1e-4, "task_loss": 0.9, "f": 0.1},
            {"lr": 1e-3, "task_loss": 0.4, "f": 2.0}]
    front = frontier(runs, lambda r: r["f"])
    assert [p.lr for p in front] == [1e-4, 1e-3]
    assert front[1].task_loss == (0.5, 0.4) and front[1].forgetting == (1.0, 2.0)


def _front(points: list[tuple[float, list[float], list[float]]]) -> list[Point]:
    return [Point(lr, tuple(loss), tuple(forgot)) for lr, loss, forgot in points]


def test_matched_loss_comparison_separates_a_clear_gap_and_repeats():
    # LoRA forgets 1 nat less than the prefix at every task loss, with little seed noise
    noise = [-0.01, 0.0, 0.01, 0.005, -0.005]
    prefix = _front([(lr, [loss + e for e in noise], [3.0 - 2 * loss + 1 + e for e in noise])
                     for lr, loss in ((1e-3, 0.6), (3e-3, 0.5), (1e-2, 0.4))])
    lora = _front([(lr, [loss + e for e in noise], [3.0 - 2 * loss + e for e in noise])
                   for lr, loss in ((1e-3, 0.62), (3e-3, 0.48), (1e-2, 0.38))])
    levels = matched_levels(prefix, lora, n=3)
    assert math.isclose(levels[0], 0.4) and math.isclose(levels[-1], 0.6)
    p, q = at_matched_loss(prefix, levels), at_matched_loss(lora, levels)
    assert all(b.below(a) for a, b in zip(p, q))
    assert verdict(p, q) == "not supported"  # "prefix forgets less" where it forgets more everywhere
    assert verdict(q, p) == "supported"
    assert at_matched_loss(prefix, levels) == p  # the bootstrap has a fixed seed


def test_no_overlap_in_task_loss_gives_no_levels():
    a = _front([(1e-3, [0.9, 0.91], [0.1, 0.1]), (3e-3, [0.8, 0.81], [0.2, 0.2])])
    b = _front([(1e-3, [0.3, 0.31], [1.0, 1.0]), (3e-3, [0.2, 0.21], [2.0, 2.0])])
    assert matched_levels(a, b) == []
    assert verdict([], []) == "not settled"


def iv(mean: float, half: float = 0.1) -> Interval:
    return Interval(mean, mean - half, mean + half, 5)


@pytest.mark.parametrize("claimed, other, expected", [
    ([iv(1.0), iv(1.0)], [iv(2.0), iv(2.0)], "supported"),  # less at every rate, separated
    ([iv(1.0), iv(1.95)], [iv(2.0), iv(2.0)], "supported"),  # less where separated, overlapping elsewhere
    ([iv(3.0), iv(2.5)], [iv(2.0), iv(2.0)], "not supported"),  # never less at any rate
    ([iv(2.05), iv(2.1)], [iv(2.0), iv(2.0)], "not supported"),  # never less even in the means, overlapping
    ([iv(1.0), iv(3.0)], [iv(2.0), iv(2.0)], "depends on the learning rate"),  # less at one rate, more at another
    ([iv(1.95), iv(2.05)], [iv(2.0), iv(2.0)], "not settled"),  # within the intervals, means both ways
])
def test_verdict_on_constructed_cases(claimed, other, expected):
    assert verdict(claimed, other) == expected
