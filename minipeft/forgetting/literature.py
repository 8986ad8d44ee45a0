"""What others measured: the published forgetting results notebook 06 puts beside the lab's, with their setups.

Every number here is copied from the cited file or section (checked on 6 December 2026; the notes are in the
closing note of issue 27); none is computed by the course. peft's numbers are from its results files after the
July 2026 fix of its forgetting metric (commit d787f51bb): earlier files ranked full fine-tuning and LoRA the other
way round.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published run: who, on what, how forgetting was measured, and what they found."""

    source: str
    model: str
    data: str
    metric: str
    method: str
    at: str  # the task score, or the point of training where forgetting was read
    general: str  # the source's general-ability measure (``metric``) there


PEFT = "peft MetaMathQA benchmark (results at commit 51c2ff666)"
PEFT_SETUP = ("Llama-3.2-3B", "MetaMathQA, 5,000 steps x batch 4, 1 seed",
              "rise of mean cross-entropy (nats/token) on 100 Wikipedia articles (finewiki, <= 768 tokens), adapter on")
BIDERMAN = "Biderman et al. 2024, sec. 4.2"
BIDERMAN_SETUP = ("Llama-2-7B", "code / math: instruction tuning (~100K pairs), continued pretraining (~20B tokens)",
                  "mean accuracy on HellaSwag, ARC-Challenge, WinoGrande (higher = forgot less; the base model's own "
                  "score is not copied here)")

PUBLISHED = (
    Published(PEFT, *PEFT_SETUP, "full fine-tuning, lr 1e-5", "GSM8K 0.472", "+0.030"),
    Published(PEFT, *PEFT_SETUP, "LoRA r=32 q,v, lr 1e-4", "GSM8K 0.478", "+0.050"),
    Published(PEFT, *PEFT_SETUP, "DoRA r=32 q,v, lr 1e-4", "GSM8K 0.469", "+0.051"),
    Published(PEFT, *PEFT_SETUP, "rsLoRA r=64 q,v, lr 1e-4", "GSM8K 0.513", "+0.111"),
    Published(PEFT, *PEFT_SETUP, "prefix 200 tokens, random init, lr 1e-3", "GSM8K 0.186", "+1.785"),
    Published(PEFT, *PEFT_SETUP, "prefix 200 tokens, zero init, lr 5e-3", "GSM8K 0.358", "+0.396"),
    Published(PEFT, *PEFT_SETUP, "prefix 50 tokens, init from a prompt, lr 5e-3", "GSM8K 0.416", "+0.198"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "full fine-tuning, code instruction tuning", "peak HumanEval", "0.45"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "LoRA, code instruction tuning", "peak HumanEval", "0.63"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "full fine-tuning, math instruction tuning", "GSM8K, epoch 4", "0.57"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "LoRA, math instruction tuning", "GSM8K, epoch 4", "0.63"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "full fine-tuning, code continued pretraining", "peak HumanEval", "0.54"),
    Published(BIDERMAN, *BIDERMAN_SETUP, "LoRA, code continued pretraining", "peak HumanEval", "0.64"),
)


def format_published(rows: tuple[Published, ...] = PUBLISHED) -> str:
    """The published runs as text: each source's setup once, then one line per run."""
    lines: list[str] = []
    for source in dict.fromkeys(r.source for r in rows):
        first = next(r for r in rows if r.source == source)
        lines += [f"{source}: {first.model}; {first.data}", f"  general measure: {first.metric}"]
        lines += [f"  {r.method:<48} at {r.at:<16} general measure {r.general}" for r in rows if r.source == source]
    return "\n".join(lines)
