"""`make slides`: one reveal.js deck per notebook, built by nbconvert from the cells tagged ``slides``.

    python scripts/build_slides.py                   # every notebook -> artifacts/slides/<notebook>.slides.html
    python scripts/build_slides.py --out DIR 03_lora.ipynb

The code and its documentation: ``minipeft/tools/build_slides.py``.
"""

import sys

from minipeft.tools.build_slides import main

if __name__ == "__main__":
    sys.exit(main())
