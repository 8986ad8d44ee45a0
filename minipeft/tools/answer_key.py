"""`make answer-key`: one Markdown page for instructors with every exercise and its reference solution.

Each exercise's statement comes from its notebook (the markdown from ``**Exercise NN.k`` to the end of that cell or
the next exercise), each solution from ``minipeft/solutions/`` (the function registered with ``@solution("NN.k")``,
read with ``ast``, so nothing is imported or run). The page goes to ``artifacts/answer-key.md``: print it, or turn
it into a PDF (``pandoc artifacts/answer-key.md -o answer-key.pdf``). Keep it from learners until the workshop.

    python scripts/answer_key.py                 # -> artifacts/answer-key.md
    python scripts/answer_key.py --out FILE
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

from minipeft.paths import REPO_ROOT

SOLUTIONS = REPO_ROOT / "minipeft" / "solutions"
NOTEBOOKS = REPO_ROOT / "notebooks"
OUT = REPO_ROOT / "artifacts" / "answer-key.md"
# An exercise starts at "**Exercise 00.1", "**02.1 · ..." or a heading "## 7. Exercise 06.1: ..."; it runs to the next
# one or the end of its cell.
_START = r"^(?:#+[^\n]*?\b|\*\*(?:Exercise )?)(\d\d\.\d+)\b"
_STATEMENT = re.compile(rf"{_START}.*?(?=\n(?:#+[^\n]*?\b|\*\*(?:Exercise )?)\d\d\.\d+\b|\Z)", re.S | re.M)


def solutions(folder: Path = SOLUTIONS) -> dict[str, str]:
    """``{"03.1": source of its reference solution}``, decorator left out, in the order of the files."""
    found = {}
    for path in sorted(folder.glob("nb[0-9][0-9]_*.py")):
        text = path.read_text()
        for node in ast.parse(text).body:
            for decorator in getattr(node, "decorator_list", []):
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "solution":
                    found[decorator.args[0].value] = ast.get_source_segment(text, node)
    return found


def statements(folder: Path = NOTEBOOKS) -> dict[str, tuple[str, str]]:
    """``{"03.1": (notebook title, the exercise's markdown)}`` from every notebook."""
    found = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        title = re.search(r"^# (.+)$", "".join(cells[0]["source"]), re.M)
        for cell in cells:
            if cell["cell_type"] == "markdown":
                for match in _STATEMENT.finditer("".join(cell["source"])):
                    statement = re.sub(r"^#+\s*(.*)$", r"**\1**", match.group(0).strip(), count=1, flags=re.M)
                    found[match.group(1)] = (title.group(1) if title else path.stem, statement)
    return found


def answer_key(folder: Path = SOLUTIONS, notebooks: Path = NOTEBOOKS) -> str:
    """The page: per notebook, each exercise's statement, then its reference solution."""
    said, lines, last = statements(notebooks), ["# Answer key", "",
                                                "Every exercise of the course with its reference solution (generated "
                                                "by `make answer-key` from `minipeft/solutions/`; in a notebook, "
                                                "`show_solution(\"NN.k\")` prints the same code).", ""], None
    for key, source in solutions(folder).items():
        title, statement = said.get(key, (f"notebook {key[:2]}", f"**Exercise {key}** (no statement found)"))
        if title != last:
            lines += [f"## {title}", ""]
            last = title
        lines += [statement, "", "```python", source, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the page")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(answer_key())
    print(f"answer key: {args.out} ({len(solutions())} exercises)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
