"""Saving a folder all at once: a save that fails or is killed half-way leaves the previous one intact.

The files are written into a temporary folder beside the target, which then takes the target's place by
renaming (two renames when a previous save is there: it moves aside, the new folder moves in). The target may hold
only the files the save writes, so a user's other files are never swept away with the old save.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


def _beside(folder: Path, what: str) -> Path:
    """A new hidden name next to ``folder``, e.g. ``.adapter.saving-1f2e3d4c``."""
    return folder.with_name(f".{folder.name}.{what}-{secrets.token_hex(4)}")


def write_folder(folder: str | Path, names: tuple[str, ...], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to write the files ``names`` into a fresh folder, then put it in place of ``folder``."""
    folder = Path(folder)
    others = sorted(p.name for p in folder.iterdir() if p.name not in names) if folder.is_dir() else []
    if (folder.exists() and not folder.is_dir()) or others:
        held = f"holds {others[:3]}" if others else "is a file"
        raise FileExistsError(f"{folder} {held}, not only the files this save writes ({', '.join(names)}), and a "
                              f"save replaces the whole folder. Save into a folder of its own (a new one).")
    tmp = _beside(folder, "saving")
    tmp.mkdir(parents=True)  # with the umask's permissions, like the folder it replaces
    try:
        write(tmp)
        if folder.is_dir():  # the previous save moves aside only once the new one is complete
            old = _beside(folder, "old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return folder
