"""Solutions to the exercises of ``08_lora_family.ipynb``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..exercises import solution


@solution("08.1")
def dora_unmerge(W: Tensor, A: Tensor, B: Tensor, scale: Tensor, s: float) -> Tensor:
    """W0 back from the merged W = (m/||V||) (W0 + s B A): divide each output row by its factor, take s B A away.

    The factor must be the one kept at merge time: ||V|| = ||W0 + s B A|| needs W0, which merging overwrote
    (peft keeps it too; its unmerge of GPT-2's Conv1D had the rows and columns crossed until August 2026, #3531).
    A row merged to zero (factor 0) cannot be divided back; DoRALayer keeps a copy of such rows.
    """
    return W / scale[:, None] - s * B @ A


@solution("08.2")
def pissa_as_plain_lora(A: Tensor, B: Tensor, A0: Tensor, B0: Tensor) -> tuple[Tensor, Tensor]:
    """The trained PiSSA adapter as a plain LoRA of rank 2r for the original W0 = W_res + s B0 A0:
    W_res + s B A = W0 + s (B A - B0 A0) = W0 + s [B | -B0] [A ; A0]."""
    return torch.cat([A, A0]), torch.cat([B, -B0], dim=1)


@solution("08.3")
def double_quant_bits(block_size: int, scale_block: int) -> float:
    """4 bits per code, plus each block's absmax in 8 bits shared by its block_size weights, plus one float32 scale
    per scale_block absmaxes: 4 + 8/64 + 32/(64 * 256) = 4.127 for QLoRA's sizes, against 4 + 32/64 = 4.5 without."""
    return 4 + 8 / block_size + 32 / (block_size * scale_block)
