"""The device check behind ``scripts/gpu_check.sh``: the ``gpu`` profile's real step counts on a CUDA GPU.

    bash scripts/gpu_check.sh                   # notebook 05, then notebook 06's full fine-tuning setting
    bash scripts/gpu_check.sh --setting lora    # notebook 06's LoRA (q, v, r=4) setting instead

1. No CUDA device: one line, exit status 1, nothing run.
2. The ``gpt2`` stand-in (GPT-2's exact shapes and tokenizer, random weights; written once into
   ``data/cache/standin/``) stands in for the Hub's GPT-2: timing and memory depend on the shapes, not the values.
3. Notebook 05 in the ``gpu`` profile (2,000 steps a method), executed into ``artifacts/gpu-check/``: its wall time,
   and its table's seconds per step and peak memory per method (``torch.cuda.max_memory_allocated``, which
   ``minipeft.train.train`` records on CUDA).
4. One setting of notebook 06 at the profile's ``sweep_steps``, measured here the same way, beside the estimate of
   :func:`minipeft.memory.training_peak`.

The stand-in's quality numbers (loss, BLEU, slot errors) mean nothing; its seconds and bytes are the GPU's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "gpu-check"
NO_CUDA = ("gpu_check: no CUDA device (torch.cuda.is_available() is False): run it on a machine with an NVIDIA GPU "
           "and a CUDA build of PyTorch.")


def notebook_05(timeout: int) -> bool:
    """Execute notebook 05 in the gpu profile; print its wall time and the table of its methods. True if it ran."""
    import nbformat

    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    run_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_notebooks)
    path, executed = ROOT / "notebooks" / "05_gpt2_finetune.ipynb", OUT / "05_gpt2_finetune.ipynb"
    print(f"notebook 05 in the gpu profile on the stand-in, real step counts (executed copy: {executed}) ...",
          flush=True)
    seconds, _, _, _, error = run_notebooks.run_notebook(path, timeout, save_to=executed)
    print(f"notebook 05: {seconds / 60:.1f} min wall time, {'FAILED: ' + error if error else 'ok'}")
    for cell in nbformat.read(executed, as_version=4).cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "peak mem MB" in out.get("text", ""):
                print(out["text"].rstrip())  # per method: s/step and peak mem MB (max_memory_allocated)
    return error is None


def forgetting_setting(method: str) -> None:
    """One setting of notebook 06 at the gpu profile's sweep_steps: seconds per step and peak GPU memory."""
    from minipeft.base_model import context_length, load_base_model
    from minipeft.data import load_restaurant, make_loader
    from minipeft.forgetting import Setting, general_text, learning_rate, run_setting, text_blocks
    from minipeft.memory import GB, training_peak
    from minipeft.params import gpt2_config, gpt2_parameter_count, lora_parameter_count
    from minipeft.profiles import get_profile

    profile = get_profile("gpu")
    base, tokenizer = load_base_model(profile, device="cuda")
    max_len = context_length(base) - 40  # as notebook 06
    train_loader = make_loader(load_restaurant("train", profile), tokenizer, profile.batch_size, max_len, seed=0,
                               drop_long=True)
    val_loader = make_loader(load_restaurant("validation", profile), tokenizer, profile.batch_size, max_len,
                             shuffle=False, drop_long=True)
    blocks = text_blocks(general_text(profile)[0], tokenizer, 128, profile.eval_batches * profile.batch_size)
    setting = Setting(method, r=4)
    print(f"notebook 06's setting {setting.label}: {profile.sweep_steps} steps of {profile.batch_size} ...", flush=True)
    start = time.perf_counter()
    row = run_setting(setting, base, train_loader, val_loader, blocks, steps=profile.sweep_steps,
                      lr=learning_rate(setting, base), eval_batches=profile.eval_batches)
    peak = torch.cuda.max_memory_allocated()  # since train() reset it: training and the evaluations after it
    cfg = gpt2_config("gpt2")
    n = gpt2_parameter_count(cfg)
    trained, frozen = (n, 0) if method == "full" else (lora_parameter_count(cfg, 4), n)
    estimate = training_peak(cfg, trained, frozen, batch_size=profile.batch_size, seq_len=profile.seq_len,
                             kept_models=1, label=f"estimate for {setting.label} beside the untuned model")
    print(f"{setting.label}: {row['seconds_per_step']:.3f} s/step (median), peak torch.cuda.max_memory_allocated "
          f"{peak / GB:.2f} GB, {time.perf_counter() - start:.0f} s in all, on {torch.cuda.get_device_name()}")
    print(estimate.format())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=["full", "lora"], default="full",
                        help="notebook 06's setting to time: full fine-tuning (the most memory) or LoRA q,v r=4")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one notebook cell may run")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))  # this checkout's minipeft, installed or not
    from minipeft.standin import STANDIN_DIR, is_standin, write_standin

    folder = STANDIN_DIR / "gpt2"
    if not is_standin(folder):
        write_standin("gpt2", folder)
    os.environ.update({"MINIPEFT_PROFILE": "gpu", "MINIPEFT_BASE_MODEL": str(folder),
                       "MINIPEFT_GPT2_MODEL": str(folder), "MINIPEFT_RESULTS_DIR": str(OUT / "results"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    os.environ.pop("MINIPEFT_DRY_RUN", None)  # the real step counts
    print(f"gpu profile on {torch.cuda.get_device_name()}, stand-in {folder} (random weights)", flush=True)
    ran = notebook_05(args.timeout)
    forgetting_setting(args.setting)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
