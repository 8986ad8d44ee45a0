"""`make slides`: one reveal.js deck per notebook, built by nbconvert from the cells tagged ``slides``.

Each tagged cell (in a notebook's cell metadata: ``"tags": ["slides"]``) becomes one slide: the introduction,
the section headings with their text, the recap, and in notebooks 01-04 the figures (code hidden, stored output
shown). Nothing is executed: the decks show the outputs saved in the notebooks. To change a deck, tag or untag
cells (JupyterLab: the property inspector, "Cell Tags").

    python scripts/build_slides.py                   # every notebook -> artifacts/slides/<notebook>.slides.html
    python scripts/build_slides.py --out DIR 03_lora.ipynb

Opening a deck needs reveal.js, which the HTML loads from a CDN (unpkg.com); for a room without internet, build
with ``--reveal-prefix`` pointing at a local copy of reveal.js 4.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat

from minipeft.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
OUT = REPO_ROOT / "artifacts" / "slides"
TAG = "slides"


def deck_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The notebook cut to its cells tagged ``slides``, each one a slide."""
    cells = [cell for cell in nb.cells if TAG in cell.metadata.get("tags", [])]
    if len(cells) < 2:
        raise ValueError(f"{name}: {len(cells)} cell(s) tagged {TAG!r}; a deck needs at least two. Tag the "
                         "introduction, the section headings and the figures (cell metadata \"tags\").")
    for cell in cells:
        cell.metadata["slideshow"] = {"slide_type": "slide"}
    return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)


def count_slides(html: str) -> int:
    """Slides in an nbconvert reveal.js deck: each slide is a ``<section>`` holding its own ``<section>``."""
    return len(re.findall(r"<section>\s*<section>", html))


def build(notebook: Path, out_dir: Path, reveal_prefix: str | None = None) -> tuple[Path, int]:
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                              reveal_scroll=True)
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    html, _ = exporter.from_notebook_node(deck_notebook(nbformat.read(notebook, as_version=4), notebook.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook.stem}.slides.html"
    path.write_text(html, encoding="utf-8")
    return path, count_slides(html)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: every notebook)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--reveal-prefix", help="where reveal.js lies (default: nbconvert's CDN address)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / name for name in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    start = time.perf_counter()
    for path in paths:
        deck, slides = build(path, args.out, args.reveal_prefix)
        shown = deck.relative_to(REPO_ROOT) if deck.is_relative_to(REPO_ROOT) else deck
        print(f"slides: {shown} ({slides} slides)")
    print(f"{len(paths)} decks in {time.perf_counter() - start:.0f} s; open one in a browser (arrow keys to move).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
