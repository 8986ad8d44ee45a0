"""Reference solutions of the notebooks' exercises: one module per notebook, one function per key.

Keys are ``"<notebook number>.<exercise number>"``, e.g. ``"03.2"``. Peek only after trying:
``minipeft.exercises.show_solution("03.2")``. Importing this package registers every solution.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
