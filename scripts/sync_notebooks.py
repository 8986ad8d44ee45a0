"""Regenerate every notebook's "Open in Colab" badge and Colab install cell, and the README's course table.

    python scripts/sync_notebooks.py          # rewrite what disagrees
    python scripts/sync_notebooks.py --check  # list what disagrees, exit 1 if anything does (tests use this)

The code and its documentation: ``minipeft/tools/sync_notebooks.py``.
"""

import sys

from minipeft.tools.sync_notebooks import main

if __name__ == "__main__":
    sys.exit(main())
