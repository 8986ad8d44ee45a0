"""Notebook 05's three recipes on real E2E (its dev set split by MR): one JSON per run in results/real-e2e/.

    python scripts/real_e2e.py                    # the untuned model, then 3 methods x 3 seeds on SmolLM2-135M
    python scripts/real_e2e.py --max-runs 3       # three more runs, then stop
    python scripts/real_e2e.py --devset path/to/devset.csv

Runs already in the folder are skipped, so it continues where the last call stopped; each file carries its
provenance (commit, machine, versions, date, wall seconds). The measurement: :mod:`minipeft.real_e2e`.
"""

from __future__ import annotations

import argparse

import torch

from minipeft.real_e2e import RESULTS_DIR, run_real_e2e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", default=None, help="E2E's devset.csv (default: MINIPEFT_E2E_DEVSET or "
                                                       "../shared/data/e2e/devset.csv)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--dir", default=str(RESULTS_DIR), help=f"results folder (default {RESULTS_DIR})")
    parser.add_argument("--profile", default="cpu", help="cpu (SmolLM2-135M, the committed results) or ci (smoke)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_real_e2e(args.profile, args.devset, args.dir, args.max_runs)
    return 0
