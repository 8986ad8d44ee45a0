"""The Chinese edition: translation files in ``i18n/zh/``, one per notebook, keyed by the English cell's id.

Each file lists the English notebook's markdown cells in order::

    notebook: 01_why_finetune.ipynb
    cells:
    - id: 3f2a9c1e                 # the English cell's id
      en_sha: 1a2b3c4d5e6f         # sha256 of the English source the translation was made from (12 hex digits)
      en: |-                       # that English source (so a stale entry can name the first changed line)
        ...
      zh: |-                       # the translation ("" = not translated yet)
        ...

Two lines of the English are written by tools, not by hand, and stand in ``en`` and ``zh`` as placeholders that the
build fills: the Colab badge (``{{colab_badge}}``, ``scripts/sync_notebooks.py``) and the stamp of the stored run
(``{{stored_outputs}}``, ``scripts/store_outputs.py``). So re-storing a notebook does not make its translation stale.

    python scripts/zh.py update   # add entries for new English cells, refresh en/en_sha where zh is still empty
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

from minipeft.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
I18N = REPO_ROOT / "i18n" / "zh"
BADGE = re.compile(r"^\[!\[Open In Colab.*$", re.MULTILINE)
STAMP = re.compile(r"^\*\*Stored outputs:\*\*.*$", re.MULTILINE)  # store_outputs.STAMP
PLACEHOLDERS = {"colab_badge": BADGE, "stored_outputs": STAMP}


def source_of(cell: dict) -> str:
    """A markdown cell's English source with the tool-written lines as ``{{placeholders}}``."""
    src = cell["source"]
    text = src if isinstance(src, str) else "".join(src)
    for name, pattern in PLACEHOLDERS.items():
        text = pattern.sub("{{" + name + "}}", text)
    return text


def sha(text: str) -> str:
    """The 12-hex-digit sha256 of an English cell's source."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|-`` blocks, so a translation file reads like the notebook."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str)


def translation_path(notebook: Path) -> Path:
    return I18N / f"{notebook.name[:2]}.yml"


def load_translation(notebook: Path) -> dict:
    path = translation_path(notebook)
    if not path.is_file():
        return {"notebook": notebook.name, "cells": []}
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dump_translation(data: dict) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False, width=10_000)


def markdown_cells(notebook: Path) -> list[dict]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "markdown"]


def update(notebook: Path) -> Path:
    """Rewrite the notebook's translation file in the English order: translations kept by cell id (a stale one keeps
    its old ``en``/``en_sha`` so the check can show what changed), new cells added with an empty ``zh``."""
    old = {c["id"]: c for c in load_translation(notebook)["cells"]}
    cells = []
    for cell in markdown_cells(notebook):
        text = source_of(cell)
        entry = old.get(cell["id"])
        if entry is None or not entry.get("zh"):
            entry = {"id": cell["id"], "en_sha": sha(text), "en": text, "zh": ""}
        cells.append(entry)
    path = translation_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_translation({"notebook": notebook.name, "cells": cells}), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["update"])
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: every notebooks/NN_*.ipynb)")
    args = parser.parse_args(argv)
    notebooks = [Path(n) for n in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        print(update(nb).relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
