"""Run every notebook top to bottom, time it, and (with ``--solutions``) prove every exercise check passes.

    python -m minipeft.tools.run_notebooks                 # all notebooks, the active profile (MINIPEFT_PROFILE)
    python -m minipeft.tools.run_notebooks --solutions     # every unwritten exercise filled with its reference solution
    python -m minipeft.tools.run_notebooks 03_lora.ipynb   # some notebooks only

Notebooks run in the kernel of this Python, from their own folder, and are never rewritten: outputs stay
as committed. With ``--solutions`` (``MINIPEFT_SOLUTIONS=1``, see :mod:`minipeft.exercises`) the reference
solution replaces each unwritten exercise in the notebook's namespace, so the cells after it run with it; each
``check("NN.k", ...)`` call must print that its exercise was filled in and checked (or is correct), so an
exercise that silently did not run fails the command too. Prints one line per notebook and a table.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from minipeft.paths import REPO_ROOT

CHECK_CALL = re.compile(r"""check\(\s*["'](\d\d\.\d+)["']""")
CHECK_PASSED = re.compile(r"Exercise (\d\d\.\d+): (?:solution filled in|correct!)")


def _text_outputs(cell: dict) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished kernels count here once reaped
    return usage.ru_utime + usage.ru_stime


def run_notebook(path: Path, timeout: int = 600, save_to: Path | None = None
                 ) -> tuple[float, float, list[str], list[str], str | None]:
    """Execute ``path``; returns (seconds, kernel CPU seconds, exercise keys found, keys that passed, error or None).

    The kernel's CPU seconds hardly depend on what else the machine runs, unlike the wall-clock seconds.
    ``save_to``: also write the executed copy there (as far as it ran), never over ``path`` itself.
    """
    if save_to is not None and save_to.resolve() == path.resolve():
        raise ValueError(f"save_to would overwrite the notebook itself ({path}); give another path.")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": path.parent}})
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(err).strip().splitlines()[-1])  # last line, no colours
    except (CellTimeoutError, DeadKernelError) as err:
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
    seconds, cpu_seconds = time.perf_counter() - start, _children_cpu_seconds() - cpu_start
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    found = [key for cell in code for key in CHECK_CALL.findall(cell.source)]
    passed = [key for cell in code for key in CHECK_PASSED.findall(_text_outputs(cell))]
    return seconds, cpu_seconds, found, passed, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    parser.add_argument("--solutions", action="store_true", help="fill every unwritten exercise with its solution")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds one cell may run (default 600 in the ci profile, else 3600: a cpu sweep cell "
                             "takes about 20 minutes)")
    args = parser.parse_args(argv)
    if args.solutions:
        os.environ["MINIPEFT_SOLUTIONS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the kernels import this checkout's minipeft even where it is not pip-installed
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    notebooks = REPO_ROOT / "notebooks"
    paths = [notebooks / n for n in args.notebooks] or sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    profile = os.environ.get("MINIPEFT_PROFILE", "(default from the hardware)")
    timeout = args.timeout or (600 if profile == "ci" else 3600)
    print(f"profile {profile}, solutions {'filled in' if args.solutions else 'as written'}, {len(paths)} notebooks")
    rows, failed = [], False
    for path in paths:
        seconds, cpu_seconds, found, passed, error = run_notebook(path, timeout)
        missing = sorted(set(found) - set(passed)) if args.solutions else []
        status = f"FAILED: {error}" if error else (f"FAILED: no passing check for {', '.join(missing)}"
                                                   if missing else "ok")
        failed |= status != "ok"
        rows.append((path.name, seconds, cpu_seconds, len(set(found)), len(set(passed)), status))
        print(f"{path.name}: {seconds:.0f} s ({cpu_seconds:.0f} kernel CPU s), "
              f"{len(set(passed))}/{len(set(found))} exercises passed, {status}", flush=True)
    print("\n| notebook | seconds | kernel CPU seconds | exercises passed | status |\n|---|---:|---:|---:|---|")
    for name, seconds, cpu_seconds, n_found, n_passed, status in rows:
        print(f"| {name} | {seconds:.0f} | {cpu_seconds:.0f} | {n_passed}/{n_found} | {status} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
