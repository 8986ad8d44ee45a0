"""Every notebook follows the course's shape; nbval (run by pytest over notebooks/) executes them."""

import json
import re
from pathlib import Path

import pytest

from minipeft.exercises import _reference

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert any(p.name.startswith("00_start_here") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    cells = _cells(path)
    intro = _source(cells[0]).lower()
    assert cells[0]["cell_type"] == "markdown" and "learning goals" in intro and "time" in intro
    code = [_source(c) for c in cells if c["cell_type"] == "code"]
    setup_at = next(i for i, src in enumerate(code) if "setup_notebook(" in src)
    assert all("minipeft" not in src for src in code[:setup_at] if "google.colab" not in src)
    last_markdown = next(_source(c) for c in reversed(cells) if c["cell_type"] == "markdown")
    assert "recap" in last_markdown.lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_solutions_and_no_outputs_show_errors(path):
    cells = _cells(path)
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for key in re.findall(r"""check\(\s*["'](\d\d\.\d+)["']""", _source(cell)):
            _reference(key)  # raises if the hidden solution is missing
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{path.name} was saved with an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_using_an_exercise_runs_after_its_check(path):
    """`make solutions` puts the reference where ``check`` finds the learner's function: that covers every cell after
    the check, so the exercise must be defined in its check's cell and called by no cell before it."""
    code = [_source(c) for c in _cells(path) if c["cell_type"] == "code"]
    for at, src in enumerate(code):
        for key, name in re.findall(r"""check\(\s*["'](\d\d\.\d+)["'],\s*(\w+)""", src):
            assert re.search(rf"^def {name}\(", src, flags=re.M), f"{path.name}: {key}'s {name} is defined elsewhere"
            early = [i for i, s in enumerate(code[:at]) if re.search(rf"(?<!def )\b{name}\(", s)]
            assert not early, f"{path.name}: code cells {early} call {name} before exercise {key}'s check"
