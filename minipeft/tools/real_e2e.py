"""Notebook 05's three recipes on real E2E (its dev set split by MR): one JSON per run in results/real-e2e/.

    python scripts/real_e2e.py                    # the untuned model, then 3 methods x 3 seeds on SmolLM2-135M
    python scripts/real_e2e.py --max-runs 3       # three more runs, then stop
    python scripts/real_e2e.py --devset path/to/devset.csv

Runs already in the folder are skipped, so it continues where the last call stopped; each file carries its
provenance (commit, machine, versions, date, wall seconds). The measurement: :mod:`minipeft.real_e2e`.
"""

from __future__ import annotations

from minipeft.real_e2e import RESULTS_DIR, run_real_e2e
from minipeft.tools.sweep_cli import parse_sweep_args, sweep_parser


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, RESULTS_DIR)
    parser.add_argument("--devset", default=None, help="E2E's devset.csv (default: MINIPEFT_E2E_DEVSET or "
                                                       "../shared/data/e2e/devset.csv)")
    args = parse_sweep_args(parser, argv)
    run_real_e2e(args.profile, args.devset, args.dir, args.max_runs)
    return 0
