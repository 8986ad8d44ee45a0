"""A short learning-rate check for each method on one base model: the evidence behind minipeft/recipes.py.

    python scripts/lr_check.py --model smollm2-135m --steps 40 > results/lr_check_smollm2.txt

The code and its documentation: ``minipeft/tools/lr_check.py``.
"""

import sys

from minipeft.tools.lr_check import main

if __name__ == "__main__":
    sys.exit(main())
