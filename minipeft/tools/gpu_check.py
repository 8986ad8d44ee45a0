"""The device check behind ``scripts/gpu_check.sh``: the ``gpu`` profile's real step counts on a CUDA GPU.

    bash scripts/gpu_check.sh                   # notebook 05, then a lab run of notebook 06: full fine-tuning
    bash scripts/gpu_check.sh --method lora     # notebook 06's LoRA (q, v, r=8) run instead

1. No CUDA device: one line, exit status 1, nothing run.
2. The ``gpt2`` stand-in (GPT-2's exact shapes and tokenizer, random weights; written once into
   ``data/cache/standin/``) stands in for the Hub's GPT-2: timing and memory depend on the shapes, not the values.
3. Notebook 05 in the ``gpu`` profile (2,000 steps a method), executed into ``artifacts/gpu-check/``: its wall time,
   and its table's seconds per step and peak memory per method (``torch.cuda.max_memory_allocated``, which
   ``minipeft.train.train`` records on CUDA).
4. One lab run of notebook 06 (:func:`minipeft.forgetting.lab.measure` of the first run of the method that its live
   cells train in the gpu profile), beside the untuned model and the untrained prefix that 06 keeps: its seconds per
   step and peak memory, beside the estimate of :func:`minipeft.forgetting.lab.notebook06_gpu_peaks`.

The stand-in's quality numbers (loss, BLEU, slot errors) mean nothing; its seconds and bytes are the GPU's.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from minipeft.paths import REPO_ROOT

OUT = REPO_ROOT / "artifacts" / "gpu-check"
NO_CUDA = ("gpu_check: no CUDA device (torch.cuda.is_available() is False): run it on a machine with an NVIDIA GPU "
           "and a CUDA build of PyTorch.")


def notebook_05(timeout: int) -> bool:
    """Execute notebook 05 in the gpu profile; print its wall time and the table of its methods. True if it ran."""
    import nbformat

    from minipeft.tools import run_notebooks

    path, executed = REPO_ROOT / "notebooks" / "05_gpt2_finetune.ipynb", OUT / "05_gpt2_finetune.ipynb"
    print(f"notebook 05 in the gpu profile on the stand-in, real step counts (executed copy: {executed}) ...",
          flush=True)
    seconds, _, _, _, error = run_notebooks.run_notebook(path, timeout, save_to=executed)
    print(f"notebook 05: {seconds / 60:.1f} min wall time, {'FAILED: ' + error if error else 'ok'}")
    for cell in nbformat.read(executed, as_version=4).cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "peak mem MB" in out.get("text", ""):
                print(out["text"].rstrip())  # per method: s/step and peak mem MB (max_memory_allocated)
    return error is None


def forgetting_run(method: str) -> None:
    """One lab run of notebook 06 in the gpu profile, as its cells make it: the run of ``method`` it trains first
    there (:func:`minipeft.forgetting.findings.live_slice`), measured by :func:`minipeft.forgetting.lab.measure`
    beside the untuned model and section 3's untrained prefix. Prints seconds per step, the peak
    ``torch.cuda.max_memory_allocated`` and :func:`minipeft.forgetting.lab.notebook06_gpu_peaks`'s estimate."""
    from minipeft.base_model import load_base_model
    from minipeft.forgetting.findings import live_slice
    from minipeft.forgetting.lab import BATCH, LabContext, LabRun, lab_scale, load_runs, measure, notebook06_gpu_peaks
    from minipeft.memory import GB
    from minipeft.profiles import get_profile

    profile = get_profile("gpu")
    base, tokenizer = load_base_model(profile, device="cuda")
    ctx = LabContext.create(base, tokenizer, profile.base_model, profile, lab_scale(profile))  # as notebook 06
    kept = [base, LabRun("prefix", 1e-3, seed=0, length=10).build(base)]  # 06's untuned and untrained models
    run = next(r for r in live_slice(profile, load_runs()) if r.method == method)
    estimate = next(p for p in notebook06_gpu_peaks() if p.label.startswith(f"notebook 06, {method}"))
    print(f"notebook 06's lab run {run.name}: {run.steps} steps of batch {BATCH}, {len(kept)} models kept beside "
          f"it ...", flush=True)
    record = measure(run, ctx)
    peak = torch.cuda.max_memory_allocated()  # since train() reset it: training and the measurements after it
    print(f"{run.name}: {record['seconds_per_step']:.3f} s/step (median), peak torch.cuda.max_memory_allocated "
          f"{peak / GB:.2f} GB, {record['provenance']['wall_seconds']:.0f} s in all, on {torch.cuda.get_device_name()}")
    print(estimate.format())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=["full", "lora", "prefix"], default="full",
                        help="the method of notebook 06's lab run to time: full fine-tuning (the most memory), LoRA "
                             "(q, v, r=8) or the prefix (P=10)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one notebook cell may run")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    from minipeft.standin import STANDIN_DIR, is_standin, write_standin

    folder = STANDIN_DIR / "gpt2"
    if not is_standin(folder):
        write_standin("gpt2", folder)
    os.environ.update({"MINIPEFT_PROFILE": "gpu", "MINIPEFT_BASE_MODEL": str(folder),
                       "MINIPEFT_GPT2_MODEL": str(folder), "MINIPEFT_RESULTS_DIR": str(OUT / "results"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))})
    os.environ.pop("MINIPEFT_DRY_RUN", None)  # the real step counts
    print(f"gpu profile on {torch.cuda.get_device_name()}, stand-in {folder} (random weights)", flush=True)
    ran = notebook_05(args.timeout)
    forgetting_run(args.method)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
