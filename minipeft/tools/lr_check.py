"""A short learning-rate check for each method on one base model: the evidence behind minipeft/recipes.py.

    python scripts/lr_check.py --model smollm2-135m --steps 40 > results/lr_check_smollm2.txt

Each method trains ``--steps`` steps (warm-up 10%, then linear decay, as notebook 05 does) at three learning
rates around the recipe's, on the restaurant task; the validation loss after training is printed. Slow on a
CPU (about 15 minutes for SmolLM2-135M on 2 cores at 40 steps).
"""

from __future__ import annotations

import argparse
import sys
import time

from minipeft.base_model import load_base_model
from minipeft.data import load_restaurant, make_loader
from minipeft.recipes import METHODS, build, recipe_for
from minipeft.train import evaluate_loss, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--factor", type=float, default=3.0, help="rates tried: recipe / factor, recipe, x factor")
    parser.add_argument("--only", nargs="+", metavar="METHOD=LR", help='just these runs, e.g. "LoRA=2.7e-2" (to try '
                        "one step past the edge of the grid when the best rate is at an end)")
    args = parser.parse_args(argv)

    base, tokenizer = load_base_model("cpu", name=args.model, device="cpu")
    recipe = recipe_for(base)
    train_loader = make_loader(load_restaurant("train", "cpu"), tokenizer, args.batch_size, 256, seed=0)
    val_loader = make_loader(load_restaurant("validation", "cpu"), tokenizer, args.batch_size, 256, shuffle=False)
    print(f"{args.model}: {args.steps} steps of batch {args.batch_size}; untuned validation loss "
          f"{evaluate_loss(base, val_loader, 4):.3f} (4 batches)", flush=True)
    grid = [(m, lr) for m in METHODS for lr in (recipe.lr[m] / args.factor, recipe.lr[m], recipe.lr[m] * args.factor)]
    if args.only:
        grid = [(run.rsplit("=", 1)[0], float(run.rsplit("=", 1)[1])) for run in args.only]
        unknown = sorted({m for m, _ in grid} - set(METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}: use {', '.join(METHODS)}")
    for method, lr in grid:
        start = time.perf_counter()
        model = build(method, load_base_model("cpu", name=args.model)[0], recipe)  # a fresh base model each run
        train(model, train_loader, steps=args.steps, lr=lr, warmup_steps=args.steps // 10, progress=False)
        val = evaluate_loss(model, val_loader, 4)
        seconds = time.perf_counter() - start
        print(f"{method:>16}  lr {lr:.1e}  validation loss {val:.3f}  ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
