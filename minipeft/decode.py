"""Decoding: what a model writes after a prompt, and its sentence for each restaurant MR.

Greedy (or beam) decoding for a plain or LoRA model and for the prefix- and prompt-tuning wrappers, which
bring their own ``generate``::

    texts = generate_texts(model, tokenizer, mrs, max_new_tokens=60)   # "The Eagle is a pub by the river."
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from tqdm.auto import tqdm

from .data import prompt_text
from .train import evaluating, model_device


def continuations(model: nn.Module, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 16,
                  num_beams: int = 1, progress: bool = False) -> list[str]:
    """What the model writes after each prompt: greedy (or beam) decoding until end-of-text, prompt dropped.

    Prompts are left-padded, so every row of a batch ends where its new tokens begin. Works for a plain or
    LoRA model and for the prefix- and prompt-tuning wrappers (their own ``generate``).
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = model_device(model)
    starts = range(0, len(prompts), batch_size)
    texts: list[str] = []
    try:
        with evaluating(model):
            for start in tqdm(starts, desc="generating", disable=not progress or len(starts) < 2):
                enc = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
                out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                new = out[:, enc["input_ids"].shape[1]:]  # drop the prompt
                texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return texts


def generate_texts(model: nn.Module, tokenizer, mrs: list[str], *, max_new_tokens: int, batch_size: int = 16,
                   num_beams: int = 1, progress: bool = True) -> list[str]:
    """The model's sentence for each MR: :func:`continuations` of ``MR ||``."""
    return continuations(model, tokenizer, [prompt_text(mr) for mr in mrs], max_new_tokens=max_new_tokens,
                         batch_size=batch_size, num_beams=num_beams, progress=progress)
