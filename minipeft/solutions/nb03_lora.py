"""Solutions to the exercises of ``03_lora.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("03.1")
def qv_lora_params(n_layer: int, d_model: int, r: int) -> int:
    """Trainable parameters of q-and-v LoRA: per layer two (A: r x d, B: d x r) pairs."""
    return n_layer * 2 * (r * d_model + d_model * r)


@solution("03.2")
def merge_by_hand(W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """Merged Conv1D weight (stored (in, out)): W0 + (alpha / r) (B A)ᵀ."""
    r = A.shape[0]
    return W0 + (alpha / r) * (B @ A).T
