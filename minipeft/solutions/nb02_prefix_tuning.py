"""Solutions to the exercises of ``02_prefix_tuning.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("02.1")
def prefix_params(n_layer: int, n_embd: int, prefix_len: int) -> int:
    """A folded prefix stores one key and one value of width n_embd per layer and prefix position."""
    return prefix_len * n_layer * 2 * n_embd


@solution("02.2")
def mlp_prefix_params(n_layer: int, n_embd: int, prefix_len: int, hidden: int) -> int:
    """P' plus Linear(n_embd, hidden) and Linear(hidden, n_layer * 2 * n_embd), biases included."""
    n_out = n_layer * 2 * n_embd
    return prefix_len * n_embd + (n_embd * hidden + hidden) + (hidden * n_out + n_out)


@solution("02.3")
def extend_mask(attention_mask: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """[B, T] -> [B, P + T] with P ones in front, so every real token may attend to the prefix."""
    ones = attention_mask.new_ones(attention_mask.shape[0], prefix_len)
    return torch.cat([ones, attention_mask], dim=1)
