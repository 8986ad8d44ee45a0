"""Regenerate the outputs stored in the notebooks: execute each one in place and stamp where they came from.

    python scripts/store_outputs.py                          # every notebook, in the cpu profile (make outputs)
    python scripts/store_outputs.py 05_gpt2_finetune.ipynb   # one notebook

The repository's notebooks carry the outputs of a real run, so a reader on GitHub or Colab sees every method
work before running anything. The first cell gets one line saying which profile, base model and machine made
them, when, and how long the run took; progress bars are stored at their final state
(:mod:`minipeft.tools.clean_outputs`). No cell keeps timing metadata (``metadata.execution``, ``ExecuteTime``)
from this or an earlier run: JupyterLab shows it, and old timestamps would contradict the stamp. CI (nbval, ``ci``
profile) compares only the cells marked ``# NBVAL_CHECK_OUTPUT``, whose output does not depend on the profile.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from minipeft.paths import REPO_ROOT
from minipeft.tools.clean_outputs import clean_progress_bars

STAMP = re.compile(r"^\*\*Stored outputs:\*\*.*$", re.MULTILINE)
FIRST_LINE = re.compile(r"^minipeft profile: (\w+) .*\| base model: ([\w./-]+) \|", re.MULTILINE)


def machine() -> str:
    """The machine in words: the GPU's name, or the CPU cores PyTorch uses."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{torch.get_num_threads()} CPU cores ({platform.machine()}), no GPU"


def stamp(profile: str, model: str, minutes: float) -> str:
    return (f"**Stored outputs:** the `{profile}` profile on `{model}`, {machine()}, {date.today():%-d %B %Y}, "
            f"{minutes:.0f} min to run. `make outputs` regenerates them (`python scripts/store_outputs.py`).")


CELL_TIMINGS = ("execution", "ExecuteTime")  # nbclient's and the ExecuteTime extension's per-cell timestamps


def drop_cell_timings(nb: nbformat.NotebookNode) -> list[int]:
    """Remove every cell's timing metadata (``CELL_TIMINGS``) from ``nb`` in place; returns the cells changed."""
    changed = []
    for index, cell in enumerate(nb.cells):
        found = [key for key in CELL_TIMINGS if key in cell.metadata]
        for key in found:
            del cell.metadata[key]
        if found:
            changed.append(index)
    return changed


def store(path: Path, timeout: int) -> float:
    """Execute ``path`` in place (outputs replaced, progress bars at their final state, no per-cell timings), stamp
    its first cell; returns the minutes it took."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": path.parent}})
    start = time.perf_counter()
    client.execute()
    minutes = (time.perf_counter() - start) / 60
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    found = FIRST_LINE.search(printed)
    if not found:
        raise SystemExit(f"{path.name}: no setup_notebook() line in its outputs, so nothing says what it ran on; "
                         "the notebook is left as it was.")
    line = stamp(*found.groups(), minutes)  # the profile and base model the notebook itself printed
    nb = nbformat.from_dict(clean_progress_bars(nb)[0])
    drop_cell_timings(nb)
    intro = nb.cells[0]
    intro.source = STAMP.sub(line, intro.source) if STAMP.search(intro.source) else f"{intro.source}\n\n{line}"
    nbformat.write(nb, path)
    return minutes


def not_results() -> str | None:
    """Why a run in this environment would print no results (a dry run, or a stand-in model), else None."""
    from minipeft.base_model import STANDIN_FILE
    from minipeft.profiles import BASE_MODEL_ENV, DRY_RUN_ENV, GPT2_MODEL_ENV, dry_run_requested, model_folder

    if dry_run_requested():
        return f"{DRY_RUN_ENV} is set, and a dry run's numbers are not results. Unset it."
    for env in (BASE_MODEL_ENV, GPT2_MODEL_ENV):
        folder = os.environ.get(env, "").strip()
        path = model_folder(folder) if folder else None  # the loader's own reading of the variable
        if path is not None and (path / STANDIN_FILE).is_file():
            return f"{env}={folder} is a stand-in with random weights. Unset it."
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    args = parser.parse_args(argv)
    if refused := not_results():
        print(f"Outputs not stored: {refused}", file=sys.stderr)
        return 1
    os.environ.setdefault("MINIPEFT_PROFILE", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    notebooks = REPO_ROOT / "notebooks"
    paths = [notebooks / n for n in args.notebooks] or sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"{path.name}: running in the {os.environ['MINIPEFT_PROFILE']} profile ...", flush=True)
        print(f"{path.name}: stored, {store(path, args.timeout):.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
