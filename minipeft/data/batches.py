"""Batches for a causal LM: ``MR || text<eos>``, the loss on the text tokens only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from .mr import Pair, check_pairs, parse_mr

SEP = " ||"  # MR and text are joined as "MR || text", the format of the LoRA and prefix-tuning papers' E2E code
IGNORE_INDEX = -100  # label value that PyTorch's cross-entropy skips


def prompt_text(mr: str) -> str:
    """What the model sees before it writes: ``"name : The Eagle | area : riverside ||"``.

    Slots are written as in Li & Liang's E2E files (``slot : value``, joined by `` | ``), so a value
    such as `` The Eagle`` is the same tokens in the prompt as in the sentence, ready to be copied.
    """
    return " | ".join(f"{slot} : {value}" for slot, value in parse_mr(mr).items()) + SEP


def encode_pair(mr: str, ref: str, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of ``MR || text<eos>`` and labels that are -100 on the MR and separator."""
    prompt = tokenizer(prompt_text(mr))["input_ids"]
    target = tokenizer(" " + ref)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def make_loader(pairs: Sequence[Pair], tokenizer, batch_size: int, max_len: int, shuffle: bool = True,
                seed: int = 0, drop_long: bool = False) -> DataLoader:
    """A DataLoader of ``input_ids``, ``attention_mask``, ``labels`` for causal-LM fine-tuning.

    Each batch is right-padded to its longest example (pad labels are -100, pad mask 0). An example
    longer than ``max_len`` tokens raises an error, or is skipped with ``drop_long=True``.
    """
    check_pairs(pairs)
    context = getattr(tokenizer, "model_max_length", None)
    if context is not None and max_len > context:
        raise ValueError(f"max_len={max_len} is longer than the model's context ({context} tokens); "
                         f"lower max_len (profile.seq_len) to at most {context}.")
    examples = []
    for i, (mr, ref) in enumerate(pairs):
        ids, labels = encode_pair(mr, ref, tokenizer)
        if len(ids) > max_len:
            if drop_long:
                continue
            raise ValueError(f"Example {i} is {len(ids)} tokens, longer than max_len={max_len} ({mr!r}). "
                             f"Raise max_len (at most the model's context, `context_length(model)`), "
                             f"or skip long examples with drop_long=True.")
        examples.append((ids, labels))
    if not examples:
        raise ValueError(f"No example fits in max_len={max_len} tokens; raise max_len.")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def collate(batch: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in batch)
        out = {"input_ids": torch.full((len(batch), width), pad_id, dtype=torch.long),
               "attention_mask": torch.zeros((len(batch), width), dtype=torch.long),
               "labels": torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)}
        for row, (ids, labels) in enumerate(batch):
            out["input_ids"][row, : len(ids)] = torch.tensor(ids)
            out["attention_mask"][row, : len(ids)] = 1
            out["labels"][row, : len(ids)] = torch.tensor(labels)
        return out

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(examples, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)
