"""Solutions to the exercises of ``01_why_finetune.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("01.1")
def lora_qv_fraction(cfg, r: int) -> float:
    """Fraction of GPT-2's parameters trained by LoRA at rank r on q and v (each n_embd x n_embd).

    The prediction: GPT-2 XL's fraction is smaller than medium's. LoRA's count grows as n_layer x n_embd, the
    model's about as n_layer x n_embd², so at a fixed r the fraction falls about as 1 / n_embd."""
    from minipeft.params import gpt2_parameter_count

    d = cfg.n_embd
    per_matrix = r * (d + d)  # A: r x d_in, B: d_out x r
    return cfg.n_layer * 2 * per_matrix / gpt2_parameter_count(cfg)


@solution("01.2")
def full_finetune_gb(n_params: int, precision: str) -> float:
    """GB (1e9 bytes) of weights + gradients + AdamW state to train every parameter, before activations.

    The prediction: 7e9 parameters x 16 bytes in "bf16" = 112 GB, more than one 80 GB H100 holds."""
    bytes_per_param = {"fp32": 4 + 4 + 8,  # weight, gradient, AdamW m and v
                       "bf16": 2 + 2 + 4 + 8}  # bf16 weight and gradient, fp32 master copy, fp32 m and v
    return n_params * bytes_per_param[precision] / 1e9


@solution("01.3")
def prefix_params(cfg, length: int) -> int:
    """A key and a value vector of width n_embd per layer and per prefix position.

    The prediction: GPT-2 XL (n_layer 48, n_embd 1600) at length 200 has 2 x 48 x 200 x 1600 = 30,720,000."""
    return 2 * cfg.n_layer * length * cfg.n_embd
