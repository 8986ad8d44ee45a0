"""Solutions to the exercises of ``05_gpt2_finetune.ipynb``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..exercises import solution


@solution("05.1")
def text_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions: the scores at position t predict the label at t + 1,
    so the last position's scores and the first label drop out; -100 (the prompt, the padding) is skipped. The loss
    averages over the sentence's tokens and the end-of-text, and the first word is predicted from the separator."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


@solution("05.2")
def lr_at(step: int, steps: int, warmup: int, lr: float) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr`` over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (steps - step) / (steps - warmup)
