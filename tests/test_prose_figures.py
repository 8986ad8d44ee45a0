"""Figures quoted in the notebooks' prose must be printed by a cell, so the prose cannot drift from the numbers.

Each entry names the notebook whose markdown quotes a figure, the figure as the prose writes it, and the notebook
whose stored outputs print it. When a run changes a printed number, this test fails until the prose follows.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

QUOTED = [  # (notebook whose prose quotes it, figure, notebook that prints it)
    *(("01_why_finetune.ipynb", f, "01_why_finetune.ipynb") for f in ("44.5 GB", "22.3 GB", "178.2 GB", "89.1 GB")),
    *(("02_prefix_tuning.ipynb", f, "01_why_finetune.ipynb") for f in ("10,240", "491,520", "0.003", "0.139")),
    ("01_why_finetune.ipynb", "393,216", "01_why_finetune.ipynb"),
    ("01_why_finetune.ipynb", "354,823,168", "01_why_finetune.ipynb"),
]


def texts(name: str, kind: str) -> str:
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    if kind == "markdown":
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return "\n".join("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                     for c in cells if c["cell_type"] == "code" for out in c.get("outputs", []))


@pytest.mark.parametrize(("quoted_in", "figure", "printed_in"), QUOTED, ids=lambda v: str(v))
def test_quoted_figure_is_printed(quoted_in, figure, printed_in):
    assert figure in texts(quoted_in, "markdown"), f"{quoted_in}'s prose no longer quotes {figure}: update QUOTED"
    assert figure in texts(printed_in, "outputs"), f"{quoted_in} quotes {figure}, but no cell of {printed_in} prints it"
