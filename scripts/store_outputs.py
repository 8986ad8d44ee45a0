"""Regenerate the outputs stored in the notebooks: execute each one in place and stamp where they came from.

    python scripts/store_outputs.py                          # every notebook, in the cpu profile (make outputs)
    python scripts/store_outputs.py 05_gpt2_finetune.ipynb   # one notebook

The code and its documentation: ``minipeft/tools/store_outputs.py``.
"""

import sys

from minipeft.tools.store_outputs import main

if __name__ == "__main__":
    sys.exit(main())
