"""Solutions to the exercises of ``08_lora_family.ipynb``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..exercises import solution


@solution("08.1")
def dora_weight(W0: Tensor, A: Tensor, B: Tensor, m: Tensor, s: float) -> Tensor:
    """DoRA's weight (nn.Linear layout, out x in): V = W0 + s B A, each row rescaled to length m."""
    V = W0 + s * B @ A
    return m[:, None] * V / V.norm(dim=1, keepdim=True)


@solution("08.2")
def pissa_init(W0: Tensor, r: int, s: float) -> tuple[Tensor, Tensor, Tensor]:
    """PiSSA's A, B and residual from the top-r singular triplets of W0 (out x in): s B A = U_r S_r V_r^T."""
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    root = (S[:r] / s).sqrt()
    A, B = root[:, None] * Vh[:r], U[:, :r] * root
    return A, B, W0 - s * B @ A


@solution("08.3")
def nf4_codes(block: Tensor, levels: Tensor) -> Tensor:
    """The index of the level nearest to each value of ``block`` divided by its absmax (ties to the lower level)."""
    scaled = block / block.abs().max()
    return (scaled[:, None] - levels[None, :]).abs().argmin(dim=1)
