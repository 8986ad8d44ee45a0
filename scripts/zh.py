"""The Chinese edition: translation files in i18n/zh/, notebooks built into notebooks/zh/.

The code and its documentation: ``minipeft/tools/zh.py``.
"""

import sys

from minipeft.tools.zh import main

if __name__ == "__main__":
    sys.exit(main())
