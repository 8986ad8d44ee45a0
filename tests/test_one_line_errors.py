"""A bad setting stops a notebook's first cell with one line (the problem and its fix), not a traceback: run in a real
Jupyter kernel, as JupyterLab shows it (the error's `traceback` field is what the front end prints)."""

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _setup_cell() -> str:
    """Notebook 00's own set-up cell, the first one a learner runs after the Colab cell."""
    cells = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text())["cells"]
    return next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "setup_notebook()" in
                "".join(c["source"]))


def shown_lines(cell) -> list[str]:
    """Every line the front end shows under ``cell``: its streams, and each error's traceback."""
    lines = []
    for output in cell.outputs:
        if output.output_type == "error":
            lines += "\n".join(output.traceback).splitlines()
        elif output.output_type == "stream":
            lines += output.text.splitlines()
    return lines


def test_a_bad_variable_stops_the_first_cell_with_one_line(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MINIPEFT_PROFILE", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    setup = _setup_cell()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import os\n\nos.environ["MINIPEFT_BASE_MODEL"] = "/nonexistent"'),
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell('del os.environ["MINIPEFT_BASE_MODEL"]\nos.environ["MINIPEFT_PROFILE"] = "turbo"'),
        nbformat.v4.new_code_cell(setup),
    ])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    missing, unknown = shown_lines(nb.cells[1]), shown_lines(nb.cells[3])
    assert missing == ["ConfigurationError: MINIPEFT_BASE_MODEL=/nonexistent: no such directory. Point it at a folder "
                       "written by save_pretrained (or `python -m minipeft.standin gpt2 DIR`), or unset it."], missing
    assert unknown == ["ConfigurationError: Unknown minipeft profile 'turbo'. Valid profiles: ci, cpu, gpu. Set "
                       "MINIPEFT_PROFILE to one of them (or unset it to choose from the hardware)."], unknown
