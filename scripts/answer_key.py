"""`make answer-key`: every exercise and its reference solution, one Markdown page, in artifacts/answer-key.md.

    python scripts/answer_key.py               # -> artifacts/answer-key.md
    python scripts/answer_key.py --out FILE

The code and its documentation: ``minipeft/tools/answer_key.py``.
"""

import sys

from minipeft.tools.answer_key import main

if __name__ == "__main__":
    sys.exit(main())
