"""`make gpu-dry`: the `gpu` profile end to end on a CPU machine, against stand-ins for the Hub's GPT-2.

    python scripts/gpu_dry.py                                 # every notebook, then the replication script
    python scripts/gpu_dry.py 05_gpt2_finetune.ipynb --no-replicate

1. Stand-ins for ``gpt2`` and ``gpt2-medium`` (GPT-2's exact shapes and real tokenizer, random weights) in
   ``data/cache/standin/``, written once by ``python -m minipeft.standin``.
2. Every notebook executed with ``MINIPEFT_PROFILE=gpu MINIPEFT_DRY_RUN=1``, ``MINIPEFT_BASE_MODEL`` and
   ``MINIPEFT_GPT2_MODEL`` set to the ``gpt2`` stand-in and ``HF_HUB_OFFLINE=1``; the executed copies go to
   ``artifacts/gpu-dry/`` (the repository's notebooks are never rewritten), results files to
   ``artifacts/gpu-dry/results/``. For notebook 05's real-E2E code path, the E2E dev set named by
   ``MINIPEFT_E2E_DEVSET`` (default ``../shared/data/e2e/devset.csv`` beside the repository) is linked, never
   copied, as each of E2E's three files in ``artifacts/gpu-dry/e2e/`` (``MINIPEFT_E2E_DIR``): a dry run needs real
   rows, not separate splits. Without it the script says so and notebook 05 uses the offline set.
3. ``scripts/replicate_paper.py`` on the ``gpt2-medium`` stand-in: one step of each method, two test MRs.

Prints each notebook's wall time, its kernel's CPU time and peak memory (the resident memory of the kernel, in
fp32 on the CPU; beside notebooks 05 and 06, the estimated peak on a T4 from
:func:`minipeft.recipes.notebook05_gpu_peaks` and :func:`minipeft.forgetting.lab.notebook06_gpu_peaks`), then a table,
also written to ``artifacts/gpu-dry/summary.md``. Exits 1 if anything failed. Not part of ``make test``: on 2 CPU
cores it takes a long time (docs/instructors.md). A dry run's numbers are not results.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from minipeft.data import E2E_DEVSET_ENV, E2E_FILES, e2e_devset_path
from minipeft.forgetting.lab import notebook06_gpu_peaks
from minipeft.memory import GB
from minipeft.paths import REPO_ROOT
from minipeft.recipes import notebook05_gpu_peaks
from minipeft.standin import STANDIN_DIR, is_standin, write_standin
from minipeft.tools.run_notebooks import run_notebook

OUT = REPO_ROOT / "artifacts" / "gpu-dry"


@contextmanager
def peak_rss(every: float = 0.5) -> Iterator[list[int]]:
    """Sample the resident memory of this process's children (the notebook's kernel) until the block ends;
    the list it yields holds the peak in bytes afterwards."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(every):
            rss = 0
            for child in psutil.Process().children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:  # it ended between listing and reading
                    pass
            peak[0] = max(peak[0], rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def standins() -> dict[str, Path]:
    """The two stand-ins, written if missing (about 10 s and 0.5 GB for gpt2, 30 s and 1.4 GB for gpt2-medium)."""
    folders = {}
    for hub_id in ("gpt2", "gpt2-medium"):
        folder = STANDIN_DIR / hub_id
        if not is_standin(folder):
            print(f"writing the {hub_id} stand-in to {folder} ...", flush=True)
            write_standin(hub_id, folder)
        folders[hub_id] = folder
    return folders


def e2e_folder() -> Path | None:
    """``artifacts/gpu-dry/e2e/`` with E2E's three file names linked to the dev set; None (and a line) without it."""
    devset = e2e_devset_path().resolve()
    if not devset.is_file():
        print(f"No E2E dev set at {devset} (set {E2E_DEVSET_ENV}=path/to/devset.csv): notebook 05 and the replication "
              f"script use the offline restaurant set, so the real-E2E code path is not run.")
        return None
    folder = OUT / "e2e"
    folder.mkdir(parents=True, exist_ok=True)
    for name in E2E_FILES.values():
        link = folder / name
        link.unlink(missing_ok=True)
        link.symlink_to(devset)
    print(f"E2E: {devset} stands in for every split ({folder}, links only: the data stays outside the repository).")
    return folder


def run_all(names: list[str], timeout: int) -> list[dict]:
    """Execute the notebooks in the dry-run environment, one row of measurements each."""
    peaks = notebook05_gpu_peaks() + notebook06_gpu_peaks()
    estimates = {nb: max((p for p in peaks if p.label.startswith(f"notebook {nb}")), key=lambda p: p.total)
                 for nb in ("05", "06")}  # each notebook's highest training run
    notebooks = REPO_ROOT / "notebooks"
    paths = [notebooks / n for n in names] or sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    rows = []
    for path in paths:
        print(f"{path.name}: running ...", flush=True)
        with peak_rss() as peak:
            seconds, cpu_seconds, _, _, error = run_notebook(path, timeout, save_to=OUT / path.name)
        estimate = estimates.get(path.name[:2])
        row = {"notebook": path.name, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss": peak[0],
               "t4_estimate": estimate.total if estimate else None, "status": f"FAILED: {error}" if error else "ok"}
        rows.append(row)
        t4 = f"; T4 estimate {row['t4_estimate'] / GB:.1f} GB (fp16 autocast)" if estimate else ""
        print(f"{path.name}: {seconds:.0f} s ({cpu_seconds:.0f} kernel CPU s), kernel peak RSS "
              f"{peak[0] / GB:.1f} GB (fp32, CPU){t4}, {row['status']}", flush=True)
    return rows


def replicate(medium: Path, e2e: Path | None) -> dict:
    """``scripts/replicate_paper.py`` on the gpt2-medium stand-in: one step of each method, two test MRs."""
    data = ["--e2e-dir", str(e2e)] if e2e else ["--data", "offline"]
    command = [sys.executable, str(REPO_ROOT / "scripts" / "replicate_paper.py"), "--model", str(medium),
               "--methods", "lora", "prefix", "full", "--max-steps", "1", "--n-train", "16", "--n-test", "2",
               "--num-beams", "2", "--max-new-tokens", "8", "--quiet", "--out", str(OUT / "replicate.json"), *data]
    print("replicate_paper.py on the gpt2-medium stand-in, one step of each method ...", flush=True)
    start = time.perf_counter()
    with peak_rss() as peak:
        done = subprocess.run(command, cwd=REPO_ROOT)
    seconds = time.perf_counter() - start
    status = "ok" if done.returncode == 0 else f"FAILED: exit status {done.returncode} (its output is above)"
    print(f"replicate_paper.py: {seconds:.0f} s, peak RSS {peak[0] / GB:.1f} GB, {status}", flush=True)
    return {"notebook": "scripts/replicate_paper.py (gpt2-medium stand-in)", "seconds": seconds, "cpu_seconds": None,
            "peak_rss": peak[0], "t4_estimate": None, "status": status}


def table(rows: list[dict], total_seconds: float) -> str:
    lines = ["| run | wall seconds | kernel CPU seconds | peak RSS GB (CPU, fp32) | T4 estimate GB | status |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        cpu = f"{r['cpu_seconds']:.0f}" if r["cpu_seconds"] is not None else "-"
        t4 = f"{r['t4_estimate'] / GB:.1f}" if r["t4_estimate"] else "-"
        lines.append(f"| {r['notebook']} | {r['seconds']:.0f} | {cpu} | {r['peak_rss'] / GB:.1f} | {t4} | "
                     f"{r['status']} |")
    lines.append(f"| **all of `make gpu-dry`** | {total_seconds:.0f} ({total_seconds / 60:.1f} min) | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    parser.add_argument("--no-replicate", action="store_true", help="skip the replication script")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    folders = standins()
    e2e = e2e_folder()
    os.environ.update({"MINIPEFT_PROFILE": "gpu", "MINIPEFT_DRY_RUN": "1", "HF_HUB_OFFLINE": "1",
                       "MINIPEFT_BASE_MODEL": str(folders["gpt2"]), "MINIPEFT_GPT2_MODEL": str(folders["gpt2"]),
                       "MINIPEFT_RESULTS_DIR": str(OUT / "results"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))})
    if e2e:
        os.environ["MINIPEFT_E2E_DIR"] = str(e2e)
    print(f"gpu profile, DRY RUN, on the stand-in {folders['gpt2']} (random weights): executed notebooks go to {OUT}")
    rows = run_all(args.notebooks, args.timeout)
    if not args.no_replicate:
        rows.append(replicate(folders["gpt2-medium"], e2e))
    summary = table(rows, time.perf_counter() - start)
    (OUT / "summary.md").write_text(summary + "\n")
    print("\n" + summary + f"\n\n(also in {OUT / 'summary.md'}; a dry run's numbers are not results)")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
