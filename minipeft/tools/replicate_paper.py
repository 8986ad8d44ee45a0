"""Replicate the E2E NLG rows of the LoRA paper's Table 3 (GPT-2 Medium) with minipeft's own LoRA and prefix.

Each method is trained with its paper's recipe through ``minipeft.train.train``, decoded with beam
search on every test MR, and scored against all of that MR's human references (BLEU with sacrebleu,
ROUGE-L as E2E's scorer, plus the slot error rate). The table puts our numbers beside the papers'.

Recipes (from the papers, see ``../shared/reference/anchors.md``; in :mod:`minipeft.recipes` as the
``papers-gpt2-medium`` recipe and ``PAPER_SCHEDULES``):

- LoRA (Hu et al., 2021): q and v of every layer, r=4, alpha=32, dropout 0.1, AdamW lr 2e-4,
  weight decay 0.01, batch 8, 5 epochs, 500 warm-up steps then linear decay, label smoothing 0.1, beam 10.
- Prefix-tuning (Li & Liang, 2021): prefix length 10, MLP reparameterisation (hidden 512, dropped after
  training), lr 5e-5, batch 5, 10 epochs, linear decay, beam 5.
- Full fine-tuning (``--methods full``; optional, ~3x the memory): lr 5e-5, batch 8, 5 epochs, beam 10
  (our choice of recipe; the papers' FT rows report 68.2 and 68.8 BLEU).

The command (one GPU; LoRA ~26k steps and prefix ~84k steps on the 42k training pairs, several hours
on an A100; a T4 works but is slower)::

    python scripts/replicate_paper.py --model gpt2-medium --methods lora prefix --out results/e2e.json

Offline smoke test on the course's mini GPT-2 and restaurant set (what ``tests/test_replicate_paper.py`` runs)::

    python scripts/replicate_paper.py --model mini-gpt2 --data offline --max-steps 3 --n-test 8

``--model`` also takes a local folder, e.g. a stand-in with GPT-2 Medium's shapes and random weights
(``python -m minipeft.standin gpt2-medium DIR``), which ``make gpu-dry`` runs for one step of each method.
On a Llama model (SmolLM2, or a folder) LoRA's q and v are its ``q_proj`` and ``v_proj``.

``--e2e-dir`` reads the original E2E CSV files (trainset.csv, devset.csv, testset_w_refs.csv) instead
of the Hub.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch
from torch import nn

from minipeft.base_model import context_length, load_base_model
from minipeft.data import (
    E2E_FILES,
    first_mrs,
    group_by_mr,
    load_e2e,
    load_e2e_csv,
    load_restaurant,
    make_loader,
)
from minipeft.decode import generate_texts
from minipeft.lora_files import save_lora
from minipeft.metrics import bleu, rouge_l, slot_error_rate
from minipeft.notebook import quiet
from minipeft.params import count_parameters
from minipeft.recipes import PAPER_SCHEDULES, RECIPES, build, method_name
from minipeft.seeding import seed_everything
from minipeft.train import train

# The papers' recipe for GPT-2 Medium, from the course's one recipe table: what each method adapts (LoRA's q and v
# at r=4, alpha=32, dropout 0.1; prefix P=10 with an MLP of 512) and its learning rate; PAPER_SCHEDULES holds the
# rest of each paper's schedule (batch, epochs, warm-up, weight decay, label smoothing, beams).
RECIPE = RECIPES["papers-gpt2-medium"]
METHODS = ("lora", "prefix", "full")
# LoRA paper, Table 3, E2E NLG, GPT-2 Medium (prefix: Li & Liang report 70.3 BLEU for their own run)
PAPER = {
    "full": {"params": "354.92M", "BLEU": 68.2, "ROUGE-L": 71.0},
    "prefix": {"params": "0.35M", "BLEU": 69.7, "ROUGE-L": 71.4},
    "lora": {"params": "0.35M", "BLEU": 70.4, "ROUGE-L": 71.8},
}


def load_split(split: str, args) -> list[tuple[str, str]]:
    """The offline set, the E2E CSVs of ``--e2e-dir`` or E2E from the Hub; the first ``--n-train`` training pairs,
    the first ``--n-test`` test MRs (each with all its references)."""
    if args.data == "offline":
        pairs = load_restaurant(split, "cpu")
    elif args.e2e_dir:
        pairs = load_e2e_csv(Path(args.e2e_dir) / E2E_FILES[split])
    else:
        pairs = load_e2e(split)
    if split == "test" and args.n_test is not None:
        return first_mrs(pairs, args.n_test)
    return pairs[:args.n_train] if split == "train" else pairs


def saved_size(method: str, model: nn.Module) -> int:
    """Bytes on disk of what this method has to store (the adapter, the prefix, or the whole model)."""
    with tempfile.TemporaryDirectory() as tmp:
        if method == "lora":
            save_lora(model, tmp)
        elif method == "prefix":
            model.fold().save(tmp)
        else:
            model.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())


def run_method(method: str, args, train_pairs, test_groups, device) -> dict:
    recipe, lr = PAPER_SCHEDULES[method_name(method)], RECIPE.rate(method)
    seed_everything(args.seed)
    base, tokenizer = load_base_model(name=args.model, device=device)  # a model that cannot load is an error
    model = build(method, base, RECIPE, targets="qv")  # q and v in the base model's own layer names
    max_len = context_length(base) - (RECIPE.prefix_len if method == "prefix" else 0) - args.max_new_tokens
    loader = make_loader(train_pairs, tokenizer, recipe.batch_size, max_len, seed=args.seed, drop_long=True)
    steps = args.max_steps or recipe.epochs * len(loader)
    trainable = count_parameters(model, trainable_only=True)
    print(f"\n{method}: {trainable:,} trainable parameters, {steps:,} steps "
          f"({recipe.epochs} epochs of {len(loader):,} batches of {recipe.batch_size}), lr {lr}")
    history = train(model, loader, steps=steps, lr=lr, warmup_steps=min(recipe.warmup_steps, steps // 2),
                    weight_decay=recipe.weight_decay, label_smoothing=recipe.label_smoothing, device=device,
                    seed=args.seed, progress=not args.quiet)
    mrs = list(test_groups)
    outputs = generate_texts(model, tokenizer, mrs, max_new_tokens=args.max_new_tokens,
                             batch_size=args.eval_batch_size, num_beams=args.num_beams or recipe.num_beams,
                             progress=not args.quiet)
    refs = [test_groups[mr] for mr in mrs]
    stored = count_parameters(model.fold(), trainable_only=True) if method == "prefix" else trainable  # MLP dropped
    return {"method": method, "params": stored, "trained_params": trainable, "steps": steps,
            "final_train_loss": history.train_loss[-1],
            "BLEU": bleu(outputs, refs), "ROUGE-L": rouge_l(outputs, refs), "SER": slot_error_rate(mrs, outputs),
            "checkpoint_bytes": saved_size(method, model), "seconds_per_step": history.median_seconds_per_step,
            "peak_memory_bytes": history.peak_memory_bytes, "samples": list(zip(mrs[:3], outputs[:3]))}


def table(results: list[dict], model: str) -> str:
    """Table-3-style columns: ours beside the paper's (the paper's numbers are for GPT-2 Medium).

    ``params`` counts what is stored after training, as the papers do: the prefix without its MLP.
    """
    head = (f"{'method':<8} {'params':>10} {'paper':>8} {'BLEU':>6} {'paper':>6} {'ROUGE-L':>8} {'paper':>6} "
            f"{'SER %':>6} {'ckpt MB':>9}")
    lines = [f"E2E NLG test, {model} (paper: GPT-2 Medium, LoRA paper Table 3)", head, "-" * len(head)]
    for r in results:
        p = PAPER[r["method"]]
        lines.append(f"{r['method']:<8} {r['params'] / 1e6:>9.2f}M {p['params']:>8} {r['BLEU']:>6.1f} "
                     f"{p['BLEU']:>6.1f} {r['ROUGE-L']:>8.1f} {p['ROUGE-L']:>6.1f} {100 * r['SER']:>6.1f} "
                     f"{r['checkpoint_bytes'] / 2**20:>9.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gpt2-medium",
                    help="Hub id (gpt2-medium), a local folder (a stand-in), or mini-gpt2 for a smoke test")
    ap.add_argument("--methods", nargs="+", default=["lora", "prefix"], choices=METHODS)
    ap.add_argument("--data", choices=["e2e", "offline"], default="e2e", help="real E2E, or the offline set")
    ap.add_argument("--e2e-dir", help="folder with the original E2E CSVs (instead of the Hub)")
    ap.add_argument("--n-train", type=int, help="use only the first N training pairs")
    ap.add_argument("--n-test", type=int, help="score only the first N test MRs")
    ap.add_argument("--max-steps", type=int, help="stop after N steps (smoke tests); default: the recipe's epochs")
    ap.add_argument("--num-beams", type=int, help="override the recipe's beam size")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    quiet()  # no library chatter between the results
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_pairs = load_split("train", args)
    test_groups = group_by_mr(load_split("test", args))
    print(f"{args.model} on {device}; {len(train_pairs):,} training pairs, {len(test_groups):,} test MRs "
          f"({sum(map(len, test_groups.values())):,} references)")
    results = [run_method(m, args, train_pairs, test_groups, device) for m in args.methods]
    print("\n" + table(results, args.model))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    if not all(math.isfinite(r["final_train_loss"]) for r in results):
        raise RuntimeError("A training loss is not finite; lower the learning rate.")
    return results


if __name__ == "__main__":
    main()
