"""The device check behind ``scripts/gpu_check.sh``: the ``gpu`` profile's real step counts on a CUDA GPU.

    bash scripts/gpu_check.sh                   # notebook 05, then a lab run of notebook 06: full fine-tuning
    bash scripts/gpu_check.sh --method lora     # notebook 06's LoRA (q, v, r=8) run instead

The code and its documentation: ``minipeft/tools/gpu_check.py``.
"""

import sys

from minipeft.tools.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
