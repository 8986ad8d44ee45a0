"""`make figures`: the course's diagrams, drawn with matplotlib and written as SVGs to docs/figures/.

    python scripts/make_figures.py                     # every figure -> docs/figures/<name>.svg
    python scripts/make_figures.py --out DIR --png     # elsewhere, with a PNG of each beside it (to look at)
    python scripts/make_figures.py lora_path           # only the named figures

The code and its documentation: ``minipeft/tools/make_figures.py``.
"""

import sys

from minipeft.tools.make_figures import main

if __name__ == "__main__":
    sys.exit(main())
