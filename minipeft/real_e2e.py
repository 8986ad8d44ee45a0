"""What notebook 05's offline scores mean on the real benchmark: its three recipes trained and scored on real E2E.

The course's offline restaurant set is templated, so a model that learns its few sentence shapes scores above what
the papers report on E2E. Here the same three recipes (full fine-tuning, prefix-tuning and LoRA at
:func:`minipeft.recipes.recipe_for`'s rates, notebook 05's) train with notebook 05's budget (the profile's
``train_steps`` steps of :data:`minipeft.ladder.BATCH` examples, a tenth of them warm-up) on real E2E sentences, and
are scored as notebook 05 scores: one greedy sentence per test MR against all of that MR's human references (slot
error rate, BLEU), the untuned model beside them.

The data: E2E's dev set (4,672 human sentences for 547 MRs; :func:`minipeft.data.e2e_devset_path`), split by MR
(:func:`split_by_mr`: an MR and all its references fall in one split), because E2E's training set is not on every
machine and the Hub may be unreachable. One JSON per run in ``results/real-e2e/`` (the runs of
:mod:`minipeft.ladder`: the same measurement, provenance included), numbers and the model's own first sentence only:
no sentence written by E2E's crowd workers is committed.

    python scripts/real_e2e.py           # every missing run on SmolLM2-135M (make real-e2e), resumable
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .data import Pair, e2e_devset_path, group_by_mr, load_e2e_csv
from .forgetting.lab import provenance, write_json
from .ladder import NAMES, LadderContext, LadderRun, LadderScale, Rung, rungs, score_sentences, sweep
from .paths import REPO_ROOT
from .profiles import Profile, get_profile
from .tables import format_table
from .train import evaluate_loss

RESULTS_DIR = REPO_ROOT / "results" / "real-e2e"
METHODS = ("full", "prefix", "lora")  # notebook 05's three
FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test: of the MRs
SPLIT_SEED = 0
SEEDS = (0, 1, 2)


def split_by_mr(pairs: Sequence[Pair], fractions: tuple[float, float, float] = FRACTIONS, seed: int = SPLIT_SEED
                ) -> dict[str, list[Pair]]:
    """``{"train", "validation", "test"}`` pairs: the MRs shuffled by ``seed`` and cut by ``fractions``, each MR with
    every one of its references, so no test MR (nor a reference of it) is seen in training."""
    groups = group_by_mr(pairs)
    mrs = list(groups)
    random.Random(seed).shuffle(mrs)
    a = round(fractions[0] * len(mrs))
    b = a + round(fractions[1] * len(mrs))
    cuts = {"train": mrs[:a], "validation": mrs[a:b], "test": mrs[b:]}
    return {split: [(mr, ref) for mr in part for ref in groups[mr]] for split, part in cuts.items()}


def real_e2e_scale(profile: str | Profile, max_new_tokens: int, max_len: int = 512) -> LadderScale:
    """Notebook 05's budget in ``profile``: its training steps and validation size, every test MR; ``ci`` one seed."""
    profile = get_profile(profile)
    seeds = (0,) if profile.name == "ci" or profile.dry_run else SEEDS
    return LadderScale(steps=profile.train_steps, rate_steps=0, n_val=profile.n_val, n_mrs=10**9,
                       max_new_tokens=max_new_tokens, max_len=max_len, rslora_rank=0, seeds=seeds)


def untuned(ctx: LadderContext) -> dict:
    """The base model scored like a run: validation loss, slot error rate and BLEU of its sentences."""
    start = time.perf_counter()
    return {"method": "untuned", "base_model": ctx.base_name, "task_loss": evaluate_loss(ctx.base, ctx.val_loader),
            **score_sentences(ctx.base, ctx), "provenance": provenance(ctx.code, time.perf_counter() - start)}


def run_real_e2e(profile: str | Profile = "cpu", devset: str | Path | None = None, out: str | Path = RESULTS_DIR,
                 max_runs: int | None = None, base: nn.Module | None = None, tokenizer=None) -> list[Path]:
    """The untuned model, then every missing run (each method x seed), on ``devset`` split by MR."""
    from .base_model import context_length, load_base_model

    profile = get_profile(profile)
    path = Path(devset) if devset else e2e_devset_path()
    if not path.is_file():
        raise FileNotFoundError(f"No E2E dev set at {path}: pass its path or set MINIPEFT_E2E_DEVSET (E2E's "
                                "devset.csv, from https://github.com/tuetschek/e2e-dataset).")
    splits = split_by_mr(load_e2e_csv(path))
    if base is None:
        base, tokenizer = load_base_model(profile)
    longest = max(len(tokenizer(" " + ref)["input_ids"]) for _, ref in splits["train"]) + 1  # notebook 05's rule
    scale = real_e2e_scale(profile, longest, min(512, context_length(base)))
    ctx = LadderContext.create(base, tokenizer, profile.base_model, profile, scale, data=splits.__getitem__)
    print(f"real E2E from {path}: {len(group_by_mr(splits['train']))} training MRs ({len(splits['train'])} "
          f"sentences), {len(ctx.mrs)} test MRs; {scale.steps} steps per run", flush=True)
    out = Path(out)
    written = []
    if not (out / "untuned.json").is_file():
        write_json(out / "untuned.json", untuned(ctx))
        written.append(out / "untuned.json")
    runs = [LadderRun(m, ctx.recipe.rate(m), seed, scale.steps) for seed in scale.seeds for m in METHODS]
    return written + sweep(runs, ctx, out, max_runs)


def run_records(out: str | Path = RESULTS_DIR) -> list[dict]:
    """Every committed run's record, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*-seed*.json"))]


def load_results(out: str | Path = RESULTS_DIR, records: list[dict] | None = None
                 ) -> tuple[dict | None, list[Rung]]:
    """The committed measurement: the untuned record (None if absent) and one :class:`Rung` per method (from
    ``records`` where the caller has already read them with :func:`run_records`)."""
    out = Path(out)
    base = json.loads((out / "untuned.json").read_text()) if (out / "untuned.json").is_file() else None
    records = run_records(out) if records is None else records
    return base, rungs(records) if records else []


def by_method(table: list[Rung]) -> dict[str, Rung]:
    """``{method name: rung}``, the names notebook 05 uses (a Rung's own name adds LoRA's rank)."""
    return {NAMES[r.method]: r for r in table}


def _this_run(source: str) -> str:
    """The label of the notebook's own scores: "offline" on the course's restaurant set, else "this run (E2E)"."""
    return "offline" if source == "offline" else f"this run ({source})"


def side_by_side(offline: dict[str, dict[str, float]], out: str | Path = RESULTS_DIR, source: str = "offline") -> str:
    """Notebook 05's scores (``{method name: {"SER", "BLEU"}}``, "untuned" included; ``source`` names their data, as
    ``load_e2e_or_offline`` returns it) next to the committed real-E2E measurement (means with 95% intervals over
    seeds), one row per method."""
    label = _this_run(source)
    base, table = load_results(out)
    real = by_method(table)

    rows = []
    for name, score in offline.items():
        row = {"method": name, f"{label} SER %": 100 * score["SER"], f"{label} BLEU": score["BLEU"]}
        if name == "untuned" and base:
            row |= {"real E2E SER % [95%]": f"{100 * base['ser']:.1f}", "real E2E BLEU [95%]": f"{base['bleu']:.1f}",
                    "seeds": "-"}
        elif name in real:
            r = real[name]
            row |= {"real E2E SER % [95%]": r.ser.scaled(100).format(".1f"),
                    "real E2E BLEU [95%]": r.bleu.format(".1f"), "seeds": r.ser.n}
        else:
            row |= {"real E2E SER % [95%]": "not run", "real E2E BLEU [95%]": "not run", "seeds": 0}
        rows.append(row)
    return format_table(rows, digits=1)


def read_side_by_side(offline: dict[str, dict[str, float]], out: str | Path = RESULTS_DIR,
                      source: str = "offline") -> str:
    """A reading of :func:`side_by_side`, computed from its numbers: each method's real-E2E mean over its score in
    ``offline`` (SER and BLEU), whether the methods' 95% SER intervals separate, and the methods' order by SER in
    each seed of the committed runs."""
    label = _this_run(source)
    records = run_records(out)  # read once: the rungs and the per-seed orders below
    base, table = load_results(out, records)
    real = by_method(table)
    names = [n for n in offline if n in real]
    if not names:
        return f"Reading: no committed real-E2E run to compare with ({provenance_line(out)})"
    lines = []
    for n in names:
        r, o = real[n], offline[n]
        ser = f"{r.ser.mean / o['SER']:.1f}x" if o["SER"] else "from 0"
        bleu = f"{r.bleu.mean / o['BLEU']:.2f}x" if o["BLEU"] else "from 0"
        lines.append(f"{n}: real E2E / {label}: SER {100 * o['SER']:.1f}% -> {100 * r.ser.mean:.1f}% ({ser}), "
                     f"BLEU {o['BLEU']:.1f} -> {r.bleu.mean:.1f} ({bleu})")
    by_ser = sorted(names, key=lambda n: offline[n]["SER"])
    real_order = sorted(names, key=lambda n: real[n].ser.mean)
    if len(names) < 2:
        lines.append("One method: nothing to order.")
    else:
        lines.append(f"Order by SER, {label}: {' < '.join(by_ser)}; real E2E (means): {' < '.join(real_order)}: "
                     + ("the same." if by_ser == real_order else "different."))
    if len(names) > 1 and min(real[n].ser.n for n in names) < 2:
        lines.append("One seed per method: no intervals, so the real-E2E gaps between methods are not measured.")
    elif len(names) > 1:
        pairs = [(a, b) for i, a in enumerate(real_order) for b in real_order[i + 1:]]
        apart = [f"{a} < {b}" for a, b in pairs if real[a].ser.below(real[b].ser)]
        lines.append("95% SER intervals: " + (f"separate for {', '.join(apart)}; the others overlap." if apart else
                                               "every pair overlaps, so the means alone do not order the methods."))
    seeds: dict[int, dict[str, float]] = {}
    for record in records:
        seeds.setdefault(record["seed"], {})[NAMES[record["method"]]] = record["ser"]
    orders = {}
    for seed, ser in sorted(seeds.items()):
        orders[seed] = sorted((n for n in names if n in ser), key=ser.__getitem__)
        lines.append(f"  seed {seed}: " + " < ".join(f"{n} {100 * ser[n]:.1f}%" for n in orders[seed]))
    if len(orders) > 1 and len(names) > 1:
        same = all(o == real_order for o in orders.values())
        lines.append("Per seed: " + (
            f"the same order in all {len(orders)} seeds." if same else "the order changes between seeds."))
    if base is not None and "untuned" in offline:
        lines.append("untuned: one run (no training; greedy decoding is deterministic): no seeds, no interval.")
    return "Reading: " + "\n".join(lines)


def provenance_line(out: str | Path = RESULTS_DIR) -> str:
    """Where the committed real-E2E numbers come from, in one line (or how to make them)."""
    base, table = load_results(out)
    if base is None or not table:
        return f"No real-E2E runs are committed in {Path(out).relative_to(REPO_ROOT)}: `make real-e2e` makes them."
    p = base["provenance"]
    return (f"Real E2E: {base['base_model']}, E2E's dev set split by MR ({base['n_mrs']} test MRs), "
            f"seeds: {', '.join(f'{NAMES[r.method]} {r.ser.n}' for r in table)}; {p['machine']}, {p['date'][:10]}, "
            f"commit {p['commit'][:7]} (results/real-e2e/, scripts/real_e2e.py).")

