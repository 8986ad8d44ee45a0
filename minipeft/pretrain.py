"""Build the course's offline mini GPT-2: ``python -m minipeft.pretrain``.

A real ``GPT2LMHeadModel`` (4 layers, 128 wide) and a byte-level BPE tokenizer of the GPT-2 kind
(4,096 tokens), both trained here from the Shakespeare corpus with fixed seeds, in two phases:

1. language modelling on 128-token windows (``pretrain``'s ``steps``);
2. a short second phase on windows of the full context, 256 positions (``extend_context``): phase 1 never
   trains positions 128-255, and restaurant examples (plus a prefix) run past 128 tokens.

The result is written to ``data/mini-gpt2/`` as safetensors plus tokenizer files, with the loss curve and
the held-out perplexity beside it (``pretrain_log.json``, ``loss_curve.png``). The log also records the
*copy loss* (``copy_loss``): this model is too small and too briefly trained to copy from its context
(induction heads; real GPT-2 learned it from billions of tokens), which is why adapters on a frozen mini
model copy names from an MR much worse than full fine-tuning does (notebook 05).
``python -m minipeft.pretrain --phase2-only`` runs phase 2 on a saved phase-1 model (the same result).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from matplotlib.figure import Figure
from tokenizers import ByteLevelBPETokenizer
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from .corpus import HELD_OUT, train_and_heldout
from .metrics import perplexity
from .paths import MINI_GPT2_DIR
from .train import evaluate_loss, evaluating, model_device

EOS = "<|endoftext|>"
MODEL_SHAPE = dict(n_layer=4, n_embd=128, n_head=4, n_positions=256)


def train_tokenizer(texts: list[str], vocab_size: int) -> GPT2TokenizerFast:
    """Learn GPT-2-style byte-level BPE merges on ``texts``; ``<|endoftext|>`` gets id 0."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)  # writes vocab.json and merges.txt, the files GPT-2's tokenizer reads
        tokenizer = GPT2TokenizerFast.from_pretrained(tmp, model_max_length=MODEL_SHAPE["n_positions"])
    return tokenizer  # bos = eos = unk = <|endoftext|>, exactly as GPT-2's own tokenizer


def unigram_perplexity(train_ids: list[int], test_ids: list[int], vocab_size: int) -> float:
    """Perplexity of an add-one-smoothed unigram model: the bar a language model must clear."""
    counts, total = Counter(train_ids), len(train_ids) + vocab_size
    nll = -sum(math.log((counts[i] + 1) / total) for i in test_ids) / len(test_ids)
    return math.exp(nll)


def heldout_perplexity(model: GPT2LMHeadModel, ids: torch.Tensor, seq_len: int, batch: int = 32) -> float:
    """Next-token perplexity over non-overlapping windows of the held-out text."""
    windows = ids[: len(ids) // seq_len * seq_len].view(-1, seq_len)
    return perplexity(evaluate_loss(model, ({"input_ids": w, "labels": w} for w in windows.split(batch))))


def copy_loss(model: GPT2LMHeadModel, vocab_size: int, length: int = 30, n: int = 16, seed: int = 0) -> float:
    """Mean loss on the second copy of a repeated random token sequence: low only if the model copies."""
    x = torch.randint(1, vocab_size, (n, length), generator=torch.Generator().manual_seed(seed))
    ids = torch.cat([x, x], 1).to(model_device(model))
    with evaluating(model):
        logp = torch.log_softmax(model(ids).logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return -logp[:, length:].mean().item()


def pretrain(out_dir: Path = MINI_GPT2_DIR, steps: int = 2000, batch_size: int = 16, seq_len: int = 128,
             lr: float = 1e-3, vocab_size: int = 4096, seed: int = 0, save_every: int = 500) -> dict:
    """Train tokenizer and model from scratch and save both; returns the log written beside them."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # one thread: faster on a busy 2-core machine, and the same sums every run
    start = time.time()
    train_works, heldout_works = train_and_heldout()
    tokenizer = train_tokenizer(train_works, vocab_size)
    eos = tokenizer.eos_token
    train_ids = torch.tensor(tokenizer(eos.join(train_works))["input_ids"])  # works separated by EOS
    test_ids = torch.tensor(tokenizer("\n\n".join(heldout_works))["input_ids"])
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, **MODEL_SHAPE)
    model = GPT2LMHeadModel(config)
    optimizer, schedule = _optimizer(model, lr, steps, warmup=max(1, steps // 20))
    generator = torch.Generator().manual_seed(seed)
    curve = []
    log = {"seed": seed, "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "lr": lr,
           "model": MODEL_SHAPE, "vocab_size": len(tokenizer), "parameters": model.num_parameters(),
           "train_tokens": len(train_ids), "heldout_plays": list(HELD_OUT), "heldout_tokens": len(test_ids),
           "unigram_perplexity": round(unigram_perplexity(train_ids.tolist(), test_ids.tolist(), len(tokenizer)), 2),
           "torch": torch.__version__}
    for step in (bar := tqdm(range(steps), desc="pretraining mini GPT-2")):
        loss = _lm_step(model, train_ids, seq_len, batch_size, generator, optimizer, schedule)
        if step % 50 == 0 or step == steps - 1:
            curve.append((step, round(loss.item(), 4)))
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % save_every == 0 or step == steps - 1:  # a usable checkpoint early, the final one last
            log.update(steps_done=step + 1, train_loss_curve=curve, minutes=round((time.time() - start) / 60, 1),
                       heldout_perplexity=round(heldout_perplexity(model, test_ids, seq_len), 2))
            _save(model, tokenizer, log, out_dir)
    return extend_context(out_dir, seed=seed)


def extend_context(out_dir: Path = MINI_GPT2_DIR, steps: int = 400, batch_size: int = 8, lr: float = 5e-4,
                   seed: int = 0) -> dict:
    """Phase 2 on the phase-1 model saved in ``out_dir``: language modelling on full-context windows."""
    torch.set_num_threads(1)
    start = time.time()
    model = GPT2LMHeadModel.from_pretrained(out_dir)
    tokenizer = GPT2TokenizerFast.from_pretrained(out_dir)
    log = json.loads((out_dir / "pretrain_log.json").read_text())
    if "phase2" in log:
        raise RuntimeError(f"{out_dir} already went through phase 2; rebuild it from scratch with "
                           "`python -m minipeft.pretrain`.")
    torch.manual_seed(seed + 1)  # dropout
    train_works, heldout_works = train_and_heldout()
    train_ids = torch.tensor(tokenizer(tokenizer.eos_token.join(train_works))["input_ids"])
    test_ids = torch.tensor(tokenizer("\n\n".join(heldout_works))["input_ids"])
    seq_len = model.config.n_positions
    before = heldout_perplexity(model, test_ids, seq_len)
    model.train()  # from_pretrained gives an eval-mode model; phase 2 trains with dropout, as phase 1
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer, schedule = _optimizer(model, lr, steps, warmup=max(1, steps // 10))
    curve = []
    for step in (bar := tqdm(range(steps), desc=f"phase 2: {seq_len}-token windows")):
        loss = _lm_step(model, train_ids, seq_len, batch_size, generator, optimizer, schedule)
        if step % 50 == 0 or step == steps - 1:
            curve.append((log["steps_done"] + step, round(loss.item(), 4)))
            bar.set_postfix(loss=f"{loss.item():.3f}")
    log["phase2"] = {"steps": steps, "batch_size": batch_size, "seq_len": seq_len, "lr": lr,
                     "minutes": round((time.time() - start) / 60, 1),
                     "phase1_heldout_perplexity": log["heldout_perplexity"],
                     "full_context_perplexity_before": round(before, 2),
                     "full_context_perplexity_after": round(heldout_perplexity(model, test_ids, seq_len), 2),
                     "copy_loss": round(copy_loss(model, len(tokenizer)), 3),
                     "uniform_loss": round(math.log(len(tokenizer)), 3)}
    log.update(train_loss_curve=log["train_loss_curve"] + curve,
               minutes=round(log["minutes"] + log["phase2"]["minutes"], 1),
               heldout_perplexity=round(heldout_perplexity(model, test_ids, log["seq_len"]), 2))
    _save(model, tokenizer, log, out_dir)
    return log


def _optimizer(model: GPT2LMHeadModel, lr: float, steps: int, warmup: int):
    """AdamW with linear warm-up, then cosine decay to zero over ``steps``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps))))
    return optimizer, schedule


def _lm_step(model: GPT2LMHeadModel, train_ids: torch.Tensor, seq_len: int, batch_size: int,
             generator: torch.Generator, optimizer, schedule) -> torch.Tensor:
    """One language-modelling step on ``batch_size`` random windows of ``seq_len`` tokens; returns the loss."""
    starts = torch.randint(0, len(train_ids) - seq_len, (batch_size,), generator=generator)
    batch = torch.stack([train_ids[s : s + seq_len] for s in starts])
    loss = model(batch, labels=batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _save(model: GPT2LMHeadModel, tokenizer: GPT2TokenizerFast, log: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "pretrain_log.json").write_text(json.dumps(log) + "\n")
    _plot_curve(log, out_dir / "loss_curve.png")


def _plot_curve(log: dict, path: Path) -> None:
    steps, losses = zip(*log["train_loss_curve"])
    fig = Figure(figsize=(6, 3.5))  # a figure without pyplot: no display backend needed, none switched
    ax = fig.subplots()
    ax.plot(steps, losses, label="training loss")
    ax.axhline(math.log(log["unigram_perplexity"]), color="grey", ls="--", label="unigram model (held-out)")
    ax.axhline(math.log(log["heldout_perplexity"]), color="C1", ls=":", label="mini GPT-2 (held-out)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="Pretraining the offline mini GPT-2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=MINI_GPT2_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phase2-only", action="store_true", help="run phase 2 on the phase-1 model in --out")
    args = parser.parse_args()
    log = extend_context(args.out, seed=args.seed) if args.phase2_only else pretrain(args.out, steps=args.steps,
                                                                                      seed=args.seed)
    print(f"saved to {args.out}: held-out perplexity {log['heldout_perplexity']} "
          f"(unigram {log['unigram_perplexity']}), full context {log['phase2']['full_context_perplexity_after']}, "
          f"after {log['minutes']} min")


if __name__ == "__main__":
    main()
