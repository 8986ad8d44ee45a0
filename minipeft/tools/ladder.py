"""Notebook 08's ladder on SmolLM2-135M: one JSON per run in results/ladder/, resumable.

    python scripts/ladder.py                      # the rate check, then every method x 3 seeds (hours on 2 cores)
    python scripts/ladder.py --max-runs 4         # four more runs, then stop
    python scripts/ladder.py --method lora --method qlora    # only these methods

Runs already in the folder are skipped, so it continues where the last call stopped; each file carries its
provenance (commit, machine, versions, date, wall seconds). The rate check (results/ladder/rates/) comes first:
the ladder's runs (results/ladder/runs/) use the rate it picks per method; a method none of whose runs holds a
memory measure gets one more run of its first seed for that alone (results/ladder/memory/). The runs:
:mod:`minipeft.ladder`.
"""

from __future__ import annotations

from minipeft.ladder import LADDER_DIR, METHODS, run_ladder
from minipeft.tools.sweep_cli import parse_sweep_args, sweep_parser


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, LADDER_DIR)
    parser.add_argument("--method", choices=METHODS, action="append", help=f"{', '.join(METHODS)} (default: all)")
    args = parse_sweep_args(parser, argv)
    run_ladder(args.profile, tuple(args.method or METHODS), args.max_runs, args.dir)
    return 0
