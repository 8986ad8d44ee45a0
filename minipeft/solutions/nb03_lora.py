"""Solutions to the exercises of ``03_lora.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("03.1")
def lora_forward(x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """Conv1D (x W0 + b) plus the LoRA path (alpha / r) B A x, computed as x Aᵀ Bᵀ; r is A's row count."""
    r = A.shape[0]
    return x @ W0 + b + (alpha / r) * (x @ A.T @ B.T)


@solution("03.2")
def merge_by_hand(W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """Merged Conv1D weight (stored (in, out)): W0 + (alpha / r) (B A)ᵀ."""
    r = A.shape[0]
    return W0 + (alpha / r) * (B @ A).T


@solution("03.3")
def predict() -> tuple[float, float]:
    """(a) Delta W is linear in alpha: 64 / 32 = 2x. (b) alpha / r goes from 32/4 = 8 to 32/8 = 4: 0.5x."""
    return 2.0, 0.5
