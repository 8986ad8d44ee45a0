"""The forgetting lab's sweep (notebook 06): one JSON per run in results/forgetting-lab/, resumable.

    python scripts/forgetting_lab.py                   # every missing run of both grids (hours on 2 cores)
    python scripts/forgetting_lab.py --max-runs 4      # four more, then stop
    python scripts/forgetting_lab.py --grid main       # the main grid only (3 methods x 4 rates x 5 seeds)

Runs already in the folder are skipped, so it continues where the last call stopped; each file carries its
provenance (commit, machine, versions, date, wall seconds). The runs: :mod:`minipeft.forgetting.lab`.
"""

from __future__ import annotations

import argparse

import torch

from minipeft.forgetting.lab import GRIDS, LAB_DIR, run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), action="append", help="main, rank (default: both)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--dir", default=str(LAB_DIR), help=f"results folder (default {LAB_DIR})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_sweep(tuple(args.grid or GRIDS), args.max_runs, args.dir)
    return 0
