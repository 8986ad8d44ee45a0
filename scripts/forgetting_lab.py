"""The forgetting lab's sweep (notebook 06): one JSON per run in results/forgetting-lab/, resumable.

    python scripts/forgetting_lab.py --max-runs 4      # four more runs, then stop (make forgetting-lab: all)

The code and its documentation: ``minipeft/tools/forgetting_lab.py``.
"""

import sys

from minipeft.tools.forgetting_lab import main

if __name__ == "__main__":
    sys.exit(main())
