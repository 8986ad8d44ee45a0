"""minipeft.memory: bytes of training state against a real AdamW, and the T4 peak estimates of notebooks 05 and 06."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from minipeft.memory import (
    GB,
    GPUS,
    PRECISIONS,
    get_precision,
    gpt2_activation_bytes,
    memory_table,
    method_memory,
    training_memory,
    training_peak,
)
from minipeft.params import (
    count_parameters,
    gpt2_config,
    lora_parameter_count,
    model_sizes,
    prefix_parameter_count,
)
from minipeft.tables import format_table

TINY = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)


def test_fp32_adamw_is_16_bytes_per_parameter():
    n = 124_439_808
    mem = training_memory(n, precision="fp32")
    assert (mem.weights, mem.gradients, mem.master, mem.optimizer) == (4 * n, 4 * n, 0, 8 * n)
    assert mem.total == 16 * n == 1_991_036_928
    assert PRECISIONS["fp32"].trainable == 16


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_mixed_precision_keeps_16_bytes_but_moves_them(prec):
    n = 1000
    mem = training_memory(n, precision=prec)
    assert (mem.weights, mem.gradients, mem.master, mem.optimizer) == (2 * n, 2 * n, 4 * n, 8 * n)
    assert mem.total == 16 * n


def test_pure_bf16_halves_the_training_state():
    assert training_memory(1000, precision="bf16-pure").total == 8 * 1000


def test_frozen_parameters_cost_only_their_weights():
    mem = training_memory(100, n_frozen=10_000, precision="bf16")
    assert mem.weights == 2 * 10_100
    assert (mem.gradients, mem.master, mem.optimizer) == (200, 400, 800)


def _measured_training_bytes(model: torch.nn.Module) -> int:
    """Run one real AdamW step and add up the bytes of weights, gradients and optimizer moments."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, TINY.vocab_size, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    moments = sum(s[k].numel() * s[k].element_size() for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq"))
    return weights + grads + moments


def test_accounting_matches_a_real_adamw_step_fp32():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(TINY)
    assert _measured_training_bytes(model) == training_memory(count_parameters(model), precision="fp32").total


def test_accounting_matches_a_real_adamw_step_pure_bf16():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(TINY).to(torch.bfloat16)
    assert _measured_training_bytes(model) == training_memory(count_parameters(model), precision="bf16-pure").total


def test_accounting_matches_a_real_adamw_step_with_a_frozen_base():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(TINY)
    for name, p in model.named_parameters():
        p.requires_grad = name.endswith("ln_f.weight") or "c_attn" in name
    n_train = count_parameters(model, trainable_only=True)
    n_frozen = count_parameters(model) - n_train
    assert 0 < n_train < n_frozen
    assert _measured_training_bytes(model) == training_memory(n_train, n_frozen, "fp32").total



def test_method_memory():
    small = model_sizes()["GPT-2 small"]
    trainable, mem = method_memory(small, "full", "fp32")
    assert trainable == small.n_params and mem.total == 16 * small.n_params
    trainable, mem = method_memory(small, "lora", "bf16", r=4)
    assert trainable == small.lora_params(4)
    assert mem.total == 2 * small.n_params + 16 * trainable
    trainable, mem = method_memory(small, "prefix", "fp32", prefix_length=10)
    assert mem.total == 4 * small.n_params + 16 * trainable


def test_the_articles_more_than_100_gb_for_an_11b_model():
    t5 = model_sizes()["flan-t5-xxl (11B)"]
    assert method_memory(t5, "full", "fp32")[1].total > 100 * GB  # holds for AdamW in fp32 ...
    assert method_memory(t5, "full", "bf16")[1].total > 100 * GB  # ... and in standard mixed precision
    assert method_memory(t5, "full", "bf16-pure")[1].total < 100 * GB  # not for pure bf16 (before activations)
    assert method_memory(t5, "lora", "bf16")[1].total < 24 * GB  # nor for LoRA on a 16-bit base


def test_tables():
    rows = memory_table()
    assert [row["model"] for row in rows] == list(model_sizes())
    assert rows[0]["full FT fp32"] == pytest.approx(16 * 124_439_808 / GB)
    text = format_table(rows)
    assert "124,439,808" in text and "GPT-2 XL" in text



def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="Unknown precision 'fp8'. Choose one of: fp32"):
        get_precision("fp8")
    with pytest.raises(ValueError, match="must be >= 0"):
        training_memory(-1)
    with pytest.raises(ValueError, match="Unknown method 'adapter'. Choose one of: full, lora, prefix"):
        method_memory(model_sizes()["GPT-2 small"], "adapter")


def gpu_profile_peaks():
    """Notebook 05's estimates (from its recipe), then 06's (from the lab's main grid), as docs/instructors.md lists
    them."""
    from minipeft.forgetting.lab import notebook06_gpu_peaks
    from minipeft.recipes import notebook05_gpu_peaks

    return notebook05_gpu_peaks() + notebook06_gpu_peaks()


def test_gpu_profile_peak_estimates_add_up_and_fit_a_t4():
    """The T4 figures in docs/instructors.md: every part by its arithmetic, for GPT-2 small at batch 8 x 128 (05) and
    at the lab's batch 8 x 512, its longest example (06)."""
    cfg = gpt2_config("gpt2")
    n = 124_439_808
    activations = 12 * 128 * 8 * 768 * (34 + 5 * 12 * 128 // 768)  # Korthikanti et al.: 34 + 5as/h = 44 here
    assert gpt2_activation_bytes(cfg, 8, 128)[0] == activations
    full = training_peak(cfg, n, 0, batch_size=8, seq_len=128, kept_models=1)
    assert full.total == sum(full.parts.values()) == (
        training_memory(n).total + 2 * n + activations + 10 * 8 * 128 * 50257 + 4 * n)  # 16 + 2 + 4 B a parameter
    assert full.parts["AdamW m and v (fp32)"] == 8 * n and set(full.parts) == set(full.arithmetic)
    peaks = gpu_profile_peaks()
    assert [p.label.split(",")[0] for p in peaks] == ["notebook 05"] * 3 + ["notebook 06"] * 3
    assert peaks[0].total == full.total and peaks[0].total > peaks[1].total > peaks[2].total  # full > prefix > LoRA
    # 06: full fine-tuning, the prefix and LoRA of the lab's main grid, each beside the untuned model and the
    # untrained prefix of its section 3, in batches of 8 up to 512 tokens wide (34 + 5as/h = 74 there)
    assert [p.label.split(",")[1].split("(")[0].strip() for p in peaks[3:]] == ["full", "prefix P=10", "lora r=8 qv"]
    wide = 12 * 512 * 8 * 768 * (34 + 5 * 12 * 512 // 768)
    assert peaks[3].total == training_memory(n).total + 2 * n + wide + 10 * 8 * 512 * 50257 + 2 * 4 * n
    assert all(p.parts["other models kept on the GPU"] == 2 * 4 * n for p in peaks[3:])
    assert peaks[4].parts["fp32 gradients"] == 4 * prefix_parameter_count(cfg, 10, 512)
    assert peaks[5].parts["fp32 gradients"] == 4 * lora_parameter_count(cfg, 8, ("q", "v"))
    assert max(p.total for p in peaks) == peaks[3].total < GPUS["T4 (16 GB)"] * 0.6
    assert "an estimate, not a measurement" in peaks[0].format() and "10 B x 8*128*50,257" in peaks[0].format()


def test_instructors_guide_states_the_estimates_the_code_computes():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "instructors.md").read_text()
    block = guide.split("<!-- gpu memory estimate:")[1].split("<!-- end of gpu memory estimate -->")[0]
    rows = [line for line in block.splitlines() if line.startswith("| notebook")]
    peaks = gpu_profile_peaks()
    assert len(rows) == len(peaks)
    for row, peak in zip(rows, peaks):
        assert row.endswith(f"**{peak.total / GB:.2f}** |"), (row, peak.label)
        assert [f"{v / GB:.2f}" for v in peak.parts.values()] == [cell.split()[0] for cell in row.split("|")[2:-2]]


def test_notebook05_estimate_sizes_each_method_by_the_gpt2_recipe(monkeypatch):
    """Notebook 05's LoRA rank and prefix length come from RECIPES["gpt2"], not from numbers of their own."""
    from dataclasses import replace

    from minipeft import recipes

    cfg, n = gpt2_config("gpt2"), 124_439_808
    recipe = recipes.RECIPES["gpt2"]
    monkeypatch.setitem(recipes.RECIPES, "gpt2", replace(recipe, lora={**recipe.lora, "r": 8}, prefix_len=5,
                                                         mlp_hidden=64))
    full, prefix, lora = recipes.notebook05_gpu_peaks()
    assert prefix.parts["fp32 gradients"] == 4 * prefix_parameter_count(cfg, 5, 64)
    assert lora.parts["fp32 gradients"] == 4 * lora_parameter_count(cfg, 8, ("q", "v"))
    assert (prefix.label, lora.label) == ("notebook 05, prefix-tuning (P=5, MLP 64)", "notebook 05, LoRA (q, v, r=8)")
    assert full.parts["fp32 gradients"] == 4 * n
