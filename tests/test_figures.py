"""The course's diagrams: ``scripts/make_figures.py`` (``make figures``) draws them, the SVGs committed in docs/figures/
are exactly its output (so they cannot drift from the script), and each one is shown in a notebook."""

import base64
import json
import re
from pathlib import Path

import pytest

from minipeft.tools import make_figures

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "figures"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = ("robot", "prefix_block", "lora_path", "lora_merge")


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
        if _creator(old) != make_figures.CREATOR:
            pytest.skip(f"docs/figures/{name}.svg was drawn with {_creator(old)}; this machine has "
                        f"{make_figures.CREATOR}, whose bytes may differ. `make figures` redraws them.")
        assert old == new, f"docs/figures/{name}.svg differs from scripts/make_figures.py's output: run `make figures`"


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
