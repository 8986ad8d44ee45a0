"""`make colab-check`: are the Colab badges and the install cell's clone address live? (By hand, with internet.)

    python scripts/colab_check.py

The code and its documentation: ``minipeft/tools/colab_check.py``.
"""

import sys

from minipeft.tools.colab_check import main

if __name__ == "__main__":
    sys.exit(main())
