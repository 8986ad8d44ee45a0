"""The outputs stored in the notebooks come from a real run, say which one, and show the methods working.

``scripts/store_outputs.py`` (``make outputs``) runs a notebook and stamps its first cell with the profile and base
model; the notebook's own first output line (``setup_notebook``) names them too, so the two must agree. Where
notebook 05 stores a ``cpu`` run, its table must show what the course claims: every method works.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STAMP = re.compile(r"^\*\*Stored outputs:\*\* the `(\w+)` profile on `([\w.-]+)`", re.MULTILINE)
FIRST_LINE = re.compile(r"^minipeft profile: (\w+) .*\| base model: ([\w.-]+) \|", re.MULTILINE)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def text_of(cell: dict) -> str:
    streams = [out for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    return "".join("".join(out.get("text", "")) for out in streams)


def stored(path: Path) -> tuple[str, str]:
    found = STAMP.search("".join(cells(path)[0]["source"]))
    assert found, f"{path.name} has no stamp: regenerate its outputs with `make outputs` (scripts/store_outputs.py)"
    return found.groups()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stamp_names_the_run_that_made_the_outputs(path):
    profile, model = stored(path)
    setup = next(c for c in cells(path) if c["cell_type"] == "code" and "setup_notebook(" in "".join(c["source"]))
    first = FIRST_LINE.search(text_of(setup))
    assert first, f"{path.name}: setup_notebook's output line is missing from the stored outputs"
    assert first.groups() == (profile, model), f"{path.name}: stamped {profile}/{model}, ran {first.groups()}"


def table(path: Path, header_word: str = "SER %") -> dict[str, dict[str, str]]:
    """The last format_table printed in ``path`` with a column named ``header_word``: {method: {column: value}}."""
    for cell in reversed(cells(path)):
        lines = text_of(cell).splitlines()
        at = next((i for i, line in enumerate(lines)
                   if line.startswith("method") and header_word in re.split(r"\s{2,}", line.strip())), None)
        if at is not None:
            columns = re.split(r"\s{2,}", lines[at].strip())
            rows = [re.split(r"\s{2,}", line.strip()) for line in lines[at + 1:] if line.strip()]
            return {row[0]: dict(zip(columns, row, strict=False)) for row in rows if len(row) == len(columns)}
    raise AssertionError(f"{path.name} stores no table with a {header_word!r} column")


def test_notebook_05_stored_cpu_run_shows_every_method_working():
    path = next(p for p in NOTEBOOKS if p.name.startswith("05_"))
    profile, model = stored(path)
    if profile == "ci":
        pytest.skip("notebook 05 stores a ci run (a smoke test on the mini GPT-2): nothing to hold it to")
    rows = table(path)
    untuned = float(rows["untuned"]["SER %"])
    limits = {"full fine-tuning": 25.0, "prefix-tuning": 35.0, "LoRA": 35.0}  # issue 15's bar for the cpu run
    for method, limit in limits.items():
        ser, names = float(rows[method]["SER %"]), float(rows[method]["name %"])
        assert ser < limit < untuned, f"{method}: slot error rate {ser}% (limit {limit}%, untuned {untuned}%)"
        assert names >= 90.0, f"{method}: the restaurant's name right in only {names}% of sentences"
    verdict = next((line for cell in cells(path) for line in text_of(cell).splitlines() if line.startswith("Verdict:")),
                   None)
    assert verdict and "every method works" in verdict, f"notebook 05's stored verdict line: {verdict!r}"



@pytest.mark.parametrize("prefix, methods", [("02_", ("prompt tuning", "prefix-tuning")), ("03_", ("LoRA",))])
def test_build_notebooks_stored_cpu_run_ends_with_the_method_working(prefix, methods):
    """Notebooks 02 and 03 build on the mini GPT-2 and end by training on the profile's base model: a stored cpu run
    trained SmolLM2 there, and its table shows the method (the last of ``methods``) naming the restaurant."""
    path = next(p for p in NOTEBOOKS if p.name.startswith(prefix))
    profile, model = stored(path)
    if profile == "ci":
        pytest.skip(f"{path.name} stores a ci run (a smoke test on the mini GPT-2): nothing to hold it to")
    assert model != "mini-gpt2", (f"{path.name}: its stored {profile} run trained the mini GPT-2, which cannot copy a "
                                  "name; store it again (scripts/store_outputs.py) so that it trains the base model")
    rows = table(path)
    untuned = float(rows["untuned"]["SER %"])
    for method in methods:
        assert float(rows[method]["SER %"]) < untuned, f"{path.name}: {method} makes no fewer slot errors than untuned"
    main = rows[methods[-1]]
    assert float(main["SER %"]) < untuned / 2 and float(main["name %"]) >= 90.0, f"{path.name}: {methods[-1]} {main}"

def test_store_outputs_stamps_what_the_notebook_printed_and_refuses_without_it(tmp_path, monkeypatch):
    import nbformat

    from minipeft.tools import store_outputs

    line = "minipeft profile: cpu (x) | base model: mini-gpt2 | device: CPU (2 threads) | torch 2, transformers 5"
    for printed, ok in ((line, True), ("hello", False)):
        old_run = {"execution": {"iopub.execute_input": "2026-11-28T15:19:44.100Z",
                                 "shell.execute_reply": "2026-11-28T15:19:44.200Z"},
                   "ExecuteTime": {"start_time": "2026-11-28T15:19:44.100Z", "end_time": "2026-11-28T15:19:44.200Z"},
                   "tags": ["keep"]}
        code = nbformat.v4.new_code_cell(f"print({printed!r})", metadata=dict(old_run))
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · A test", metadata=dict(old_run)),
                                             code])
        path = tmp_path / "99_test.ipynb"
        nbformat.write(nb, path)
        before = path.read_text()
        if ok:
            store_outputs.store(path, timeout=60)
            assert stored(path) == ("cpu", "mini-gpt2")
            # an earlier run's timestamps are dropped from every cell (a viewer shows them beside the stamp)
            assert [cell["metadata"] for cell in cells(path)] == [{"tags": ["keep"]}] * 2
        else:
            with pytest.raises(SystemExit, match="no setup_notebook"):
                store_outputs.store(path, timeout=60)
            assert path.read_text() == before  # the notebook is left as it was


def test_store_outputs_refuses_a_dry_run_and_a_stand_in(tmp_path, monkeypatch, capsys):
    """Stored outputs are results: `make outputs` in a dry run, or on a stand-in's random weights, stores nothing."""
    from minipeft.tools import store_outputs

    monkeypatch.setattr(store_outputs, "store", lambda path, timeout: pytest.fail("a notebook was run"))
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "1")
    assert store_outputs.main(["00_start_here.ipynb"]) == 1
    assert "MINIPEFT_DRY_RUN is set" in capsys.readouterr().err
    monkeypatch.delenv("MINIPEFT_DRY_RUN")
    (tmp_path / "minipeft_standin.json").write_text("{}")
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(tmp_path))
    assert store_outputs.main(["00_start_here.ipynb"]) == 1
    assert "is a stand-in with random weights" in capsys.readouterr().err


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_show_no_unfinished_progress_bar_and_no_unexplained_error(path):
    """What a reader sees on GitHub: every progress bar at its final state, no traceback, no error text that the
    cell did not raise on purpose (those cells catch it); `python scripts/sync_notebooks.py` cleans the bars."""
    from minipeft.tools.clean_outputs import clean_progress_bars, output_problems

    nb = json.loads(path.read_text())
    assert clean_progress_bars(nb)[1] == [], f"{path.name}: run python scripts/sync_notebooks.py"
    assert output_problems(nb, path.name) == []
    stored = json.dumps([cell.get("outputs", []) for cell in nb["cells"]], ensure_ascii=False)
    assert " 0%|" not in stored and "[00:00<?, ?it/s]" not in stored


def _progress_notebook(record_state: bool) -> dict:
    """A notebook as nbclient stores it: a tqdm bar's first state as text, its final state in the widget metadata."""
    bar = {"output_type": "display_data", "metadata": {},
           "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2,
                                                                  "version_minor": 0},
                    "text/plain": "training:   0%|          | 0/120 [00:00<?, ?it/s]"}}
    done = {"output_type": "stream", "name": "stdout", "text": ["loss 2.19 -> 0.32\n"]}
    loading = {"output_type": "stream", "name": "stderr",
               "text": ["Loading:   0%|          | 0/52 [00:00<?, ?it/s]\r"
                        "Loading: 100%|██████████| 52/52 [00:00<00:00]\n"]}
    state = {"box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar",
                                                                       "IPY_MODEL_right"]}},
             "left": {"model_name": "HTMLModel", "state": {"value": "training:\u2007100%"}},
             "bar": {"model_name": "FloatProgressModel", "state": {"value": 120.0, "max": 120.0}},
             "right": {"model_name": "HTMLModel",
                       "state": {"value": "\u2007120/120\u2007[11:36&lt;00:00,\u2007\u20075.32s/it,\u2007loss=0.323]"}}}
    metadata = {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}} if record_state else {}
    return {"cells": [{"cell_type": "code", "source": "train()", "metadata": {}, "execution_count": 1,
                       "outputs": [bar, done, loading]}], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def test_clean_progress_bars_stores_the_final_state_or_removes_the_bar():
    from minipeft.tools.clean_outputs import clean_progress_bars, output_problems

    nb = _progress_notebook(record_state=True)
    before = json.dumps(nb)
    cleaned, changes = clean_progress_bars(nb)
    assert json.dumps(nb) == before, "the notebook passed in was changed"
    bar, done, loading = cleaned["cells"][0]["outputs"]
    assert bar["data"]["text/plain"] == "training: 100%|██████████| 120/120 [11:36<00:00,  5.32s/it, loss=0.323]"
    assert done["text"] == ["loss 2.19 -> 0.32\n"]  # ordinary output untouched
    assert loading["text"] == ["Loading: 100%|██████████| 52/52 [00:00<00:00]\n"]  # what a terminal shows
    assert len(changes) == 2 and output_problems(cleaned) == []
    assert clean_progress_bars(cleaned) == (cleaned, []), "cleaning twice changed something"

    unrecorded = _progress_notebook(record_state=False)
    assert output_problems(unrecorded) == ["notebook, cell 0: an unfinished progress bar: "  # stderr ends at 100%
                                           "'training:   0%|          | 0/120 [00:00<?, ?it/s]'"]
    cleaned, changes = clean_progress_bars(unrecorded)
    assert [out.get("name") for out in cleaned["cells"][0]["outputs"]] == ["stdout", "stderr"]  # the bar removed
    assert "removed a progress bar with no recorded final state" in changes[0]


def test_output_problems_flags_tracebacks_and_errors_a_cell_did_not_raise_on_purpose():
    from minipeft.tools.clean_outputs import output_problems

    def cell(source: str, output: dict) -> dict:
        return {"cell_type": "code", "source": source, "metadata": {}, "execution_count": 1, "outputs": [output]}

    printed = {"output_type": "stream", "name": "stdout", "text": "text (WikiText-2 unavailable: ConnectionError)\n"}
    nb = {"cells": [cell("try:\n    parse('x')\nexcept ValueError as err:\n    print('ValueError:', err)",
                         {"output_type": "stream", "name": "stdout", "text": "ValueError: unknown slot\n"}),
                    cell("load()", printed),
                    cell("1 / 0", {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                                   "traceback": []})]}
    assert output_problems(nb, "99.ipynb") == [
        "99.ipynb, cell 1: ConnectionError printed by a cell that does not catch it: "
        "'text (WikiText-2 unavailable: ConnectionError)'",
        "99.ipynb, cell 2: a stored error, ZeroDivisionError: division by zero"]


# Sentences a model wrote change with the machine that stores the run (floating-point sums round differently), so
# prose that describes them is checked against the stored output: (notebook, markdown cell, output cell, quotes the
# prose makes of sentences in that output, and words each of those sentences must lack, as the prose says).
SAMPLE_READINGS = [
    ("07_comparison.ipynb", "0739bee1", "4c767ef2",
     {"has fast food on the menu and": "Guildhall", "There is a pub called Parker's Piece": "Juniper",
      "rated 3 by people": "Juniper"}),
]


@pytest.mark.parametrize("name, markdown_id, output_id, quotes", SAMPLE_READINGS, ids=lambda v: str(v)[:30])
def test_prose_about_stored_sentences_matches_them(name, markdown_id, output_id, quotes):
    by_id = {c.get("id"): c for c in cells(Path(NOTEBOOKS[0]).parent / name)}
    prose = re.sub(r"\s+", " ", "".join(by_id[markdown_id]["source"]))
    written = [line for line in text_of(by_id[output_id]).splitlines() if line.strip().startswith("restaurants")]
    for quote, lacks in quotes.items():
        assert quote in prose, f"{name} {markdown_id} no longer quotes {quote!r}: update SAMPLE_READINGS"
        (line,) = [w for w in written if quote in w] or [None]
        assert line is not None and lacks not in line, (
            f"{name} {markdown_id} says a stored sentence reads {quote!r} and lacks {lacks!r}; the stored output of "
            f"{output_id} no longer shows that: rewrite the prose from the stored sentences")
