"""Notebook 05's recipes on real E2E: one JSON per run in results/real-e2e/, resumable.

    python scripts/real_e2e.py --max-runs 3      # three more runs, then stop (make real-e2e: all)

The code and its documentation: ``minipeft/tools/real_e2e.py``.
"""

import sys

from minipeft.tools.real_e2e import main

if __name__ == "__main__":
    sys.exit(main())
