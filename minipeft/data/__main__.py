"""``python -m minipeft.data``: rebuild the offline restaurant set in ``data/restaurants``."""

from .generator import build_restaurant_files
from .loaders import RESTAURANTS_DIR

written = build_restaurant_files()
print(f"Wrote {written} rows to {RESTAURANTS_DIR}")
