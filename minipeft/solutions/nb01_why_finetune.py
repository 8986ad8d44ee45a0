"""Solutions to the exercises of ``01_why_finetune.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("01.1")
def lora_qv_fraction(cfg, r: int) -> float:
    """Fraction of GPT-2's parameters trained by LoRA at rank r on q and v (each n_embd x n_embd)."""
    from minipeft.params import gpt2_parameter_count

    d = cfg.n_embd
    per_matrix = r * (d + d)  # A: r x d_in, B: d_out x r
    return cfg.n_layer * 2 * per_matrix / gpt2_parameter_count(cfg)


@solution("01.2")
def full_finetune_gb(n_params: int, precision: str) -> float:
    """GB (1e9 bytes) of weights + gradients + AdamW state to train every parameter, before activations."""
    bytes_per_param = {"fp32": 4 + 4 + 8,  # weight, gradient, AdamW m and v
                       "bf16": 2 + 2 + 4 + 8}  # bf16 weight and gradient, fp32 master copy, fp32 m and v
    return n_params * bytes_per_param[precision] / 1e9


@solution("01.3")
def prefix_params(cfg, length: int) -> int:
    """A key and a value vector of width n_embd per layer and per prefix position."""
    return 2 * cfg.n_layer * length * cfg.n_embd
