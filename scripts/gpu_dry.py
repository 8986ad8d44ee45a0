"""`make gpu-dry`: the `gpu` profile end to end on a CPU machine, against stand-ins for the Hub's GPT-2.

    python scripts/gpu_dry.py                                 # every notebook, then the replication script
    python scripts/gpu_dry.py 05_gpt2_finetune.ipynb --no-replicate

The code and its documentation: ``minipeft/tools/gpu_dry.py``.
"""

import sys

from minipeft.tools.gpu_dry import main

if __name__ == "__main__":
    sys.exit(main())
