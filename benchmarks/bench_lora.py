"""Benchmark: minipeft's LoRA vs peft's LoRA (training step, peak memory) and merged inference vs the base model.

    python benchmarks/bench_lora.py                  # mini GPT-2 on CPU (random GPT-2 of its shape if absent)
    python benchmarks/bench_lora.py --model gpt2     # GPT-2 small's shape (on CUDA when present)

Both LoRAs wrap the same base weights with the same A and B, the same targets, rank, alpha and dropout, and
train with the same optimiser on the same batch. Runs are interleaved (ours, peft, peft, ours, ...) after a
warm-up, and medians are reported, so a slow moment of a shared machine hits both. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` during the steps; on CPU each method runs in a fresh process and reports
its peak resident memory during training minus its memory before the first step. Weights are random
(timings do not depend on their values), so this runs offline. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings

import psutil
import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from minipeft.lora import apply_lora, lora_layers, merge_lora, unload_lora  # noqa: E402
from minipeft.params import count_parameters  # noqa: E402

SHAPES = {  # (n_layer, n_embd, n_head, vocab_size)
    "mini": dict(n_layer=4, n_embd=128, n_head=4, vocab_size=4096, n_positions=256),
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
}


def build(args) -> tuple[GPT2LMHeadModel, GPT2LMHeadModel, GPT2LMHeadModel, torch.Tensor]:
    """(base, minipeft LoRA, peft LoRA, batch) on the device, with identical weights."""
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    import peft

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(**SHAPES[args.model], bos_token_id=0, eos_token_id=0)).to(args.device)
    ours = apply_lora(copy.deepcopy(base), targets=args.targets, r=args.r, alpha=2 * args.r, dropout=args.dropout)
    with torch.no_grad():
        for layer in lora_layers(ours).values():
            layer.lora_B.normal_(std=0.02)
    config = peft.LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=args.dropout, target_modules=args.targets,
                             fan_in_fan_out=True)
    theirs = peft.get_peft_model(copy.deepcopy(base), config)
    copied = {f"base_model.model.{n}.lora_{w}.default.weight": getattr(layer, f"lora_{w}").detach()
              for n, layer in lora_layers(ours).items() for w in "AB"}
    assert not theirs.load_state_dict(copied, strict=False).unexpected_keys
    batch = torch.randint(0, base.config.vocab_size, (args.batch, args.seq), device=args.device)
    return base, ours, theirs, batch


def make_step(model, batch):
    """One training step: forward with labels, backward, AdamW on the trainable (LoRA) parameters."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, n: int, warmup: int, device: str, desc: str) -> dict[str, float]:
    """Median milliseconds per call of each fn, calls interleaved in alternating order."""
    names, times = list(fns), {k: [] for k in fns}
    for _ in range(warmup):
        for k in names:
            fns[k]()
    for i in tqdm(range(n), desc=desc, leave=False):
        for k in names if i % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            fns[k]()
            sync(device)
            times[k].append(1000 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory_mb(which: str, args) -> float:
    """Peak extra memory (MB) of ``args.mem_steps`` training steps of ``which`` (base untouched)."""
    _, ours, theirs, batch = build(args)
    model = {"minipeft": ours, "peft": theirs}[which]
    del ours, theirs
    step = make_step(model, batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(args.mem_steps):
            step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = psutil.Process().memory_info().rss
    for _ in range(args.mem_steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 2**20  # ru_maxrss is in KiB


def cpu_peak_in_fresh_process(which: str, argv: list[str]) -> float:
    out = subprocess.run([sys.executable, __file__, *argv, "--memory-of", which], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=SHAPES, default=None, help="mini (CPU default) or gpt2 (CUDA default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--targets", nargs="+", default=["c_attn"])
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per method")
    parser.add_argument("--forwards", type=int, default=60, help="timed inference forwards per model")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--mem-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--memory-of", choices=["minipeft", "peft"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or ("gpt2" if args.device.startswith("cuda") else "mini")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:  # child process of the CPU memory measurement
        print(json.dumps({"peak_mb": peak_memory_mb(args.memory_of, args)}))
        return

    torch.manual_seed(0)
    base, ours, theirs, batch = build(args)
    steps = interleaved({"minipeft": make_step(ours, batch), "peft": make_step(theirs, batch)},
                        args.steps, args.warmup, args.device, "training steps")
    if args.device.startswith("cuda"):
        del ours, theirs
        torch.cuda.empty_cache()
        peak = {k: peak_memory_mb(k, args) for k in ("minipeft", "peft")}
    else:
        peak = {k: cpu_peak_in_fresh_process(k, sys.argv[1:]) for k in ("minipeft", "peft")}

    merged = merge_lora(copy.deepcopy(ours).eval())  # LoRA layers still in place, update folded into W
    plain = unload_lora(copy.deepcopy(ours).eval())  # merged and unwrapped: a plain GPT2LMHeadModel
    base.eval()
    with torch.no_grad():
        assert torch.allclose(merged(batch).logits, ours.eval()(batch).logits, atol=1e-4)
        infer = interleaved({"base": lambda: base(batch), "merged": lambda: merged(batch),
                             "merged+unloaded": lambda: plain(batch)}, args.forwards, args.warmup, args.device,
                            "inference")

    cuda = args.device.startswith("cuda")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"\nLoRA benchmark: {args.model} shape ({count_parameters(base):,} params) on {where}; "
          f"targets {args.targets}, r={args.r}, dropout={args.dropout}; batch {args.batch} x {args.seq} tokens; "
          f"medians of {args.steps} interleaved steps / {args.forwards} forwards after {args.warmup} warm-up")
    print(f"torch {torch.__version__}, peft {__import__('peft').__version__}\n")
    print(f"| {'measure':<41} | {'minipeft':>10} | {'reference':>10} | {'ratio':>6} | goal   |")
    print(f"|{'-' * 43}|{'-' * 12}|{'-' * 12}|{'-' * 8}|--------|")
    rows = [
        ("training step, ms (vs peft)", steps["minipeft"], steps["peft"], 1.05),
        ("peak training memory, MB (vs peft)", peak["minipeft"], peak["peft"], None),
        ("inference, merged, ms (vs base)", infer["merged"], infer["base"], 1.02),
        ("inference, merged+unloaded, ms (vs base)", infer["merged+unloaded"], infer["base"], 1.02),
    ]
    for name, mine, ref, goal in rows:
        ratio = mine / ref
        verdict = "" if goal is None else ("ok" if ratio <= goal else "MISSED")
        print(f"| {name:<41} | {mine:>10.2f} | {ref:>10.2f} | {ratio:>6.3f} | {verdict:<6} |")


if __name__ == "__main__":
    main()
