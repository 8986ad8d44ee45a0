"""Solutions to the exercises of ``05_gpt2_finetune.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("05.1")
def text_labels(input_ids: list[int], n_prompt: int) -> list[int]:
    """Labels for ``MR || text<eos>``: -100 (ignored by the loss) on the prompt, the token ids on the text."""
    return [-100] * n_prompt + list(input_ids[n_prompt:])


@solution("05.2")
def lr_at(step: int, steps: int, warmup: int, lr: float) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr`` over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (steps - step) / (steps - warmup)
