"""Notebook 08's ladder: one JSON per run in results/ladder/, resumable.

    python scripts/ladder.py --max-runs 4      # four more runs, then stop (make ladder: all)

The code and its documentation: ``minipeft/tools/ladder.py``.
"""

import sys

from minipeft.tools.ladder import main

if __name__ == "__main__":
    sys.exit(main())
