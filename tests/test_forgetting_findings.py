"""The lab's findings on constructed runs: the article's claim judged at matched task loss, the best task loss, and
the weight-space correlations."""

import math

import pytest

from minipeft.forgetting.findings import (
    MIN_SEEDS,
    article_forgetting_claim,
    best_task_loss,
    compare,
    seeds_per_rate,
    spearman,
    weight_correlations,
)

SIZES = {"full": {}, "prefix": {"length": 10}, "lora": {"r": 8, "targets": "qv"}}
NOISE = (-0.01, 0.0, 0.01, 0.005, -0.005)


def run(method: str, lr: float, seed: int, task_loss: float, forgot: float, **extra) -> dict:
    return {"method": method, "lr": lr, "seed": seed, "steps": 60, "task_loss": task_loss, **SIZES[method],
            "general_nats_before": {"english": 2.0}, "general_nats_after": {"english": 2.0 + forgot}, **extra}


def grid(method: str, points: list[tuple[float, float]], extra_forgetting: float, seeds: int = 5) -> list[dict]:
    """One method on a line forgetting = 3 - 2 * loss (+ extra), a rate per point, seeds with small noise."""
    return [run(method, 10.0 ** -(3 + i), s, loss + NOISE[s], 3.0 - 2 * loss + extra_forgetting + NOISE[s])
            for i, loss in enumerate(points) for s in range(seeds)]


def test_prefix_forgetting_more_everywhere_is_not_supported_and_less_is_supported():
    losses = [0.6, 0.5, 0.4]
    worse = grid("prefix", losses, 1.0) + grid("lora", losses, 0.0)
    better = grid("prefix", losses, 0.0) + grid("lora", losses, 1.0)
    claim = article_forgetting_claim(worse)
    assert claim.verdict == "not supported" and claim.seeds == 5 and len(claim.levels) == 3
    assert all(o.high < c.low for _, c, o in claim.rows())
    assert article_forgetting_claim(better).verdict == "supported"
    assert "not supported" in claim.summary() and f"{claim.claimed[0].mean:+.2f}" in claim.summary()


def test_too_few_seeds_is_not_settled_whatever_the_means_say():
    losses = [0.6, 0.5, 0.4]
    few = grid("prefix", losses, 1.0, seeds=MIN_SEEDS - 1) + grid("lora", losses, 0.0, seeds=MIN_SEEDS - 1)
    claim = article_forgetting_claim(few)
    assert claim.verdict == "not settled" and claim.seeds == MIN_SEEDS - 1
    assert claim.claimed[0].mean > claim.other[0].mean  # the means alone would have said "not supported"


def test_methods_that_share_no_task_loss_are_not_settled():
    records = grid("prefix", [0.9, 0.8], 0.0) + grid("lora", [0.3, 0.2], 0.0)
    claim = compare(records, "prefix P=10", "lora r=8 qv")
    assert claim.levels == [] and claim.verdict == "not settled" and "no common task loss" in claim.summary()


def test_best_task_loss_is_the_rate_with_the_lowest_mean():
    records = grid("full", [0.6, 0.35, 0.5], 0.0)
    lr, loss = best_task_loss(records, "full")
    assert lr == 1e-4 and math.isclose(loss.mean, 0.35) and loss.low < 0.35 < loss.high
    with pytest.raises(ValueError, match="No runs of 'lora r=8 qv'"):
        best_task_loss(records, "lora r=8 qv")


def test_seeds_per_rate_counts_distinct_seeds_of_one_setting_only():
    records = grid("prefix", [0.6, 0.5], 0.0, seeds=3)[:-1] + grid("lora", [0.6], 0.0, seeds=2)
    records.append(dict(records[0]))  # a second copy of one run is not a second seed
    assert seeds_per_rate(records, "prefix P=10") == {1e-3: 3, 1e-4: 2}
    assert seeds_per_rate(records, "lora r=8 qv") == {1e-3: 2} and seeds_per_rate(records, "full") == {}


def test_spearman_matches_hand_computed_ranks():
    assert math.isclose(spearman([1, 2, 3, 4], [10, 30, 20, 40]), 0.8)  # one swap: 1 - 6*2/(4*15)
    assert math.isclose(spearman([1, 2, 3], [3, 2, 1]), -1.0)
    assert math.isclose(spearman([1, 1, 2], [1, 1, 5]), 1.0)  # ties share their mean rank
    assert math.isnan(spearman([1, 2, 3], [0, 0, 0]))
    with pytest.raises(ValueError, match="same length >= 3"):
        spearman([1, 2], [1, 2])


def test_weight_correlations_leave_out_runs_that_did_not_learn():
    learned = [run("lora", 1e-3, s, 0.4, f, dw_rel_norm=n, dw_effective_rank=8 - n, intruders=s)
               for s, (f, n) in enumerate([(0.5, 0.1), (1.0, 0.2), (1.5, 0.3), (2.0, 0.4)])]
    diverged = run("lora", 1e-1, 0, 5.0, 0.1, dw_rel_norm=9.0, dw_effective_rank=0.0, intruders=0)
    corr = weight_correlations(learned + [diverged])
    assert corr["lora"]["n"] == 4 and "full" not in corr
    assert math.isclose(corr["lora"]["dw_rel_norm"], 1.0) and math.isclose(corr["lora"]["dw_effective_rank"], -1.0)


def test_frontier_table_and_plot_read_the_runs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from minipeft.forgetting.report import frontier_table, plot_frontiers

    records = grid("prefix", [0.6, 0.5], 1.0) + grid("lora", [0.6, 5.0], 0.0)  # LoRA's second rate diverged
    for r in records:
        r["ser"] = 0.25
    lines = frontier_table(records, ["prefix P=10", "lora r=8 qv"]).splitlines()
    assert len(lines) == 1 + 4 and lines[1].split()[:5] == ["prefix", "P=10", "0.0001", "5", "0.500"]  # by rate
    assert "25.0" in lines[1] and f"{3.0 - 2 * 0.5 + 1.0:+.3f}" in lines[1]
    ax = plot_frontiers(records, ["prefix P=10", "lora r=8 qv"], control=0.1)
    assert "5 diverged run(s) off the axes" in ax.get_title()  # LoRA's second rate: five seeds
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["prefix P=10", "lora r=8 qv",
                                                                   "prompt control (no training)"]
    assert len(ax.containers) == 3 and not any(line.get_marker() == "." for line in ax.lines)  # 5 seeds: bars
    colors = {line.get_label(): to_hex(line.get_color()) for line in ax.get_legend().get_lines()}
    assert colors["prefix P=10"] == to_hex("tab:green") and colors["lora r=8 qv"] == to_hex("tab:blue")
    others = ["lora r=8 all", "lora r=1 qv", "lora r=8 qv"]  # the first takes the cycle's first colour: not r=8's blue
    ax = plot_frontiers([r for r in records if r["method"] == "lora"]
                        + [{**r, "targets": "all"} for r in records if r["method"] == "lora"]
                        + [{**r, "r": 1} for r in records if r["method"] == "lora"], others, ax=plt.figure().gca())
    drawn = {line.get_label(): to_hex(line.get_color()) for line in ax.get_legend().get_lines()}
    assert len(set(drawn.values())) == 3 and drawn["lora r=8 qv"] == to_hex("tab:blue")
    thin = [r for r in records if r["seed"] < 2]  # two seeds a rate: the seeds as dots, no t-bars
    ax = plot_frontiers(thin, ["prefix P=10", "lora r=8 qv"], ax=plt.figure().gca())
    assert not ax.containers and sum(line.get_marker() == "." for line in ax.lines) == 3
    partly = [r for r in records if r["method"] == "prefix"]
    partly[-1] = {**partly[-1], "task_loss": 1.5}  # one seed of the prefix's second rate diverged
    ax = plot_frontiers(partly, ["prefix P=10"], ax=plt.figure().gca())
    assert len(ax.containers) == 1 and "1 diverged run(s) off the axes" in ax.get_title()  # no bar over both outcomes
    (dots,) = [line for line in ax.lines if line.get_marker() == "."]
    assert len(dots.get_xdata()) == 4 and max(dots.get_xdata()) < 1.0  # the seeds that learned
    assert max(ax.get_xlim()) < 1.0  # the diverged seed neither drawn nor stretching the axis
    plt.close("all")


def test_rate_labels_of_points_on_one_spot_do_not_print_over_each_other():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minipeft.forgetting.report import spread_labels

    ax = plt.figure(dpi=100).gca()
    ax.plot([0.0, 1.0], [0.0, 1.0])
    labels = [ax.annotate(s, (0.5, 0.5), textcoords="offset points", xytext=(4, 3)) for s in ("a", "b", "c")]
    far = ax.annotate("d", (0.0, 0.0), textcoords="offset points", xytext=(4, 3))  # alone: left where it was
    spread_labels(ax, [*labels, far], gap_pt=9.0)
    assert sorted(label.get_position()[1] for label in labels) == [3 - 18, 3 - 9, 3]  # one line apart each
    assert far.get_position() == (4, 3)
    plt.close("all")


def test_one_seed_rates_print_no_interval_in_the_table_and_the_summary():
    from minipeft.forgetting.report import frontier_table

    one = grid("prefix", [0.6, 0.5], 1.0, seeds=1) + grid("lora", [0.6, 0.5], 0.0, seeds=1)
    for r in one:
        r["ser"] = 0.25
    lines = frontier_table(one, ["prefix P=10", "lora r=8 qv"]).splitlines()[1:]
    assert len(lines) == 4 and all(line.count("n/a (1 seed)") == 2 and "[" not in line for line in lines)
    claim = compare(one, "prefix P=10", "lora r=8 qv")
    assert claim.seeds == 1 and claim.summary().count("n/a (1 seed)") == 2 * len(claim.levels) > 0
    assert "[" not in claim.summary()
