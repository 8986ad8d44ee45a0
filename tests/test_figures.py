"""The course's diagrams: ``scripts/make_figures.py`` (``make figures``) draws them, the SVGs committed in docs/figures/
are its output (so they cannot drift from the script), and each one is shown in a notebook.

Another matplotlib may write other bytes for the same drawing (number formats, glyph outlines), so the committed files
are compared by what they draw, whatever matplotlib wrote them: every shape's outline, colours and place, every
text's words, colour and place (places to 12 points: the layout measures text). Byte for byte, they are compared
where this machine has the matplotlib that wrote them."""

import base64
import json
import re
from pathlib import Path

import pytest

from minipeft.tools import make_figures

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "figures"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = ("robot", "prefix_block", "lora_path", "lora_merge", "lora_family")


_SHAPE = re.compile(r'<g id="patch_\d+">\s*<path d="([^"]*)"[^>]*? style="([^"]*)"')
_TEXT = re.compile(r'<g id="text_\d+">\s*<!-- (.*?) -->\s*'
                   r'<g (?:style="([^"]*)" )?transform="translate\(([^ ]+) ([^)]+)\)', flags=re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_STYLE_KEYS = ("fill", "stroke", "stroke-width", "stroke-dasharray")


def _style(style: str) -> dict[str, str]:
    pairs = (item.split(":", 1) for item in style.split(";") if ":" in item)
    return {key.strip(): value.strip() for key, value in pairs if key.strip() in _STYLE_KEYS}


def drawing(svg: str) -> tuple[list[tuple], list[tuple]]:
    """What an SVG of make_figures draws, in points: (path commands, style, coordinates) of each shape, and
    (words, style, anchor x, anchor y) of each text, in drawing order."""
    shapes = [(_NUMBER.sub("", d).split(), _style(style), [float(n) for n in _NUMBER.findall(d)])
              for d, style in _SHAPE.findall(svg)]
    texts = [(words, _style(style), float(x), float(y)) for words, style, x, y in _TEXT.findall(svg)]
    return shapes, texts


def assert_same_drawing(old: str, new: str, name: str) -> None:
    """The same texts, shapes and colours in the same order; each shape's outline to half a point. Where things sit
    depends on font metrics (the layout measures text): from matplotlib 3.10.0 with FreeType 2.6.1 to 3.11.2 with
    FreeType 2.14.3, text anchors moved up to 2.4 points and what is placed after a text up to 9.2, outlines not at
    all. So places (a text's anchor, a shape outline's lower-left corner) are held to 12 points."""
    (old_shapes, old_texts), (new_shapes, new_texts) = drawing(old), drawing(new)
    assert old_shapes and old_texts, f"docs/figures/{name}.svg: no shapes or texts found (is it make_figures' SVG?)"
    fix = f"docs/figures/{name}.svg does not draw what scripts/make_figures.py draws: run `make figures`"
    assert [t[:2] for t in old_texts] == [t[:2] for t in new_texts], f"{fix} (texts differ)"
    assert [s[:2] for s in old_shapes] == [s[:2] for s in new_shapes], f"{fix} (shapes or colours differ)"
    for (_, _, a), (_, _, b) in zip(old_shapes, new_shapes, strict=True):
        assert len(a) == len(b), f"{fix} (a shape's outline differs)"
        corner_a, corner_b = (min(a[0::2]), min(a[1::2])), (min(b[0::2]), min(b[1::2]))
        outline_a = [v - corner_a[i % 2] for i, v in enumerate(a)]
        outline_b = [v - corner_b[i % 2] for i, v in enumerate(b)]
        assert all(abs(x - y) <= 0.5 for x, y in zip(outline_a, outline_b)), f"{fix} (a shape's outline differs)"
        assert all(abs(x - y) <= 12 for x, y in zip(corner_a, corner_b)), f"{fix} (a shape moved)"
    for (words, _, *a), (_, _, *b) in zip(old_texts, new_texts, strict=True):
        assert all(abs(x - y) <= 12 for x, y in zip(a, b)), f"{fix} ({words!r} moved)"


def _creator(svg: str) -> str:
    """The versions an SVG was drawn with, from its metadata (``make_figures.CREATOR``)."""
    found = re.search(r"<dc:creator>\s*<cc:Agent>\s*<dc:title>(.*?)</dc:title>", svg, flags=re.S)
    return found.group(1) if found else "(none)"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """Every figure drawn once, into a temporary folder."""
    out = tmp_path_factory.mktemp("figures")
    assert make_figures.main(["--out", str(out)]) == 0
    return out


def test_the_script_draws_every_figure_and_only_those(fresh):
    assert tuple(make_figures.FIGURES) == NAMES
    assert sorted(p.name for p in fresh.iterdir()) == sorted(f"{name}.svg" for name in NAMES)
    for name in NAMES:
        svg = (fresh / f"{name}.svg").read_text()
        assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
        assert f"<title>{name}</title>" in svg
        assert "<dc:date>" not in svg, "a date in the metadata would change the file on every run"


def test_an_unknown_figure_name_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_figures.main(["--out", str(tmp_path), "robto"])
    assert "no figure named robto" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_committed_figures_are_the_scripts_output(fresh):
    committed = sorted(p.name for p in COMMITTED.glob("*.svg"))
    assert committed == sorted(f"{name}.svg" for name in NAMES), "run `make figures` and commit docs/figures/"
    for name in NAMES:
        old, new = (COMMITTED / f"{name}.svg").read_text(), (fresh / f"{name}.svg").read_text()
        assert_same_drawing(old, new, name)
        if _creator(old) == make_figures.CREATOR:  # the same matplotlib and FreeType: the same bytes too
            assert old == new, f"docs/figures/{name}.svg differs from make_figures.py's output: run `make figures`"


def test_the_drawing_comparison_sees_a_moved_box_a_new_colour_and_a_changed_word():
    svg = (COMMITTED / "lora_path.svg").read_text()
    assert_same_drawing(svg, svg.replace("Matplotlib v", "Matplotlib v0"), "lora_path")  # another writer's metadata
    moved = re.sub(r'(<g id="patch_2">\s*<path d=")([^"]*)', lambda m: m.group(1) + re.sub(
        r"(-?[\d.]+) (-?[\d.]+)", lambda p: f"{float(p.group(1)) + 20} {p.group(2)}", m.group(2)), svg, count=1)
    for bug in (moved, svg.replace("M 40.32 378", "M 41.32 378", 1), svg.replace("fill: #ffd7a8", "fill: #ffd7a9", 1),
                svg.replace("<!-- frozen -->", "<!-- frozne -->", 1)):
        assert bug != svg
        with pytest.raises(AssertionError, match="does not draw what"):
            assert_same_drawing(svg, bug, "lora_path")


@pytest.mark.parametrize("name", NAMES)
def test_each_figure_is_shown_in_a_notebook_as_an_attachment_of_the_committed_file(name):
    """Inside the notebook (so Colab, which opens one file from GitHub, shows it too), byte for byte docs/figures/."""
    shown = [cell for path in NOTEBOOKS for cell in json.loads(path.read_text())["cells"]
             if cell["cell_type"] == "markdown" and f"](attachment:{name}.svg)" in "".join(cell["source"])]
    assert shown, f"no notebook's markdown shows {name}.svg (write ![...](../docs/figures/{name}.svg), then make colab)"
    committed = (COMMITTED / f"{name}.svg").read_bytes()
    for cell in shown:
        stored = cell.get("attachments", {}).get(f"{name}.svg", {}).get("image/svg+xml", "")
        assert base64.b64decode(stored) == committed, f"{name}.svg in a notebook is stale: run make colab"
