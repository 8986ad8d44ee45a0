"""General English the task never touches, and the model's perplexity on it: the forgetting measurement.

The offline mini GPT-2 reads its held-out plays (:func:`minipeft.corpus.heldout_text`); other models read
WikiText-2's test split from the Hub, or the held-out plays offline (the source names which).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import load_dataset
from torch import nn

from ..checks import positive_int
from ..corpus import heldout_text
from ..decode import continuations
from ..metrics import perplexity
from ..profiles import Profile, get_profile
from ..train import evaluate_loss

PROBES = ("The king hath", "I pray you, sir,", "What is the matter", "Good morrow, my lord.")
WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1")


def general_text(profile: str | Profile | None = None) -> tuple[str, str]:
    """``(text, source)``: general English the base model did not train on.

    The offline mini GPT-2 gets its held-out plays (:func:`minipeft.corpus.heldout_text`); real GPT-2 gets
    WikiText-2's test split from the Hub, falling back to the held-out plays (with a clear source name) offline.
    """
    profile = get_profile(profile)
    if profile.base_model == "mini-gpt2":
        return heldout_text(), "held-out Shakespeare (Macbeth, Twelfth Night): never in the mini GPT-2's pretraining"
    try:
        rows = load_dataset(*WIKITEXT, split="test")["text"]
        return "".join(rows), "WikiText-2 test split (Wikipedia articles)"
    except Exception as err:  # offline, or the Hub refused: say so in one line, not a traceback
        return heldout_text(), f"held-out Shakespeare (WikiText-2 unavailable: {type(err).__name__})"


def text_blocks(text: str, tokenizer, block_len: int, n_blocks: int) -> torch.Tensor:
    """``n_blocks`` non-overlapping windows of ``block_len`` tokens, spread evenly over ``text``."""
    positive_int(n_blocks, "n_blocks", "Try 32.")
    if positive_int(block_len, "block_len", "Try 128.") < 2:
        raise ValueError(f"block_len must be at least 2 (a token and the one it predicts), got {block_len}. Try 128.")
    ids = torch.tensor(tokenizer(text)["input_ids"])
    available = len(ids) // block_len
    if available < n_blocks:
        raise ValueError(f"The text has {len(ids)} tokens: only {available} blocks of {block_len}, not {n_blocks}. "
                         f"Use fewer or shorter blocks.")
    starts = torch.linspace(0, available - 1, n_blocks).long() * block_len
    return torch.stack([ids[s:s + block_len] for s in starts.tolist()])


def mean_nats(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` over ``blocks`` (plain, LoRA and prefix models)."""
    batches = ({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
               for ids in blocks.split(batch_size))
    return evaluate_loss(model, batches)


def general_perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """exp(:func:`mean_nats`): the perplexity of ``model`` over ``blocks``."""
    return perplexity(mean_nats(model, blocks, batch_size))


def probe_texts(model: nn.Module, tokenizer, prompts: Sequence[str] = PROBES, max_new_tokens: int = 20) -> list[str]:
    """Greedy continuations of fixed ``prompts``: what the model says about things other than restaurants."""
    return continuations(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens,
                         batch_size=max(1, len(prompts)))
