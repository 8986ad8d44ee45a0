"""Where the course keeps its files: one place, so every module agrees."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MINIPEFT_DATA_DIR", REPO_ROOT / "data"))
CACHE_DIR = DATA_DIR / "cache"  # downloaded or generated at set-up, never committed
MINI_GPT2_DIR = DATA_DIR / "mini-gpt2"
