"""`make slides`: one reveal.js deck per notebook, built by nbconvert from the cells tagged ``slides``.

Each tagged cell (in a notebook's cell metadata: ``"tags": ["slides"]``) becomes one slide: the introduction,
the section headings with their text, the recap, and in notebooks 01-04 the figures (code hidden, stored output
shown). Nothing is executed: the decks show the outputs saved in the notebooks. To change a deck, tag or untag
cells (JupyterLab: the property inspector, "Cell Tags").

    python scripts/build_slides.py                   # every notebook -> artifacts/slides/<notebook>.slides.html
    python scripts/build_slides.py --out DIR 03_lora.ipynb
    python scripts/build_slides.py --lang zh         # the Chinese edition, notebooks/zh/ -> artifacts/slides/zh/

The decks work offline: reveal.js (5.2, MIT) comes from the PyPI wheel of ``sphinx-revealjs``, downloaded once with
``pip download --no-deps`` (never installed; set-up does it) into ``data/cache/reveal.js/`` and copied beside the
decks, which load it by a relative address (no jQuery, RequireJS or CDN; only MathJax is still fetched from its CDN,
so formulas show as TeX offline). ``--reveal-prefix URL`` loads reveal.js from elsewhere instead. The Colab badge and
the stored-outputs stamp stay in the notebooks, off the slides.

    python scripts/build_slides.py --fetch-reveal      # only fetch reveal.js (what set-up runs)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
from jinja2 import DictLoader

from minipeft.paths import CACHE_DIR, REPO_ROOT
from minipeft.tools.zh import ZH_NOTEBOOKS, ZH_STAMP_LABEL

NOTEBOOKS = REPO_ROOT / "notebooks"
OUT = REPO_ROOT / "artifacts" / "slides"
FOLDERS = {"en": (NOTEBOOKS, OUT), "zh": (ZH_NOTEBOOKS, OUT / "zh")}  # per language: notebooks, decks
TAG = "slides"
REVEAL_WHEEL = "sphinx-revealjs==3.2.1"  # its wheel carries reveal.js 5.2.0 (MIT), dist/ and plugin/
REVEAL_IN_WHEEL = "sphinx_revealjs/_static/revealjs/"
REVEAL_DIR = CACHE_DIR / "reveal.js"
REVEAL_LOCAL = "reveal.js"  # the folder beside the decks, and the address they load it from
# nbconvert's reveal template without what it loads from CDNs (jQuery, RequireJS, Mermaid, the widget renderer: the
# decks show stored outputs only): reveal.js and its notes
# plugin as plain scripts, and a tall slide scrolls, as with nbconvert's reveal_scroll.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block footer_js %}
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script src="{{ reveal_url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, history: true, transition: "{{ reveal_transition }}",
                   slideNumber: "{{ reveal_number }}", plugins: [RevealNotes], width: {{ reveal_width }},
                   height: {{ reveal_height }}});
function scrollTallSlides() {
  var tall = document.querySelector(".reveal").offsetHeight * 0.95;
  document.querySelectorAll("section.present section").forEach(function (slide) {
    if (slide.offsetHeight > tall) { slide.style.height = "95vh"; slide.style.overflowY = "scroll"; }
  });
}
Reveal.on("ready", scrollTallSlides);
Reveal.on("slidechanged", function () {
  scrollTallSlides();
  if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(["Rerender", MathJax.Hub, Reveal.getCurrentSlide()]); }
});
</script>
{% endblock footer_js %}
"""
_OFF_SLIDES = re.compile(r"^(?:\[!\[[^\]]*\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\).*"
                         rf"|\*\*Stored outputs:\*\*.*|{re.escape(ZH_STAMP_LABEL)}.*)\n?", re.MULTILINE)


class RevealMissingError(RuntimeError):
    """reveal.js is not cached and could not be fetched; the message says what to do."""


def fetch_reveal(target: Path | None = None) -> Path:
    """reveal.js in ``target`` (``data/cache/reveal.js``), read out of the ``sphinx-revealjs`` wheel (``pip download
    --no-deps``) when missing."""
    target = target or REVEAL_DIR
    if (target / "dist" / "reveal.js").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", REVEAL_WHEEL, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RevealMissingError(f"reveal.js is not in {target} and {REVEAL_WHEEL} could not be downloaded from "
                                     f"PyPI: run `make slides` once where the package index answers, or build with "
                                     f"--reveal-prefix pointing at a copy of reveal.js.")
        unpacked = Path(tmp) / "reveal.js"
        with zipfile.ZipFile(wheels[0]) as archive:
            for member in archive.namelist():
                if member.startswith(REVEAL_IN_WHEEL) and not member.endswith("/"):
                    out = unpacked / member.removeprefix(REVEAL_IN_WHEEL)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.read(member))
        unpacked.rename(target)  # all at once: a half-fetched copy is never taken for a whole one
    return target


def deck_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The notebook cut to its cells tagged ``slides``, each one a slide."""
    cells = [cell for cell in nb.cells if TAG in cell.metadata.get("tags", [])]
    if len(cells) < 2:
        raise ValueError(f"{name}: {len(cells)} cell(s) tagged {TAG!r}; a deck needs at least two. Tag the "
                         "introduction, the section headings and the figures (cell metadata \"tags\").")
    for cell in cells:
        cell.metadata["slideshow"] = {"slide_type": "slide"}
        if cell.cell_type == "markdown":
            cell.source = _OFF_SLIDES.sub("", cell.source).lstrip("\n")
    return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)


def count_slides(html: str) -> int:
    """Slides in an nbconvert reveal.js deck: each slide is a ``<section>`` holding its own ``<section>``."""
    return len(re.findall(r"<section>\s*<section>", html))


def build(notebook: Path, out_dir: Path, reveal_prefix: str | None = None) -> tuple[Path, int]:
    """One deck in ``out_dir``, loading reveal.js from ``reveal_prefix`` or from the local copy beside it."""
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                              extra_loaders=[DictLoader({"offline.html.j2": TEMPLATE})],
                              template_file="offline.html.j2")
    exporter.reveal_url_prefix = reveal_prefix or REVEAL_LOCAL
    exporter.language_code = "zh" if notebook.parent.name == "zh" else "en"  # <html lang>: fonts, screen readers
    exporter.reveal_theme = "white"  # its fonts ship with reveal.js (nbconvert's default, simple, fetches Google's)
    if not reveal_prefix:
        shutil.copytree(fetch_reveal(), out_dir / REVEAL_LOCAL, dirs_exist_ok=True)
    html, _ = exporter.from_notebook_node(deck_notebook(nbformat.read(notebook, as_version=4), notebook.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook.stem}.slides.html"
    path.write_text(html, encoding="utf-8")
    return path, count_slides(html)


def build_all(paths: list[Path], out: Path, reveal_prefix: str | None = None) -> int:
    """Every deck of ``paths`` into ``out``, one line each."""
    start = time.perf_counter()
    for path in paths:
        deck, slides = build(path, out, reveal_prefix)
        shown = deck.relative_to(REPO_ROOT) if deck.is_relative_to(REPO_ROOT) else deck
        print(f"slides: {shown} ({slides} slides)")
    print(f"{len(paths)} decks in {time.perf_counter() - start:.0f} s; open one in a browser (arrow keys to move).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: every notebook)")
    parser.add_argument("--lang", choices=sorted(FOLDERS), default="en",
                        help="zh: the Chinese edition's notebooks (notebooks/zh/, built by make zh)")
    parser.add_argument("--out", type=Path, help=f"output folder (default: {OUT.relative_to(REPO_ROOT)}, "
                                                 f"{FOLDERS['zh'][1].relative_to(REPO_ROOT)} for zh)")
    parser.add_argument("--reveal-prefix", help=f"where the decks load reveal.js from (default: a copy in "
                                                f"<out>/{REVEAL_LOCAL}, from data/cache/reveal.js)")
    parser.add_argument("--fetch-reveal", action="store_true", help="only fetch reveal.js into the cache")
    args = parser.parse_args(argv)
    notebooks, out = FOLDERS[args.lang]
    paths = [notebooks / name for name in args.notebooks] or sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    try:
        if args.fetch_reveal:
            target = fetch_reveal()
            shown = target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target
            print(f"slides: reveal.js in {shown}")
            return 0
        if not paths:
            shown = notebooks.relative_to(REPO_ROOT)
            print(f"slides: no notebook in {shown}/ (for zh: make zh first)", file=sys.stderr)
            return 1
        return build_all(paths, args.out or out, args.reveal_prefix)
    except RevealMissingError as err:  # one line, saying what to do
        print(f"slides: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
