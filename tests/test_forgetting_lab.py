"""The forgetting lab: its statistics and verdicts on constructed cases, and one run measured on a tiny model."""

import copy
import json
import math
from dataclasses import asdict

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


def test_one_seed_prints_its_interval_as_not_available_never_as_zero_width():
    assert str(t_interval([5.0])) == "5.000 n/a (1 seed)"  # not "5.000 [5.000, 5.000]": unknown, not certain
    assert t_interval([1.0, 2.0, 3.0]).bounds("+.2f") == "[-0.48, +4.48]"
    assert str(Interval(1.0, 0.5, 1.5, 2)) == "1.000 [0.500, 1.500]"
    assert Interval(0.1, 0.05, 0.15, 3).scaled(100).format(".1f") == "10.0 [5.0, 15.0]"  # a rate as a percentage
    assert t_interval([0.2]).scaled(100).format(".1f") == "20.0 n/a (1 seed)"


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
    assert all(map(math.isclose, levels, (0.45, 0.5, 0.55))), "inside the shared range 0.4-0.6, its ends left out"
    p, q = at_matched_loss(prefix, levels), at_matched_loss(lora, levels)
    assert all(b.below(a) for a, b in zip(p, q))
    assert verdict(p, q) == "not supported"  # "prefix forgets less" where it forgets more everywhere
    assert verdict(q, p) == "supported"


def test_the_matched_loss_interval_is_welchs_t_interval_of_the_interpolated_mean():
    # two rates, 3 seeds each; task loss 0.5 lies halfway between their mean losses 0.6 and 0.4
    front = _front([(1e-3, [0.6, 0.6, 0.6], [1.0, 2.0, 3.0]), (1e-2, [0.4, 0.4, 0.4], [3.0, 4.0, 5.0])])
    (mid,) = at_matched_loss(front, [0.5])
    var = 0.25 * 1.0 / 3 + 0.25 * 1.0 / 3  # (1-w)^2 s0^2/n0 + w^2 s1^2/n1, w = 1/2, s^2 = 1
    df = var ** 2 / ((0.25 / 3) ** 2 / 2 + (0.25 / 3) ** 2 / 2)  # Welch-Satterthwaite: 4.0, so t(0.975, 4)
    assert math.isclose(df, 4.0) and math.isclose(mid.mean, 3.0) and mid.n == 3
    half = 2.776 * math.sqrt(var)
    assert math.isclose(mid.high - mid.mean, half) and math.isclose(mid.mean - mid.low, half)
    (end,) = at_matched_loss(front, [0.4])  # a front point itself: that rate's own t-interval
    assert math.isclose(end.mean, 4.0) and math.isclose(end.high - 4.0, 4.303 / math.sqrt(3))
    assert math.isnan(at_matched_loss(front, [0.7])[0].mean), "outside the front: no reading"
    (thin,) = at_matched_loss(_front([(1e-3, [0.6], [1.0]), (1e-2, [0.4, 0.4], [3.0, 4.0])]), [0.5])
    assert thin.n == 1 and thin.bounds() == "n/a (1 seed)"


def test_three_noisy_seeds_do_not_separate_what_their_means_order():
    # the prefix forgets more in the means, but one seed of three is far off: a 95% t-interval over 3 seeds is wide
    prefix = _front([(1e-3, [0.44, 0.44, 0.45], [1.99, 2.10, 1.22]), (3e-3, [0.50, 0.56, 0.52], [2.4, 2.0, 1.9])])
    lora = _front([(1e-3, [0.52, 0.52, 0.53], [0.75, 0.63, 0.70]), (3e-3, [0.42, 0.43, 0.43], [1.5, 1.2, 1.4])])
    levels = matched_levels(prefix, lora, n=3)
    p, q = at_matched_loss(prefix, levels), at_matched_loss(lora, levels)
    assert all(a.mean > b.mean for a, b in zip(p, q)) and not any(b.below(a) or a.below(b) for a, b in zip(p, q))
    assert verdict(p, q) == "not supported"  # never less even in the means: the rule's own words


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


# ----------------------------------------------------------------------------- one run, measured on a tiny model
import torch  # noqa: E402
from conftest import make_tiny_llama  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from minipeft.data import prompt_text  # noqa: E402
from minipeft.forgetting import lab  # noqa: E402
from minipeft.smollm2 import SMOLLM2_DIR  # noqa: E402


def test_intruders_counts_a_new_direction_unlike_every_old_one():
    w0 = torch.diag(torch.arange(10.0, 0.0, -1.0))  # singular vectors: the basis vectors e_1 ... e_10
    u = torch.ones(10) / 10**0.5  # cosine 1/sqrt(10) = 0.316 with every e_i: below 0.5
    assert lab.intruders(w0, w0 + 100 * torch.outer(u, u), k=1) == 1
    v = (torch.eye(10)[0] + torch.eye(10)[1]) / 2**0.5  # cosine 0.707 with e_1 and e_2: not an intruder
    assert lab.intruders(w0, w0 + 100 * torch.outer(v, v), k=1) == 0
    assert lab.intruders(w0, w0, k=3) == 0


def test_lora_alpha_follows_rslora():
    # alpha / r = ALPHA_RS / sqrt(r): 8 * sqrt(2) / sqrt(2) = 8 at r=2 (the course recipe's alpha 16 at r=2)
    run = lab.LabRun("lora", 1e-2, 0, r=2, targets="qv")
    assert math.isclose(run.alpha / run.r, 8.0)
    assert math.isclose(lab.LabRun("lora", 1e-2, 0, r=64, targets="qv").alpha / 64, 8 * 2**0.5 / 8)


def test_the_grids_hold_what_the_issue_asks():
    runs = lab.main_grid()
    assert len(runs) == 60 and len({r.name for r in runs}) == 60
    for rates in lab.RATES.values():
        assert len(rates) >= 4 and max(rates) / min(rates) >= 30
    assert {(r.r, r.targets) for r in lab.rank_grid()} == set(lab.RANK_SETTINGS)


def test_notebook06s_gpu_estimate_sizes_the_runs_it_trains_there(monkeypatch):
    """One T4 estimate per setting that notebook 06 trains live in the gpu profile, each sized by the parameters its
    model really trains (checked on a tiny GPT-2, LoRA on every projection too)."""
    from conftest import make_tiny_gpt2

    from minipeft.forgetting.findings import live_slice
    from minipeft.params import count_parameters

    monkeypatch.delenv("MINIPEFT_DRY_RUN", raising=False)
    live = {lab.setting_name(asdict(run)): run for run in live_slice("gpu", [])}
    assert [p.label.split(", ")[1].split(" (")[0] for p in lab.notebook06_gpu_peaks()] == list(live)
    base = make_tiny_gpt2()
    for run in [*live.values(), lab.LabRun("lora", 1e-2, 0, r=4, targets="all")]:
        assert lab.gpt2_trainable(run, base.config) == count_parameters(run.build(base), trainable_only=True), run


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory):
    if not (SMOLLM2_DIR / "tokenizer.json").is_file():
        pytest.skip(f"SmolLM2's tokenizer is not cached at {SMOLLM2_DIR} (set-up builds it)")
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2_DIR)
    base = make_tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=512, pad_token_id=tokenizer.eos_token_id,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    scale = lab.LabScale(steps=2, n_val=64, n_mrs=4, texts={"english": 4, "shakespeare": 2}, block_len=256,
                         max_new_tokens=40)
    return lab.LabContext.create(base, tokenizer, "tiny-llama", "ci", scale)


def test_weight_view_reads_q_and_v_from_gpt2s_fused_c_attn():
    from conftest import make_tiny_gpt2

    from minipeft.recipes import build

    base = make_tiny_gpt2()
    model = lab.LabRun("lora", 1e-2, 0, r=2, targets="qv").build(base)
    for layer in lab.lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B)  # a non-zero update
    before, after = lab.qv_weights(base), lab.qv_weights(model)
    d = base.config.n_embd
    assert sorted(before) == sorted(f"transformer.h.{i}.attn.c_attn.{p}" for i in range(base.config.n_layer)
                                    for p in "qv")
    w = base.transformer.h[0].attn.c_attn.weight  # Conv1D: (in, 3 * out) = [q | k | v] columns
    assert torch.equal(before["transformer.h.0.attn.c_attn.q"], w[:, :d].T)
    assert torch.equal(before["transformer.h.0.attn.c_attn.v"], w[:, 2 * d:].T)
    layer = lab.lora_layers(model)["transformer.h.0.attn.c_attn"]
    delta = layer.delta_weight().T  # (3 * out, in)
    assert torch.allclose(after["transformer.h.0.attn.c_attn.v"] - before["transformer.h.0.attn.c_attn.v"],
                          delta[2 * d:])
    view = lab.weight_view(base, model)
    assert view["dw_rel_norm"] > 0 and 1 <= view["dw_effective_rank"] <= 2  # rank-2 updates
    assert lab.weight_view(base, build("full", copy.deepcopy(base)))["dw_rel_norm"] == 0.0


def test_scales_per_profile():
    assert lab.lab_scale("ci") == lab.CI_SCALE and lab.lab_scale("cpu") == lab.FULL_SCALE == lab.lab_scale("gpu")
    assert lab.FULL_SCALE.steps == lab.STEPS and sum(lab.FULL_SCALE.texts.values()) * lab.FULL_SCALE.block_len == 24_576


@pytest.mark.parametrize("run", [lab.LabRun("full", 1e-3, 0, steps=2), lab.LabRun("lora", 1e-2, 1, r=2, targets="qv",
                                 steps=2), lab.LabRun("prefix", 1e-2, 0, length=3, steps=2)], ids=lambda r: r.method)
def test_a_run_measures_learning_forgetting_and_controls(tiny_context, run, tmp_path):
    before = {k: v.clone() for k, v in tiny_context.base.state_dict().items()}
    (path,) = lab.sweep([run, run], tiny_context, tmp_path)  # the second is the same run: skipped once written
    record = lab.load_runs(tmp_path)[0]
    assert path.name == f"{run.name}.json" and record["method"] == run.method and record["seed"] == run.seed
    assert set(record["general_nats_after"]) == {"english", "shakespeare"}
    assert record["general_nats_before"] == tiny_context.before
    assert record["general_nats_after"] != record["general_nats_before"]  # training moved the model
    assert 0 <= record["ser"] <= 1 and record["task_loss"] > 0 and record["seconds_per_step"] > 0
    assert record["off_max_abs_logit_diff"] == (None if run.method == "full" else 0.0)
    assert ("dw_rel_norm" in record) == (run.method != "prefix")
    if run.method != "prefix":
        assert record["dw_rel_norm"] > 0 and record["dw_effective_rank"] >= 1 and isinstance(record["intruders"], int)
    assert {"commit", "dirty", "machine", "cpu", "date", "wall_seconds"} <= set(record["provenance"])
    assert record["provenance"]["cpu"].endswith(torch.backends.cpu.get_cpu_capability())
    assert all(torch.equal(v, before[k]) for k, v in tiny_context.base.state_dict().items())  # base untouched
    assert lab.sweep([run], tiny_context, tmp_path) == []  # resumable: nothing left to do


@pytest.mark.parametrize("run", [lab.LabRun("lora", 3e-2, 0, r=2, targets="qv", steps=3),
                                 lab.LabRun("prefix", 3e-2, 0, length=4, steps=3)], ids=lambda r: r.method)
def test_a_run_gives_the_same_record_whatever_ran_before_it(tiny_context, run):
    """Notebook 06 measures its live runs one after another: a run's initialisation and data order must come from its
    seed, not from the random state the runs before it left."""
    records = []
    for _ in range(2):
        records.append(lab.measure(run, tiny_context))
        torch.rand(1000)  # what another run, a generation or a learner's cell would draw
    assert records[0]["task_loss"] == records[1]["task_loss"]
    assert records[0]["general_nats_after"] == records[1]["general_nats_after"]


def test_the_prompt_control_scores_the_same_tokens(tiny_context, tmp_path):
    record = lab.prompt_control(tiny_context, tmp_path)
    assert (tmp_path / "control-prompt.json").is_file()
    assert set(record["general_nats_prompted"]) == set(tiny_context.before)
    # by hand, for one block: the prompt and MR in front, cross-entropy on the block's tokens 2..n only
    model, tokenizer, block, mr = tiny_context.base, tiny_context.tokenizer, tiny_context.blocks["english"][0], \
        tiny_context.mrs[0]
    prompt = tokenizer(lab.PROMPT + prompt_text(mr))["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + block.tolist()])).logits[0]
    predicted = logits[len(prompt):-1]  # the positions that predict block[1:]
    expected = torch.nn.functional.cross_entropy(predicted.float(), block[1:]).item()
    got = lab.prompted_nats(model, tokenizer, block[None], [mr])
    assert math.isclose(got, expected, rel_tol=1e-5)
    assert not math.isclose(got, lab.mean_nats(model, block[None]), rel_tol=1e-5)  # the context changed the score


def test_format_runs_reads_forgetting_in_nats():
    record = {"method": "lora", "r": 8, "targets": "qv", "length": None, "lr": 0.01, "seed": 2, "task_loss": 0.41,
              "ser": 0.125, "general_nats_before": {"english": 2.75, "shakespeare": 3.75},
              "general_nats_after": {"english": 3.0, "shakespeare": 3.5}}
    assert lab.forgetting_nats(record) == 0.25 and lab.forgetting_nats(record, "shakespeare") == -0.25
    assert lab.setting_name(record) == "lora r=8 qv"
    line = lab.format_runs([record]).splitlines()[1].split()
    assert line[:4] == ["lora", "r=8", "qv", "0.01"] and line[4:] == ["2", "0.410", "12.5", "+0.250", "-0.250"]


def test_the_best_rate_is_the_smaller_of_two_that_tie_in_task_loss():
    from minipeft.forgetting.findings import best_rate, best_task_loss

    def run(lr, loss, seed=0):
        return {"method": "lora", "lr": lr, "seed": seed, "steps": 60, "task_loss": loss, "r": 8, "targets": "qv",
                "length": None, "general_nats_before": {"english": 2.0}, "general_nats_after": {"english": 3.0}}

    records = [run(1e-3, 0.53), run(3.16e-3, 0.42525), run(1e-2, 0.42514), run(3.16e-2, 5.6)]
    assert best_task_loss(records, "lora r=8 qv")[0] == 1e-2  # the lowest loss, reported as it is
    assert best_rate(records, "lora r=8 qv") == 3.16e-3  # 0.0001 nats apart: a tie, the smaller rate is picked
    assert best_rate(records + [run(1e-3, 0.40, seed=1)], "lora r=8 qv") == 3.16e-3  # 1e-3's mean 0.465: no tie


def test_a_finding_says_which_way_the_means_point_and_marks_a_thin_verdict_provisional():
    from minipeft.forgetting.findings import MatchedComparison

    two = MatchedComparison("prefix P=10", "lora r=8 qv", "english", [0.45, 0.5], [iv(2.0), iv(1.9)],
                            [iv(1.4), iv(1.0)], 2, "not settled")
    assert two.finding() == ("prefix P=10 forgets more at 2 matched task losses, 0.450 to 0.500, in the means (+1.90 "
                             "to +2.00 nats against +1.00 to +1.40 for lora r=8 qv; the 95% intervals separate at 2 "
                             "of 2): \"prefix P=10 forgets less\" is not settled; 2 seed(s) so far, 3 needed for a "
                             "verdict.")
    one = MatchedComparison("prefix P=10", "lora r=8 qv", "english", [0.442], [iv(1.773, 1.2)], [iv(1.261)], 3,
                            "not supported")
    assert one.where() == "at the one matched task loss 0.442" and one.direction() == "more"
    assert one.finding().startswith("prefix P=10 forgets more at the one matched task loss 0.442, in the means "
                                    "(+1.77 [+0.57, +2.97] nats against +1.26 [+1.16, +1.36] for lora r=8 qv; the "
                                    "95% intervals overlap)")
    single = MatchedComparison("lora r=1 qv", "lora r=8 qv", "english", [0.44], [Interval(1.5, 1.5, 1.5, 1)],
                               [iv(1.0)], 1, "not settled")
    assert "one seed: no intervals" in single.finding() and "n/a (1 seed)" in single.finding()
    apart = MatchedComparison("a", "b", "english", [], [], [], 1, "not settled", "0.404 only", "0.416 to 0.525")
    assert apart.finding() == ("a vs b: no common task loss yet (a's front 0.404 only and b's front 0.416 to 0.525; "
                               "1 seed(s) so far, 3 needed for a verdict).")
    ahead = MatchedComparison("a", "b", "english", [], [], [], 3, "not settled", "0.404 only", "0.416 to 0.525",
                              ((0.404, 1.5),), ((0.416, 2.0), (0.525, 0.7)))
    assert ahead.finding() == ("a vs b: no common task loss (a's front 0.404 only and b's front 0.416 to 0.525); a "
                               "learned more and forgot less, in the means (task loss 0.404, +1.50 nats against "
                               "0.416, +2.00): if its front keeps falling past the rates run, it forgets less at task "
                               "loss 0.416 too; a direction, not a verdict.")
    behind = MatchedComparison("a", "b", "english", [], [], [], 3, "not settled", "0.404 only", "0.416 to 0.525",
                               ((0.404, 2.5),), ((0.416, 2.0), (0.525, 0.7)))
    assert behind.finding().endswith("b's front 0.416 to 0.525)."), "learned more, forgot more: a trade, no direction"
    mixed = MatchedComparison("full", "lora r=8 qv", "english", [0.45, 0.5], [iv(0.1), iv(2.0)], [iv(1.4), iv(1.0)],
                              3, "depends on the learning rate")
    assert "less at 1 of 2 matched task losses, 0.450 to 0.500, in the means (" in mixed.finding()
    assert mixed.finding().endswith("learning rate.")
    flat = MatchedComparison("full", "prefix P=10", "english", [0.45, 0.5], [iv(0.1), iv(0.2)], [iv(2.041), iv(2.039)],
                             2, "not settled")
    assert "against +2.04 for prefix P=10" in flat.finding()  # ends equal at two decimals: one number, not "a to a"
    assert "95% t-interval" in flat.summary()


def test_run_missing_skips_written_runs_and_stops_at_max_runs(tmp_path, capsys):
    (tmp_path / "a.json").write_text("{}")
    measured = []

    def measure_one(name: str) -> dict:
        measured.append(name)
        return {"name": name, "provenance": {"wall_seconds": 1.0}}

    written = lab.run_missing(["a", "b", "c", "d"], lambda n: tmp_path / f"{n}.json", measure_one,
                              lambda n, record: f"run {record['name']}", max_runs=2)
    assert measured == ["b", "c"] and written == [tmp_path / "b.json", tmp_path / "c.json"]
    assert json.loads((tmp_path / "c.json").read_text())["name"] == "c"
    assert capsys.readouterr().out.splitlines() == ["[1] run b, 1 s", "[2] run c, 1 s"]
