"""The forgetting lab's sweep (notebook 06): one JSON per run in results/forgetting-lab/, resumable.

    python scripts/forgetting_lab.py                   # every missing run of both grids (hours on 2 cores)
    python scripts/forgetting_lab.py --max-runs 4      # four more, then stop
    python scripts/forgetting_lab.py --grid main       # the main grid only (3 methods x 4 rates x 5 seeds)

Runs already in the folder are skipped, so it continues where the last call stopped; each file carries its
provenance (commit, machine, versions, date, wall seconds). The runs: :mod:`minipeft.forgetting.lab`.
"""

from __future__ import annotations

from minipeft.forgetting.lab import GRIDS, LAB_DIR, run_sweep
from minipeft.tools.sweep_cli import parse_sweep_args, sweep_parser


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, LAB_DIR, profile=False)
    parser.add_argument("--grid", choices=sorted(GRIDS), action="append", help="main, rank (default: both)")
    args = parse_sweep_args(parser, argv)
    run_sweep(tuple(args.grid or GRIDS), args.max_runs, args.dir)
    return 0
