"""Figures quoted in the notebooks' prose must be printed by a cell, so the prose cannot drift from the numbers.

``QUOTED`` pins the figures the teaching pass made computed: the notebook whose markdown quotes each one, the figure
as the prose writes it, and the notebook whose stored outputs print it. The test of every precise figure reads every
markdown line of every notebook: a figure written with a decimal point or a thousands separator must be
printed by a stored cell of the same notebook (to the precision the prose gives it), or by the notebook ``QUOTED``
names, or come from a paper, listed in ``PUBLISHED``. Section numbers ("Section 7.2", "printed in 5.1") are not
figures.
When a run changes a printed number, these tests fail until the prose follows.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

QUOTED = [  # (notebook whose prose quotes it, figure, notebook that prints it)
    *(("01_why_finetune.ipynb", f, "01_why_finetune.ipynb") for f in ("44.5 GB", "22.3 GB", "178.2 GB", "89.1 GB")),
    *(("02_prefix_tuning.ipynb", f, "01_why_finetune.ipynb") for f in ("10,240", "491,520", "0.003", "0.139")),
    ("01_why_finetune.ipynb", "393,216", "01_why_finetune.ipynb"),
    ("01_why_finetune.ipynb", "354,823,168", "01_why_finetune.ipynb"),
    ("00_start_here.ipynb", "4,096", "02_prefix_tuning.ipynb"),  # the mini GPT-2's vocabulary
    ("02_prefix_tuning.ipynb", "184,320", "01_why_finetune.ipynb"),  # a stored prefix P=10 on GPT-2 small
]


# Figures the prose quotes from the papers, not from a cell (each must still be in the prose: the list cannot rot).
PUBLISHED = {
    "62.2": "Li & Liang 2021: an embedding-only prefix on E2E, BLEU (notebook 02)",
    "70.3": "Li & Liang 2021, ACL version, Table 2: prefix-tuning on E2E, GPT-2 Medium, BLEU (notebook 02)",
    "42,000": "E2E's training set, about 42,000 examples, which the papers' learning rates go with (notebook 02)",
    "73.7": "Hu et al. 2021, Table 5: WikiSQL accuracy, q and v (and all four at r = 2) (notebook 03)",
    "91.3": "Hu et al. 2021, Table 5: MultiNLI accuracy, q and v (notebook 03)",
    "91.7": "Hu et al. 2021, Table 5: MultiNLI accuracy, all four attention matrices (notebook 03)",
    "70.4": "Hu et al. 2021: Table 5, q alone on WikiSQL (notebook 03); Table 3, LoRA on E2E, BLEU (notebook 05)",
    "69.7": "Hu et al. 2021, Table 3: prefix-tuning (PreLayer) on E2E, BLEU (notebook 05); Li & Liang's arXiv v1, "
            "the same (notebook 02)",
    "68.2": "Hu et al. 2021, Table 3: full fine-tuning on E2E, BLEU (notebook 05)",
    "354.92": "Hu et al. 2021, Table 3: GPT-2 Medium's parameter count for full fine-tuning, in millions (notebook 01)",
    "0.35": "Hu et al. 2021, Table 3: 0.35M trainable parameters for prefix-tuning and LoRA on GPT-2 Medium "
            "(notebooks 01, 03, 05)",
    "91.0": "Hu et al. 2021, Table 5: MultiNLI accuracy, q alone at r = 8 (notebook 03)",
}
_FIGURE = re.compile(r"(?<![\w.$\\/{^_-])(\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![\w.,]?\d)")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_NOT_PROSE = re.compile(r"\(attachment:[^)]*\)|\$[^$]*\$|`[^`]*`|arXiv \d+\.\d+"  # images, maths, code, paper ids
                        r"|[Ss]ection \d+(?:\.\d+)+")  # a paper's or the notebook's section number
_HEADING_NUMBER = re.compile(r"^#+ (\d+(?:\.\d+)+)\b", flags=re.M)


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


def prose_figures() -> list[tuple[str, str, str]]:
    """(notebook, figure, line) for every precise figure in the markdown; headings and section numbers are skipped."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        markdown = texts(path.name, "markdown")
        sections = set(_HEADING_NUMBER.findall(markdown))  # "printed in 5.1" names a section of this notebook
        for line in markdown.splitlines():
            if not line.lstrip().startswith("#"):
                found += [(path.name, m.group(1), line) for m in _FIGURE.finditer(_NOT_PROSE.sub("", line))
                          if m.group(1) not in sections]
    return found


def printed_numbers(name: str) -> tuple[set[str], list[float]]:
    """Every number notebook ``name``'s stored outputs print, as written (commas dropped) and as a value."""
    written = {m.group(0).replace(",", "") for m in _NUMBER.finditer(texts(name, "outputs"))}
    return written, [float(w) for w in written]


def is_printed(figure: str, written: set[str], values: list[float]) -> bool:
    """Printed as written, or printed with more decimals that round to it (``178 GB`` from ``178.2 GB``)."""
    plain = figure.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    return plain in written or any(round(v, decimals) == float(plain) for v in values)


def unprinted_figures() -> list[str]:
    """Each prose figure that its own notebook does not print, nor the notebook QUOTED names, nor a paper."""
    quoted = {(quoted_in, figure) for quoted_in, figure, _ in QUOTED}
    printed = {path.name: printed_numbers(path.name) for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    return [f"{nb}: {figure} in {line.strip()[:100]!r}" for nb, figure, line in prose_figures()
            if figure not in PUBLISHED and (nb, figure) not in quoted and not is_printed(figure, *printed[nb])]


def test_every_precise_figure_in_the_prose_is_printed_by_its_notebook():
    unprinted = unprinted_figures()
    assert not unprinted, ("figures in the prose that no stored cell of the notebook prints (print them, write them "
                           "from a variable, list another notebook's figure in QUOTED or a paper's in PUBLISHED):\n"
                           + "\n".join(unprinted))


def test_every_published_figure_is_still_quoted():
    quoted = {figure for _, figure, _ in prose_figures()}
    assert not set(PUBLISHED) - quoted, f"PUBLISHED lists figures the prose no longer quotes: {set(PUBLISHED) - quoted}"


def test_the_check_catches_a_figure_no_cell_prints():
    written, values = printed_numbers("01_why_finetune.ipynb")
    assert is_printed("178", written, values) and is_printed("178.2", written, values)  # notebook 01's 178.2 GB
    assert not is_printed("123,456,789", written, values) and not is_printed("0.987654", written, values)
    assert not is_printed("66.50", written, values)  # printed by notebook 02, not by 01
    line = "Prose says 12,345 and 6.75% (section 5.5, Section 7.2, `x = 1.5`, $0.25$, arXiv 2106.09685)."
    assert [m.group(1) for m in _FIGURE.finditer(_NOT_PROSE.sub("", line))] == ["12,345", "6.75"]
