"""Notebook 08's ladder (minipeft.ladder): the rate rule on constructed records, and a ci-scale ladder on the mini
GPT-2 (every line runs in seconds; no number is a result)."""

import math
import subprocess
import sys

import pytest

from minipeft import ladder
from minipeft.params import count_parameters
from minipeft.recipes import RECIPES


def _rec(lr, loss, method="lora"):
    return {"method": method, "lr": lr, "task_loss": loss}


def test_pick_rate_takes_the_lowest_loss_or_the_smaller_of_two_close_ones():
    assert ladder.pick_rate([_rec(1e-3, 0.9), _rec(3e-3, 0.5), _rec(1e-2, 0.7)]) == 3e-3
    assert ladder.pick_rate([_rec(1e-3, 0.52), _rec(3e-3, 0.5), _rec(1e-2, 0.49)]) == 1e-3  # within 0.03 nats
    assert ladder.pick_rate([_rec(1e-3, 0.9), _rec(3e-3, None), _rec(1e-2, 0.7)]) == 1e-2  # diverged never wins
    with pytest.raises(ValueError, match="Every rate of 'lora' diverged: lower its centre"):
        ladder.pick_rate([_rec(1e-3, None)])
    grid = {"lora": (1e-3, 3e-3), "dora": (1e-3, 3e-3)}
    records = [_rec(1e-3, 0.9), _rec(3e-3, 0.5), _rec(1e-3, 0.4, "dora")]
    assert ladder.picked_rates(records, grid) == {"lora": 3e-3}, "dora's rate check is not finished"


def test_the_rate_check_centres_on_the_recipes_rates():
    smol = RECIPES["smollm2-135m"]
    grid = ladder.rate_grid(smol)
    assert set(grid) == set(ladder.METHODS) and all(len(rates) == 3 for rates in grid.values())
    assert grid["full"][1] == smol.lr["full fine-tuning"] and grid["prefix"][1] == smol.lr["prefix-tuning"]
    assert all(grid[m][1] == smol.lr["LoRA"] for m in ladder.LORA_FAMILY)
    assert grid["prompt"][1] == pytest.approx(10 * smol.lr["prefix-tuning"])
    assert grid["lora"] == (0.00285, 0.009, 0.0285), "a half-decade either side, 3 significant digits"


def test_the_rate_check_widens_past_an_edge_best_and_no_further_than_it_must():
    smol = RECIPES["smollm2-135m"]
    grid = ladder.rate_grid(smol, ("full", "lora"))
    full = [_rec(4.74e-5, 0.541, "full"), _rec(1.5e-4, 0.450, "full"), _rec(4.74e-4, 0.418, "full")]  # 7 Dec
    lora = [_rec(0.00285, 0.614), _rec(0.009, 0.515), _rec(0.0285, 4.574)]
    assert grid["full"] == (4.74e-5, 1.5e-4, 4.74e-4)
    checked = ladder.checked_grid(smol, full + lora, ("full", "lora"))
    assert checked == {"full": (4.74e-5, 1.5e-4, 4.74e-4, 1.5e-3), "lora": grid["lora"]}, "best at the top: one more"
    assert ladder.picked_rates(full + lora, checked) == {"lora": 0.009}, "full's widened check is not finished"
    full_wider = [*full, _rec(1.5e-3, 0.43, "full")]
    assert ladder.checked_grid(smol, full_wider, ("full",))["full"] == checked["full"], "bracketed: stop"
    assert ladder.picked_rates(full_wider, checked) == {"full": 4.74e-4}
    low = [_rec(0.00285, 0.524), _rec(0.009, 0.536), _rec(0.0285, 6.888)]  # rsLoRA's: the lowest loss at the bottom
    assert ladder.checked_grid(smol, low, ("lora",))["lora"] == (0.0009, 0.00285, 0.009, 0.0285)
    falling = low + [_rec(0.0009, 0.5), _rec(0.000285, 0.49), _rec(0.00009, 0.48)]
    assert ladder.checked_grid(smol, falling, ("lora",))["lora"] == (0.000285, 0.0009, 0.00285, 0.009, 0.0285), \
        "at most max_widen = 2 rates beyond the first three"
    diverged_top = [_rec(0.00285, 0.9), _rec(0.009, 0.5), _rec(0.0285, None)]
    assert ladder.checked_grid(smol, diverged_top, ("lora",))["lora"] == grid["lora"], "a diverged rate never widens"
    rising = [_rec(0.00285, 0.9), _rec(0.009, 0.7), _rec(0.0285, 0.6)]
    assert ladder.checked_grid(smol, rising, ("lora",), max_widen=0)["lora"] == grid["lora"]


def test_the_rate_check_table_shows_each_rate_its_widening_and_the_pick():
    smol = RECIPES["smollm2-135m"]
    records = [_rec(4.74e-5, 0.541, "full"), _rec(1.5e-4, 0.450, "full"), _rec(4.74e-4, 0.418, "full"),
               _rec(0.00285, 0.614), _rec(0.009, 0.515), _rec(0.0285, None)]
    lines = ladder.format_rate_check(records, ladder.checked_grid(smol, records, ("full", "lora"))).splitlines()
    assert lines[1].split() == ["full", "fine-tuning", "4.74e-05:", "0.541,", "0.00015:", "0.450,", "0.000474:",
                                "0.418,", "0.0015:", "not", "run", "1", "-"], "widened once, unfinished: no pick"
    assert lines[2].split() == ["LoRA", "0.00285:", "0.614,", "0.009:", "0.515,", "0.0285:", "diverged", "0", "0.009"]


def test_rslora_runs_at_a_high_rank_with_the_recipes_scale_at_its_rank(tiny_llama):
    recipe = RECIPES["smollm2-135m"]  # q and v, r0 = 2, alpha0 = 16: scale 8
    model = ladder.LadderRun("rslora", 1e-3, 0, 1).build(tiny_llama(), recipe, ladder.FULL_SCALE)
    layers = list(ladder.lora_layers(model).values())
    assert all(layer.r == 64 and layer.use_rslora for layer in layers)
    alpha = layers[0].alpha
    assert math.isclose(alpha / math.sqrt(2), 16 / 2), "at r = r0 rsLoRA's scale is the recipe's"
    assert math.isclose(layers[0].scaling, alpha / 8), "at r = 64: alpha / sqrt(64)"


def test_a_ci_ladder_checks_rates_then_runs_resumably(tmp_path, capsys):
    methods = ("full", "qlora", "prefix")
    written = ladder.run_ladder("ci", methods=methods, ladder_dir=tmp_path)
    rates = ladder.load_records(tmp_path, "rates")
    grid = ladder.checked_grid(RECIPES["mini-gpt2"], rates, methods, ladder.CI_SCALE.max_widen)
    assert sorted((r["method"], r["lr"]) for r in rates) == sorted((m, lr) for m in methods for lr in grid[m])
    assert all(3 <= len(grid[m]) <= 3 + ladder.CI_SCALE.max_widen for m in methods)
    assert len(written) == len(rates) + len(methods) * len(ladder.CI_SCALE.seeds)
    picked = ladder.picked_rates(rates, grid)
    runs = {r["method"]: r for r in ladder.load_records(tmp_path, "runs")}
    assert set(runs) == set(methods) and all(runs[m]["lr"] == picked[m] for m in methods)
    assert "ladder rates (from the rate check): full" in capsys.readouterr().out
    for r in runs.values():
        assert 0 <= r["ser"] <= 1 and r["bleu"] >= 0 and r["n_mrs"] == ladder.CI_SCALE.n_mrs
        assert r["median_step_seconds"] > 0 and r["memory_bytes"] > 0
        assert r["memory_measured"] == ladder.CPU_MEMORY
        assert r["steps"] == ladder.CI_SCALE.steps and {"commit", "machine", "date"} <= set(r["provenance"])
    assert runs["full"]["stored_params"] == runs["full"]["trainable_params"] > runs["qlora"]["trainable_params"]
    assert runs["qlora"]["stored_params"] == runs["qlora"]["trainable_params"] and runs["qlora"]["r"] == 16
    assert runs["prefix"]["stored_params"] < runs["prefix"]["trainable_params"], "folded: the MLP is not stored"
    from transformers.pytorch_utils import Conv1D

    from minipeft.base_model import load_base_model

    base, _ = load_base_model("ci")
    n = sum(m.weight.numel() for m in base.modules() if isinstance(m, Conv1D))  # the linears QLoRA quantises
    nf4 = runs["full"]["weight_bytes"] - 4 * n + n * 4.5 / 8 + 4 * runs["qlora"]["trainable_params"]
    assert runs["qlora"]["weight_bytes"] == pytest.approx(nf4, rel=1e-3), "fp32 linears -> 4.5 bits, plus A and B"
    assert "ser" not in rates[0] and rates[0]["phase"] == "rates"
    assert not ladder.load_records(tmp_path, "memory"), "every run measured its memory: no memory phase"
    assert ladder.run_ladder("ci", methods=methods, ladder_dir=tmp_path) == []  # resumable: nothing left
    with pytest.raises(ValueError, match=r"Unknown ladder method\(s\) \['adapter'\]"):
        ladder.run_ladder("ci", methods=("adapter",), ladder_dir=tmp_path)


def test_full_fine_tuning_stores_every_parameter(tiny_gpt2):
    model = tiny_gpt2()
    assert ladder.stored_parameters(model, "full") == count_parameters(model)


def test_the_script_runs_the_ci_ladder_and_stops_at_max_runs(tmp_path):
    from minipeft.tools.ladder import main

    assert main(["--profile", "ci", "--method", "prompt", "--max-runs", "2", "--dir", str(tmp_path)]) == 0
    assert len(ladder.load_records(tmp_path, "rates")) == 2 and not ladder.load_records(tmp_path, "runs")


def _run(method, seed, ser, bleu, stored, weight_bytes=4e6, step=0.5, r=None, memory=1e8):
    return {"method": method, "lr": 1e-3, "seed": seed, "ser": ser, "bleu": bleu, "task_loss": 0.5 + ser,
            "trainable_params": stored, "stored_params": stored, "weight_bytes": weight_bytes,
            "median_step_seconds": step, "memory_bytes": memory, "r": r}


def test_the_table_and_the_advice_are_read_off_constructed_runs():
    records = [_run("full", s, ser, 60.0, 1000, weight_bytes=3e6, step=1.0, memory=3e8)
               for s, ser in enumerate((0.10, 0.11, 0.12))]
    records += [_run("lora", s, ser, 58.0, 10, r=2) for s, ser in enumerate((0.11, 0.12, 0.13))]
    records += [_run("qlora", s, ser, 57.0, 10, weight_bytes=1e6, step=0.8, r=2, memory=0.9e8) for s, ser in
                enumerate((0.12, 0.125, 0.13))]
    records += [_run("prompt", s, ser, 20.0, 5, step=0.3) for s, ser in enumerate((0.80, 0.82, 0.84))]
    table = ladder.rungs(records)
    assert [r.method for r in table] == ["full", "lora", "qlora", "prompt"], "in METHODS order"
    full = table[0]
    assert math.isclose(full.ser.mean, 0.11) and full.ser.n == 3 and full.ser.low < 0.10 and full.stored == 1000
    text = ladder.format_ladder(table)
    assert text.splitlines()[0].startswith("method") and "LoRA r=2" in text and "11.0 [" in text
    lines = ladder.advice(table)
    assert lines[0].startswith("Fewest slot errors: full fine-tuning, 11.0%")
    assert "prompt tuning" not in lines[1] and "LoRA r=2" in lines[1], "prompt tuning is far worse: not tied"
    assert "smallest checkpoint: LoRA r=2 and QLoRA r=2 (10 stored parameters each)" in lines[2], "an exact tie"
    assert "least training memory: QLoRA r=2 (90 MB at its peak, 1 MB of weights)" in lines[2], \
        "memory is the training peak: full fine-tuning's fewer weight bytes do not make it the lightest to train"
    assert "fastest step: LoRA r=2 (0.500 s)." in lines[2], "QLoRA's 0.8 s is not within 10%"
    assert lines[3] == ("Pick LoRA r=2 or QLoRA r=2 to store many adapters, QLoRA r=2 when training memory is short, "
                        "LoRA r=2 when training time is.")
    small, light, fast = ladder.cheapest(ladder.as_good(table))
    assert [r.method for r in ladder.as_good(table)] == ["full", "lora", "qlora"]
    assert ([r.method for r in small], [r.method for r in light], [r.method for r in fast]) == \
        (["lora", "qlora"], ["qlora"], ["lora"]), "what the advice's lines name"
    near = ladder.advice(ladder.rungs([*records, *[_run("dora", s, ser, 58.0, 12, step=0.54, r=2, memory=0.95e8)
                                                   for s, ser in enumerate((0.11, 0.12, 0.13))]]))
    assert "least training memory: QLoRA r=2 and DoRA r=2 (peaks within 10% of 90 MB)" in near[2]
    assert "fastest step: LoRA r=2 and DoRA r=2 (within 10% of 0.500 s" in near[2], "step times within 10%: tied"
    seeds = ((0, 99), (0, 99), (0.3, 60))  # (SER, BLEU): t-intervals below 0 and above 100
    spread = ladder.rungs([_run("lora", s, ser, bleu, 10) for s, (ser, bleu) in enumerate(seeds)])
    assert spread[0].ser.low == 0 and spread[0].bleu.high == 100, "cut to what a rate and BLEU can be"
    assert spread[0].ser.high > 0.3 and spread[0].bleu.low < 60 and math.isclose(spread[0].ser.mean, 0.1)
    one_seed = ladder.format_ladder(ladder.rungs(records[:1]))
    assert "10.0 n/a (1 seed)" in one_seed and "[10.0, 10.0]" not in one_seed, "one seed: no zero-width interval"



def test_the_advice_never_reads_an_interval_off_one_seed():
    """One seed has no interval: the advice says so instead of printing "95% interval 12.0% to 12.0%" and calling
    methods as good within seed noise (the live slice of notebook 08 has one seed per method)."""
    live = ladder.rungs([_run("lora", 0, 0.12, 58.0, 10, r=2), _run("qlora", 0, 0.12, 57.0, 10, weight_bytes=1e6, r=2)])
    lines = ladder.advice(live)
    assert lines[0] == "Fewest slot errors: LoRA r=2 and QLoRA r=2, 12.0% each (1 seed each).", "a tie names both"
    assert "cannot be read" in lines[1] and "LoRA r=2, QLoRA r=2 have one" in lines[1]
    assert not any("within seed noise (their" in line or "to 12.0%" in line for line in lines)
    assert lines[-1] == "No pick from one seed: LoRA r=2 and QLoRA r=2 tie on the means."
    live = ladder.rungs([_run("lora", 0, 0.12, 58.0, 10, r=2), _run("qlora", 0, 0.13, 57.0, 10, weight_bytes=1e6, r=2)])
    lines = ladder.advice(live)
    assert lines[0] == "Fewest slot errors: LoRA r=2, 12.0% (no 95% interval, 1 seed)."
    assert lines[-1] == "No pick from one seed: LoRA r=2 leads on the means only."
    records = [_run("full", s, ser, 60.0, 1000) for s, ser in enumerate((0.10, 0.11, 0.12))]
    records += [_run("lora", s, ser, 58.0, 10, r=2) for s, ser in enumerate((0.30, 0.31, 0.32))]
    lines = ladder.advice(ladder.rungs([*records, _run("prompt", 0, 0.105, 20.0, 5)]))
    assert "full fine-tuning." in lines[1] and "Not compared (one seed, no interval): prompt tuning." in lines[1]
    assert "LoRA" not in lines[1], "LoRA's interval is far above: not tied"
    assert lines[2] == "Its costs: 1,000 stored parameters, 4 MB of weights, 100 MB of training memory at its peak, " \
                       "0.500 s per step."
    assert lines[3] == "Pick full fine-tuning: no other method is shown as good within seed noise."


HEAP_CHECK = """
import time, psutil, torch
from minipeft import ladder
rss = lambda: psutil.Process().memory_info().rss
start = ladder.heap_bytes()
with ladder.sampled_peak() as peak:
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB
    time.sleep(0.05)
    del big
chunks = [bytes(4096) for _ in range(32768)]  # 128 MiB in pieces: malloc keeps them on its heap once freed
pin = chunks[-1]                               # the heap's top stays in use, so free() cannot shrink it
held, heap = rss(), ladder.heap_bytes()
del chunks
print(peak[0] - start, ladder.heap_bytes() - start, held - rss(), heap - ladder.heap_bytes())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallinfo2 is glibc's")
def test_the_live_heap_sees_a_tensor_come_and_go_and_drops_when_memory_is_freed():
    # in a fresh process, so that earlier tests' garbage does not move the heap meanwhile
    out = subprocess.run([sys.executable, "-c", HEAP_CHECK], capture_output=True, text=True, check=True)
    peak, left, rss_freed, heap_freed = map(int, out.stdout.split())
    assert peak >= 64 * 2**20 and abs(left) < 2**20, "the peak saw the tensor; it counts nothing once freed"
    assert heap_freed >= 120 * 2**20 and rss_freed < 16 * 2**20, \
        "freed memory leaves the heap at once, while the process keeps it resident (what RSS used to count)"
    assert ladder.CPU_MEMORY.startswith("CPU: peak live heap while training (glibc mallinfo2")


def test_a_run_does_not_count_what_its_build_freed(monkeypatch):
    """QLoRA's build copies the base in float32 and frees it once quantised: the run's memory must not count it."""
    import torch

    from minipeft.base_model import load_base_model

    base, tokenizer = load_base_model("ci")
    ctx = ladder.LadderContext.create(base, tokenizer, "mini-gpt2", "ci", ladder.CI_SCALE)
    run = ladder.LadderRun("lora", 1e-3, 0, 3, "memory")
    plain = ladder.measure(run, ctx)["memory_bytes"]
    real_build = ladder.LadderRun.build

    kept = []

    def wasteful_build(self, *args):  # 256 MiB in 64 KiB pieces, freed before training starts: malloc keeps them
        temporary = [torch.ones(2**14) for _ in range(4096)]  # on its heap, resident, for the pinned last one
        kept.append(temporary[-1])                               # stops free() from shrinking the heap
        del temporary
        return real_build(self, *args)
    monkeypatch.setattr(ladder.LadderRun, "build", wasteful_build)
    record = ladder.measure(run, ctx)
    # the old resident measure counted 259 MiB of it; two runs of 3 steps can differ by ~20 MB here, since the
    # sampler reads the heap less often when the test process's heap is fragmented (ladder.sampled_peak)
    assert abs(record["memory_bytes"] - plain) < 64 * 2**20, (record["memory_bytes"], plain)
    assert "ser" not in record, "a memory run is measured, not scored"


def test_memory_runs_fill_in_only_the_methods_without_a_memory_measure():
    runs = [_run("lora", s, 0.1, 60.0, 10, r=2) for s in (0, 1)] + [_run("full", 0, 0.1, 60.0, 1000)]
    del runs[-1]["memory_bytes"]  # full fine-tuning's run lost its measure
    wanted = ladder.memory_runs(runs, {"lora": 9e-3, "full": 5e-4}, ladder.FULL_SCALE)
    assert wanted == [ladder.LadderRun("full", 5e-4, 0, ladder.FULL_SCALE.steps, "memory")]
    memory = [{"method": "full", "memory_bytes": 7e8}]
    table = {r.method: r for r in ladder.rungs(runs, memory)}
    assert table["full"].memory_mb == 700 and table["lora"].memory_mb == 100
    assert math.isnan(ladder.rungs(runs)[0].memory_mb), "no measure: not a number, never a made-up one"


def test_budget_counts_what_each_built_method_stores(tiny_llama):
    """ladder.budget counts on a meta copy; each count equals what the real build stores (PiSSA's SVD included),
    and the parts add up by hand: LoRA r (in + out) per q and v, DoRA one m per output, the prefix 2 P kv-width per
    layer, a soft-prompt position one embedding row."""
    import copy

    from minipeft.recipes import build

    recipe, scale = RECIPES["smollm2-135m"], ladder.FULL_SCALE  # q and v, r = 2, P = 10
    model = tiny_llama()
    found = ladder.budget(model, recipe, scale)
    for method in ladder.METHODS:
        real = build(method, copy.deepcopy(model), recipe, **ladder.method_size(method, recipe, scale))
        assert found.stored[method] == ladder.stored_parameters(real, method), method
    cfg = model.config
    layers, d, kv = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
    r, P = recipe.lora["r"], recipe.prefix_len
    assert found.lora == layers * r * ((d + d) + (d + kv))
    assert found.magnitudes == layers * (d + kv) and found.stored["dora"] == found.lora + found.magnitudes
    assert found.stored["rslora"] == found.lora * scale.rslora_rank // r
    assert found.stored["prefix"] == layers * 2 * P * kv and found.prompt_width == d
    assert found.stored["full"] == count_parameters(model)
    assert found.on_budget == ["lora", "pissa", "qlora"], "on the tiny Llama the prefix is not on LoRA's budget"
    assert found.ratio("rslora") == scale.rslora_rank / r
    assert math.isclose(found.prompt_positions, found.lora / d)
    text = found.format()
    assert text.splitlines()[0].startswith("method") and "prompt tuning" in text and "on LoRA's budget" in text


def test_on_smollm2_lora_pissa_qlora_and_the_prefix_store_the_same():
    """SmolLM2-135M's shapes (its config alone, no weights): 30 layers, width 576, key/value width 192."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=30, hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    found = ladder.budget(model, RECIPES["smollm2-135m"])
    assert found.on_budget == ["lora", "pissa", "qlora", "prefix"] and found.lora == 115_200
    assert found.magnitudes == 30 * (576 + 192) and found.stored["full"] == 134_515_008
    assert found.prompt_positions == 200 and found.stored["prompt"] == 10 * 576
    assert found.ratio("rslora") == 32


def test_the_advice_reads_memory_only_where_it_was_measured():
    records = [_run("full", s, ser, 60.0, 1000, memory=3e8) for s, ser in enumerate((0.10, 0.11, 0.12))]
    records += [_run("lora", s, ser, 58.0, 10, r=2) for s, ser in enumerate((0.11, 0.12, 0.13))]
    for r in records[3:]:
        del r["memory_bytes"]
    lines = ladder.advice(ladder.rungs(records))
    assert "least training memory: full fine-tuning (300 MB at its peak, 4 MB of weights) (of those measured; " \
           "not yet: LoRA r=2)" in lines[2]
    for r in records[:3]:
        del r["memory_bytes"]
    lines = ladder.advice(ladder.rungs(records))
    assert "the least training memory: not measured yet;" in lines[2]
    assert lines[3] == ("Pick LoRA r=2 to store many adapters, full fine-tuning or LoRA r=2 when training time is."), \
        "no memory pick"
