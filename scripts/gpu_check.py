"""The device check behind ``scripts/gpu_check.sh``: the ``gpu`` profile's real step counts on a CUDA GPU.

    bash scripts/gpu_check.sh                   # notebook 05, then notebook 06's full fine-tuning setting
    bash scripts/gpu_check.sh --setting lora    # notebook 06's LoRA (q, v, r=4) setting instead

The code and its documentation: ``minipeft/tools/gpu_check.py``.
"""

import sys

from minipeft.tools.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
