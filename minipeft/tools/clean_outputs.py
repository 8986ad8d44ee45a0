"""Stored outputs a reader can trust: progress bars at their final state, and no error left unexplained.

A notebook executed by nbclient keeps a tqdm progress bar as a widget output whose plain-text form is the bar's
*first* state (``training:   0%|          | 0/120 [00:00<?, ?it/s]``): that is what GitHub and every static view
show. The bar's *final* state (100%, the time it took, the last loss) is recorded in the notebook's widget
metadata. :func:`clean_progress_bars` rewrites each bar's text from that final state, without running anything,
and removes a bar whose final state is not recorded; in text streams it keeps what a terminal shows after each
carriage return. :func:`output_problems` lists what cleaning cannot fix: an error output (a traceback), or error
text printed by a cell that does not catch it (a cell that shows an error on purpose catches it with ``except``).

``scripts/store_outputs.py`` cleans every notebook it stores; ``scripts/sync_notebooks.py`` cleans the stored
notebooks and ``--check`` lists what is left.
"""

from __future__ import annotations

import copy
import html
import re

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS = re.compile(r"\d+%\|")  # tqdm's "  0%|" or "100%|"
UNFINISHED = re.compile(r"(?<!\d)(?!100)\d{1,3}%\|")  # a percentage short of 100 before tqdm's bar
ERROR = re.compile(r"Traceback \(most recent call last\)|\w*Error\b")
BAR_WIDTH = 10  # tqdm's bar in a notebook's plain text: ten cells


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _plain(widget_html: str) -> str:
    """The text of a tqdm label widget: HTML entities decoded, figure spaces as plain spaces."""
    return html.unescape(widget_html).replace("\u2007", " ")


def final_progress_text(model_id: str, widget_state: dict) -> str | None:
    """The text of the tqdm bar ``model_id`` in its last recorded state, as tqdm prints it; None if not recorded.

    tqdm's notebook bar is an HBox of three widgets: a label (description and percentage), a FloatProgress and a
    label with the counts, times and postfix; the metadata holds each one's last value.
    """
    box = widget_state.get(model_id, {}).get("state", {})
    children = [widget_state.get(str(child).removeprefix("IPY_MODEL_"), {}) for child in box.get("children", [])]
    if len(children) != 3 or children[1].get("model_name") != "FloatProgressModel":
        return None
    left, bar, right = (child.get("state", {}) for child in children)
    value, total = bar.get("value"), bar.get("max")
    if value is None or not total:
        return None
    filled = min(BAR_WIDTH, int(BAR_WIDTH * value / total))
    bar_text = "█" * filled + " " * (BAR_WIDTH - filled)
    return f"{_plain(left.get('value', ''))}|{bar_text}|{_plain(right.get('value', ''))}"


def _terminal_view(text: str) -> str:
    """What a terminal shows of ``text``: on each line, only what follows the last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def clean_progress_bars(nb: dict) -> tuple[dict, list[str]]:
    """``nb`` with every stored progress bar at its final state (or removed), and a list of what changed.

    The notebook passed in is not modified; the returned one is a copy.
    """
    nb = copy.deepcopy(nb)
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    changes = []
    for index, cell in enumerate(nb.get("cells", [])):
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            plain = _text(data.get("text/plain", ""))
            if WIDGET_VIEW in data and PROGRESS.search(plain):
                final = final_progress_text(data[WIDGET_VIEW].get("model_id", ""), state)
                if final is None:
                    if UNFINISHED.search(plain):
                        changes.append(f"cell {index}: removed a progress bar with no recorded final state: {plain!r}")
                        continue
                elif final != plain:
                    data["text/plain"] = [final] if isinstance(data["text/plain"], list) else final  # Jupyter's layout
                    changes.append(f"cell {index}: progress bar {plain!r} -> {final!r}")
            elif output.get("output_type") == "stream" and "\r" in _text(output.get("text", "")):
                text = _terminal_view(_text(output["text"]))
                output["text"] = text.splitlines(keepends=True) if isinstance(output["text"], list) else text
                changes.append(f"cell {index}: {output.get('name', 'stream')} kept as a terminal shows it")
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb, changes


def _output_texts(output: dict) -> list[str]:
    texts = [_text(output.get("text", ""))] + [_text(v) for k, v in output.get("data", {}).items()
                                               if k.startswith("text/")]
    return [text for text in texts if text]


def output_problems(nb: dict, name: str = "notebook") -> list[str]:
    """What a reader of the stored outputs should not see, one line each: an unfinished progress bar, an error
    output, or error text in a cell that does not catch the error itself (and so does not show it on purpose)."""
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        catches = "except" in _text(cell.get("source", ""))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{name}, cell {index}: a stored error, {output.get('ename')}: {output.get('evalue')}")
                continue
            for text in _output_texts(output):
                if UNFINISHED.search(_terminal_view(text)):
                    problems.append(f"{name}, cell {index}: an unfinished progress bar: {text.strip()[:80]!r}")
                found = ERROR.search(text)
                if found and not catches:
                    problems.append(f"{name}, cell {index}: {found.group()} printed by a cell that does not catch it: "
                                    f"{text.strip()[:120]!r}")
    return problems
