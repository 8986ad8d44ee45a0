"""The article's table and advice as the package quotes them, and the rules and measurements that judge them."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot
import pytest
import torch

from minipeft.article import (
    ADVICE,
    ARTICLE_FILE,
    CITATION,
    RATINGS,
    TABLE,
    format_claims,
    format_table,
    quoted_strings,
)
from minipeft.comparison import (
    Evidence,
    RowResult,
    exact,
    fewest_kept_at_matched_loss,
    judge,
    judge_advice,
    judge_all_advice,
    kept_parameters,
    lab_kept_parameters,
    lab_skeleton,
    plot_rows,
    step_seconds,
    training_bytes,
)
from minipeft.forgetting.frontier import VERDICTS, Interval
from minipeft.recipes import build

matplotlib.use("Agg")

# The article's table and advice, copied from ../shared/reference/source-article.md (lines 180-191). The test reads
# that file where it is present (beside the repository); elsewhere it checks the package against this copy.
ARTICLE_EXCERPT = """| 特征 | 前缀微调 | LoRA |
|---|---|---|
| 参数效率 | 中等 | 高 |
| 训练速度 | 中等 | 快 |
| 内存占用 | 中等 | 低 |
| 可解释性 | 高 | 低 |
| 避免灾难性遗忘 | 高 | 低 |
选择建议:

如果对模型的可解释性要求较高,或者需要避免灾难性遗忘,可以选择前缀微调。

如果对训练速度和内存占用要求较高,可以选择LoRA。"""


def article_text() -> tuple[str, str]:
    """The text to check quotes against, and which one it is."""
    if ARTICLE_FILE.is_file():
        return ARTICLE_FILE.read_text(encoding="utf-8"), str(ARTICLE_FILE)
    return ARTICLE_EXCERPT, "the copy in tests/test_article.py (the article's file is not beside this repository)"


def test_every_quoted_string_is_the_articles_own_word_for_word():
    text, source = article_text()
    missing = [s for s in quoted_strings() if s not in text]
    assert not missing, f"not in {source}: {missing}"
    if ARTICLE_FILE.is_file():  # the copy above is the article's too
        assert ARTICLE_EXCERPT in text


def test_notebook_07_quotes_the_article_word_for_word():
    """Every stretch of Chinese in notebook 07 (prose and code) is the article's own, or the package's quotes of it
    where the article's file is absent."""
    text = ARTICLE_FILE.read_text(encoding="utf-8") if ARTICLE_FILE.is_file() else "\n".join(
        [ARTICLE_EXCERPT, CITATION, *quoted_strings()])
    cells = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "07_comparison.ipynb").read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells)
    stretches = [s.strip(",:") for s in re.findall(r"[\u4e00-\u9fff][\u4e00-\u9fff,:。、]*", source)]
    stretches = [s for s in stretches if len(s) >= 2]
    assert len(stretches) > 20  # the notebook quotes the article
    assert not [s for s in stretches if s not in text]


def test_the_ratings_are_the_articles_and_each_row_favours_the_method_it_rates_better():
    assert [(r.feature_zh, r.prefix_zh, r.lora_zh) for r in TABLE] == [
        ("参数效率", "中等", "高"), ("训练速度", "中等", "快"), ("内存占用", "中等", "低"), ("可解释性", "高", "低"),
        ("避免灾难性遗忘", "高", "低")]
    level = {"低": 0, "中等": 1, "高": 2, "快": 2}
    for row in TABLE:
        lower_is_better = row.feature_zh == "内存占用"  # memory use: "low" is the good rating
        lora_better = (level[row.lora_zh] < level[row.prefix_zh]) == lower_is_better
        assert row.favours == ("lora" if lora_better else "prefix"), row.feature_en
        assert row.feature_en and row.prefix_en and row.lora_en and row.claim
    assert [a.method for a in ADVICE] == ["prefix", "lora"]
    assert all(set(a.rows) <= set(RATINGS) for a in ADVICE)


def test_the_printed_table_carries_chinese_and_english():
    table = format_table()
    for row in TABLE:
        line = next(line for line in table.splitlines() if line.startswith(row.feature_zh))
        assert f"{row.prefix_zh} ({row.prefix_en})" in line and line.endswith(f"{row.lora_zh} ({row.lora_en})")
    assert all(a.zh in table and a.en in table for a in ADVICE)
    claims = format_claims()
    assert all(row.quotes for row in TABLE)
    assert all(zh in claims and en in claims for row in TABLE for zh, en in row.quotes)
    assert all(f"claim tested: {row.claim}" in claims for row in TABLE)


def interval(mean: float, half: float) -> Interval:
    return Interval(mean, mean - half, mean + half, 5)


def evidence(prefix: Interval, lora: Interval) -> Evidence:
    return Evidence("x", "s", prefix, lora)


@pytest.mark.parametrize(("pairs", "expected"), [
    ([(interval(2.0, 0.1), interval(1.0, 0.1))], "supported"),  # LoRA below, intervals apart
    ([(exact(115_200), exact(115_200))], "not supported"),  # a tie: LoRA does not keep fewer
    ([(interval(1.0, 0.1), interval(2.0, 0.1))], "not supported"),  # LoRA above
    ([(interval(1.0, 0.5), interval(1.1, 0.5)), (interval(1.1, 0.5), interval(1.0, 0.5))], "not settled"),
    ([(exact(6e6), exact(1e5)), (exact(1e5), exact(2e5))], "depends on what is counted"),
    ([], "not settled"),
])
def test_judge_reads_the_verdict_off_the_intervals(pairs, expected):
    speed = RATINGS["训练速度"]  # favours LoRA: lower seconds for LoRA supports it
    assert judge(speed, [evidence(p, q) for p, q in pairs], across="what is counted") == expected


def test_judge_takes_the_side_the_row_favours():
    forgetting = RATINGS["避免灾难性遗忘"]  # favours the prefix
    assert judge(forgetting, [evidence(interval(0.5, 0.1), interval(1.0, 0.1))]) == "supported"
    assert judge(forgetting, [evidence(interval(1.0, 0.1), interval(0.5, 0.1))]) == "not supported"
    mixed = [evidence(interval(0.5, 0.1), interval(1.0, 0.1)), evidence(interval(1.0, 0.1), interval(0.5, 0.1))]
    assert judge(forgetting, mixed) == "depends on the learning rate"


def test_advice_rests_on_its_rows():
    prefix_advice, lora_advice = ADVICE
    verdicts = {"可解释性": "not settled", "避免灾难性遗忘": "not supported", "训练速度": "supported",
                "内存占用": "supported", "参数效率": "depends on what is counted"}
    assert judge_advice(prefix_advice, verdicts) == "not supported"
    assert judge_advice(lora_advice, verdicts) == "supported"
    assert judge_advice(lora_advice, verdicts | {"训练速度": "not settled"}) == "not settled"
    assert judge_advice(prefix_advice, verdicts | {"避免灾难性遗忘": "depends on the learning rate"}) == \
        "depends on the learning rate"
    assert [v for _, v in judge_all_advice(verdicts)] == ["not supported", "supported"]
    assert judge_advice(lora_advice, verdicts | {"内存占用": "none (dry run)"}) == "none (dry run)"
    with pytest.raises(ValueError, match="内存占用"):
        judge_all_advice({k: v for k, v in verdicts.items() if k != "内存占用"})
    assert set(judge_advice(a, verdicts) for a in ADVICE) <= set(VERDICTS)


def test_step_seconds_leaves_out_each_runs_first_step():
    assert step_seconds([9.0, 1.0, 1.0, 1.0]) == Interval(1.0, 1.0, 1.0, 3)
    spread = step_seconds([9.0, 1.0, 2.0, 3.0])
    assert spread.mean == 2.0 and spread.low < 1.0 and spread.high > 3.0
    assert step_seconds([9.0, 1.0, 2.0], [7.0, 3.0]) == step_seconds([9.0, 1.0, 2.0, 3.0])  # two runs pooled
    with pytest.raises(ValueError, match="2 to 31"):
        step_seconds([1.0, 2.0])
    with pytest.raises(ValueError, match="2 to 31"):
        step_seconds([1.0] * 33)


@pytest.mark.parametrize("method", ["full", "lora", "prefix"])
def test_training_bytes_counts_what_a_step_holds_and_changes_nothing(tiny_llama, method, snapshot):
    model = build(method, tiny_llama(), r=2, prefix_len=4, mlp_hidden=16, targets="qv")
    before = snapshot(model)
    batch = {"input_ids": torch.randint(1, 101, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    counted = training_bytes(model, batch)
    trained = [p for p in model.parameters() if p.requires_grad]
    n_trained, n_all = sum(p.numel() for p in trained), sum(p.numel() for p in {id(p): p for p in
                                                                                   model.parameters()}.values())
    assert counted.weights == 4 * n_all
    assert counted.gradients == 4 * n_trained
    assert counted.optimizer == 8 * n_trained + 4 * len(trained)  # m and v, fp32; a float32 step count per tensor
    assert counted.activations > 0
    assert counted.total == sum(counted.parts().values())
    assert snapshot(model) == before and all(p.grad is None for p in trained)


def test_a_longer_prefix_saves_more_for_the_backward_pass(tiny_llama):
    batch = {"input_ids": torch.randint(1, 101, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    short, long = (training_bytes(build("prefix", tiny_llama(), prefix_len=n, mlp_hidden=16), batch).activations
                   for n in (2, 20))
    assert long > short


def test_kept_parameters_drops_the_prefix_mlp_and_keeps_the_model(tiny_llama):
    prefix = build("prefix", tiny_llama(), prefix_len=4, mlp_hidden=16)
    config = prefix.base.config
    assert kept_parameters(prefix, "prefix") == 2 * config.num_hidden_layers * 4 * config.num_key_value_heads * (
        config.hidden_size // config.num_attention_heads)
    assert prefix.mlp is not None  # folded a copy, not the model
    lora = build("lora", tiny_llama(), r=2, targets="qv")
    assert kept_parameters(lora, "lora") == sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert kept_parameters(copy.deepcopy(lora), "full") == sum(p.numel() for p in lora.parameters())


def test_the_lab_settings_are_counted_on_smollm2s_shapes():
    """The forgetting lab's sizes, counted on SmolLM2-135M's configuration without its weights, against the
    arithmetic: LoRA r*(d_in + d_out) per adapted matrix, a prefix a key and a value of the key/value width per layer
    and position."""
    from minipeft.smollm2 import REBUILD, SMOLLM2_DIR

    if not (SMOLLM2_DIR / "config.json").is_file():
        pytest.skip(f"SmolLM2-135M is not cached in {SMOLLM2_DIR} (make setup builds it: {REBUILD})")
    skeleton = lab_skeleton()
    config = skeleton.config
    layers, width, kv = config.num_hidden_layers, config.hidden_size, config.num_key_value_heads * config.head_dim
    kept = lab_kept_parameters(skeleton)
    assert kept(lab_record("lora", 8, 1e-2, 0.4)) == layers * 8 * ((width + width) + (width + kv))
    assert kept(lab_record("prefix", 10, 1e-3, 0.5)) == 2 * layers * 10 * kv
    assert all(p.is_meta for p in skeleton.parameters())  # shapes only, nothing loaded
    with pytest.raises(ValueError, match="smollm2-135m"):
        lab_skeleton("gpt2")


def lab_record(method: str, size: int, lr: float, loss: float, seed: int = 0) -> dict:
    size_keys = {"r": size if method == "lora" else None, "targets": "qv" if method == "lora" else None,
                 "length": size if method == "prefix" else None}
    return {"method": method, "lr": lr, "seed": seed, "steps": 60, "task_loss": loss, **size_keys,
            "general_nats_before": {"english": 2.0}, "general_nats_after": {"english": 2.5}}


def test_matched_loss_picks_each_methods_smallest_setting_that_gets_there():
    records = [lab_record("prefix", 10, 1e-3, 0.50), lab_record("prefix", 10, 1e-3, 0.52, seed=1),
               lab_record("prefix", 10, 1e-2, 0.70),
               lab_record("lora", 8, 1e-3, 0.40), lab_record("lora", 8, 1e-2, 0.90),
               lab_record("lora", 1, 1e-3, 0.48), lab_record("lora", 64, 1e-3, 0.30),
               lab_record("full", 0, 1e-4, 0.20)]

    def kept(record: dict) -> int:
        return 1000 * record["r"] if record["method"] == "lora" else 5000

    matched = fewest_kept_at_matched_loss(records, kept, min_seeds=1)
    assert math.isclose(matched.level, 0.51)  # the prefix's best (mean of two seeds); LoRA gets lower
    assert (matched.prefix_setting, matched.lora_setting) == ("prefix P=10", "lora r=1 qv")
    assert (matched.evidence.prefix.mean, matched.evidence.lora.mean) == (5000, 1000)
    lr, loss, rates, kept_r1 = matched.candidates["lora r=1 qv"]
    assert (lr, loss.mean, rates, kept_r1) == (1e-3, 0.48, 1, 1000) and matched.candidates["lora r=64 qv"][3] == 64000
    assert matched.candidates["lora r=8 qv"][2] == 2 and "(prefix P=10 vs lora r=1 qv)" in matched.evidence.what
    assert set(matched.candidates) == {"prefix P=10", "lora r=1 qv", "lora r=8 qv", "lora r=64 qv"}  # no full
    slow_r1 = [r for r in records if r.get("r") != 1] + [lab_record("lora", 1, 1e-3, 0.60)]
    assert fewest_kept_at_matched_loss(slow_r1, kept, min_seeds=1).lora_setting == "lora r=8 qv"  # r=1: not 0.51
    assert fewest_kept_at_matched_loss([r for r in records if r["method"] != "prefix"], kept, min_seeds=1) is None


def test_matched_loss_counts_only_settings_with_enough_seeds_at_every_rate():
    three = [lab_record(m, size, lr, loss + 0.01 * seed, seed) for seed in range(3)
             for m, size, lr, loss in (("prefix", 10, 1e-3, 0.50), ("prefix", 10, 1e-2, 0.70),
                                       ("lora", 8, 1e-3, 0.40), ("lora", 8, 1e-2, 0.90))]
    one_seed_r1 = [lab_record("lora", 1, 1e-3, 0.45)]  # smaller, and good enough, but one seed only

    def kept(record: dict) -> int:
        return 1000 * record["r"] if record["method"] == "lora" else 5000

    assert fewest_kept_at_matched_loss(three + one_seed_r1, kept).lora_setting == "lora r=8 qv"  # r=1 not counted
    assert "lora r=1 qv" not in fewest_kept_at_matched_loss(three + one_seed_r1, kept).candidates
    assert fewest_kept_at_matched_loss(three + one_seed_r1, kept, min_seeds=1).lora_setting == "lora r=1 qv"
    thin_prefix = [r for r in three if not (r["method"] == "prefix" and r["lr"] == 1e-2 and r["seed"] == 2)]
    assert fewest_kept_at_matched_loss(thin_prefix, kept) is None  # a rate of the prefix's one setting has 2 seeds


def test_the_figure_draws_every_row_with_its_verdict():
    results = [RowResult(row, (evidence(interval(2.0, 0.1), interval(1.0, 0.1)),) if k != 3 else (),
                         "supported" if k != 3 else "not settled", "a judgement, not a measurement")
               for k, row in enumerate(TABLE)]
    axes = plot_rows(results)
    assert len(axes) == len(TABLE)
    for ax, res in zip(axes, results, strict=True):
        assert res.rating.feature_en in ax.get_title() and res.verdict in ax.get_title()
    assert len(axes[0].containers) == 2 and not axes[0].patches and not axes[3].axison  # prefix and LoRA, as dots
    assert "judgement" in axes[3].texts[0].get_text()
    assert axes[0].get_ylim()[1] > 2.1 * 1.05  # a margin above the highest dot's bar: no dot sits on the top spine
    matplotlib.pyplot.close(axes[0].figure)  # later tests draw on the current axes
