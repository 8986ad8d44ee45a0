"""Prefix-tuning from scratch (minipeft) vs peft's: step time, memory, and trainable parameters.

One run, one machine, the two implementations interleaved step by step so that both see the same load::

    python benchmarks/bench_prefix.py              # mini GPT-2's shape, batch 16 x 64 tokens
    python benchmarks/bench_prefix.py --steps 100 --shape gpt2 --device cuda   # GPT-2 small on a GPU

Step time: median over ``--steps`` training steps (forward, backward, AdamW) after ``--warmup`` steps.
Memory: the bytes autograd keeps for the backward pass (activations, deduplicated by storage) plus the
trainable parameters, their gradients and AdamW's two moments; with CUDA also the allocator's peak.
Parameter counts: prefix (P = 10, with and without the paper's 512-wide MLP), LoRA (r = 4 on q and v,
the paper's E2E setting, and r = 8 on the whole c_attn) and full fine-tuning, for the mini GPT-2 and for
GPT-2 small's shape (built on the meta device: no weights needed).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from contextlib import contextmanager
from functools import partial

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from minipeft.lora import apply_lora
from minipeft.params import count_parameters
from minipeft.paths import MINI_GPT2_DIR
from minipeft.prefix import PrefixTuningModel

PREFIX_LEN, MLP_HIDDEN = 10, 512
trainable = partial(count_parameters, trainable_only=True)  # the package's one counter, trained parameters


def shape_config(shape: str) -> GPT2Config:
    """The mini GPT-2's config (read from data/mini-gpt2 when built) or GPT-2 small's."""
    if shape == "gpt2":
        return GPT2Config()  # the defaults are GPT-2 small: 12 layers, 768 wide, 12 heads, 50,257 tokens
    if (MINI_GPT2_DIR / "config.json").is_file():
        return GPT2Config.from_pretrained(MINI_GPT2_DIR)
    return GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=256, vocab_size=4096)


def parameter_counts(config: GPT2Config) -> dict[str, int]:
    """Trainable parameters of each method, counted on real modules built on the meta device."""
    with torch.device("meta"):
        full = trainable(GPT2LMHeadModel(config))  # tied input/output embeddings counted once
        counts = {"full fine-tune": full,
                  f"prefix P={PREFIX_LEN} (folded)": trainable(PrefixTuningModel(GPT2LMHeadModel(config), PREFIX_LEN)),
                  f"prefix P={PREFIX_LEN} + MLP {MLP_HIDDEN} (training)":
                      trainable(PrefixTuningModel(GPT2LMHeadModel(config), PREFIX_LEN, mlp_hidden=MLP_HIDDEN))}
        for name, kwargs in {"LoRA r=4 on q,v": dict(r=4, qv_only=True), "LoRA r=8 on c_attn": dict(r=8)}.items():
            model = GPT2LMHeadModel(config)
            for p in model.parameters():
                p.requires_grad_(False)
            apply_lora(model, targets=["c_attn"], **kwargs)
            counts[name] = trainable(model)
    return counts


def peft_prefix(base: GPT2LMHeadModel, mlp_hidden: int | None) -> torch.nn.Module:
    from peft import PrefixTuningConfig, get_peft_model  # the oracle, a dev dependency

    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=PREFIX_LEN,
                                prefix_projection=mlp_hidden is not None, encoder_hidden_size=mlp_hidden or 1)
    return get_peft_model(base, config)


@contextmanager
def saved_bytes(total: list[int]):
    """Count the bytes autograd saves for backward (each storage once) into ``total[0]``."""
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


class Runner:
    """One method: a model, its AdamW, and one training step on a fixed batch."""

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]):
        self.model, self.batch = model.train(), batch
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4)
        self.times: list[float] = []

    def step(self, record: bool = True) -> None:
        sync()
        start = time.perf_counter()
        loss = self.model(**self.batch).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        sync()
        if record:
            self.times.append(time.perf_counter() - start)

    def memory(self) -> int:
        """Activation bytes of one step + parameters, gradients and AdamW state of the trainable part."""
        total = [0]
        with saved_bytes(total):
            loss = self.model(**self.batch).loss
        loss.backward()
        return total[0] + 4 * sum(p.numel() * p.element_size() for p in self.params)

    def cuda_peak(self) -> int | None:
        if not torch.cuda.is_available() or self.batch["input_ids"].device.type != "cuda":
            return None
        torch.cuda.reset_peak_memory_stats()
        self.step(record=False)
        return torch.cuda.max_memory_allocated()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fresh_base(config: GPT2Config, state: dict, device: str) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel(config).to(device)
    model.load_state_dict(state)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["mini", "gpt2"], default="mini")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft reads a flag transformers renamed

    torch.manual_seed(0)
    config = shape_config(args.shape)
    state = GPT2LMHeadModel(config).state_dict()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=args.device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    print(f"Step time and memory: {args.shape} shape ({config.n_layer} layers x {config.n_embd}, vocab "
          f"{config.vocab_size}), batch {args.batch} x {args.seq} tokens, P = {PREFIX_LEN}, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, median of {args.steps} interleaved steps after {args.warmup}")
    print(f"{'variant':<22} {'minipeft ms':>12} {'peft ms':>9} {'ratio':>6} {'minipeft MiB':>13} {'peft MiB':>9} "
          f"{'ratio':>6}")
    for mlp in (None, MLP_HIDDEN):
        ours = Runner(PrefixTuningModel(fresh_base(config, state, args.device), PREFIX_LEN, mlp_hidden=mlp), batch)
        theirs = Runner(peft_prefix(fresh_base(config, state, args.device), mlp), batch)
        assert trainable(ours.model) == trainable(theirs.model)
        for _ in range(args.warmup):
            ours.step(record=False)
            theirs.step(record=False)
        for i in range(args.steps):  # interleaved, alternating who goes first
            for runner in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
                runner.step()
        t_ours, t_theirs = (1e3 * statistics.median(r.times) for r in (ours, theirs))
        m_ours, m_theirs = (r.cuda_peak() or r.memory() for r in (ours, theirs))
        name = "plain prefix" if mlp is None else f"prefix + MLP {mlp}"
        print(f"{name:<22} {t_ours:>12.1f} {t_theirs:>9.1f} {t_ours / t_theirs:>6.3f} {m_ours / 2**20:>13.1f} "
              f"{m_theirs / 2**20:>9.1f} {m_ours / m_theirs:>6.3f}")
    print("(MiB: CUDA allocator peak on a GPU; on CPU, bytes saved for backward + trainable params, grads, AdamW)")

    print("\nTrainable parameters")
    shapes = {"mini GPT-2": shape_config("mini"), "GPT-2 small": shape_config("gpt2")}
    counts = {name: parameter_counts(cfg) for name, cfg in shapes.items()}
    print(f"{'method':<34}" + "".join(f"{name:>16} {'%':>8}" for name in shapes))
    for method in counts["mini GPT-2"]:
        row = "".join(f"{c[method]:>16,} {100 * c[method] / c['full fine-tune']:>7.3f}%" for c in counts.values())
        print(f"{method:<34}{row}")


if __name__ == "__main__":
    main()
