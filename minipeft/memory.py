"""What fine-tuning costs: parameter counts from real configurations, and the memory they take.

Parameter counts come from the real ``transformers`` configurations (GPT-2 small to XL, and the
11-billion-parameter T5 v1.1 shape of flan-t5-xxl), by formula; the tests check every formula against
the model ``transformers`` builds on the meta device (shapes only, no memory). Memory is counted per
parameter, before activations (which depend on batch size and sequence length):

=========  =======  =========  ======  ==========  ============================================
recipe     weights  gradients  master  AdamW m, v  bytes per trainable parameter
=========  =======  =========  ======  ==========  ============================================
fp32       4        4          0       4 + 4       16
fp16       2        2          4       4 + 4       16  (mixed precision: fp32 master copy and moments)
bf16       2        2          4       4 + 4       16  (the same recipe with bf16 working copies)
bf16-pure  2        2          0       2 + 2       8   (everything in bf16, no fp32 copy)
=========  =======  =========  ======  ==========  ============================================

A frozen parameter (the base model under LoRA or prefix-tuning) costs only its weight bytes. GB here
means 10**9 bytes, as on the cards' boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from .checks import positive_int

GB = 10**9

# (n_embd, n_layer, n_head) of the four released GPT-2 checkpoints; all share vocab 50257, n_positions 1024.
GPT2_SHAPES: dict[str, tuple[int, int, int]] = {
    "gpt2": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "gpt2-large": (1280, 36, 20),
    "gpt2-xl": (1600, 48, 25),
}
GPT2_NAMES = {"gpt2": "GPT-2 small", "gpt2-medium": "GPT-2 medium", "gpt2-large": "GPT-2 large", "gpt2-xl": "GPT-2 XL"}

# google/flan-t5-xxl's shape (T5 v1.1 XXL): gated-GELU feed-forward, embedding and output head not shared.
FLAN_T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, num_decoder_layers=24,
                   vocab_size=32128, feed_forward_proj="gated-gelu")

# Nominal memory of the cards the course talks about (usable memory is a little lower).
GPUS: dict[str, float] = {"T4 (16 GB)": 16 * GB, "24 GB card": 24 * GB, "H100 (80 GB)": 80 * GB}


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter for each piece of training state."""

    name: str
    weight: int  # the weights the forward pass uses
    grad: int  # their gradients
    master: int  # an fp32 copy the optimizer updates (mixed precision)
    optimizer: int  # AdamW's two moments, m and v
    note: str

    @property
    def trainable(self) -> int:
        """Bytes per trained parameter: weight + gradient + master copy + AdamW moments."""
        return self.weight + self.grad + self.master + self.optimizer


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 4, 4, 0, 8, "everything in fp32"),
    "fp16": Precision("fp16", 2, 2, 4, 8, "fp16 weights and gradients, fp32 master weights and AdamW moments"),
    "bf16": Precision("bf16", 2, 2, 4, 8, "bf16 weights and gradients, fp32 master weights and AdamW moments"),
    "bf16-pure": Precision("bf16-pure", 2, 2, 0, 4, "weights, gradients and AdamW moments all in bf16"),
}


def get_precision(name: str | Precision) -> Precision:
    """The :class:`Precision` called ``name`` (``fp32``, ``fp16``, ``bf16``, ``bf16-pure``)."""
    if isinstance(name, Precision):
        return name
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {name!r}. Choose one of: {', '.join(PRECISIONS)}.")
    return PRECISIONS[name]


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------

def gpt2_config(name: str = "gpt2") -> GPT2Config:
    """The configuration of a released GPT-2 (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``), offline."""
    if name not in GPT2_SHAPES:
        raise ValueError(f"Unknown GPT-2 size {name!r}. Choose one of: {', '.join(GPT2_SHAPES)}.")
    n_embd, n_layer, n_head = GPT2_SHAPES[name]
    return GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, vocab_size=50257, n_positions=1024)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model`` (tied weights counted once), or only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def print_trainable_parameters(model: torch.nn.Module) -> None:
    """Print the counts in peft's format: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


def meta_parameter_count(config: GPT2Config | T5Config) -> int:
    """Build the model on the meta device (shapes only, no memory) and count its parameters."""
    model_class = T5ForConditionalGeneration if isinstance(config, T5Config) else GPT2LMHeadModel
    with torch.device("meta"):
        return count_parameters(model_class(config))


def gpt2_parameter_count(config: GPT2Config) -> int:
    """GPT-2's parameters by formula; the output head shares the token embedding (tied)."""
    d, n_inner = config.n_embd, config.n_inner or 4 * config.n_embd
    embeddings = config.vocab_size * d + config.n_positions * d  # wte + wpe
    attention = (d * 3 * d + 3 * d) + (d * d + d)  # c_attn (q, k, v fused) + c_proj, with biases
    mlp = (d * n_inner + n_inner) + (n_inner * d + d)  # c_fc + c_proj, with biases
    layer_norms = 2 * (2 * d)  # ln_1 and ln_2: a scale and a shift each
    return embeddings + config.n_layer * (attention + mlp + layer_norms) + 2 * d  # + final ln_f


def t5_parameter_count(config: T5Config, tied_head: bool = False) -> int:
    """T5's parameters by formula. The released T5 v1.1 / flan-t5 checkpoints have their own output head.

    (transformers 5 always ties ``lm_head`` to the embedding when it builds T5, so a model built from the
    configuration has ``vocab_size * d_model`` fewer parameters than the checkpoint; ``tied_head=True``
    counts that way.)
    """
    d, inner, d_ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    attention = 4 * d * inner  # q, k, v, o; T5 has no biases
    feed_forward = (3 if config.is_gated_act else 2) * d * d_ff  # wi_0, wi_1 (gated), wo
    position_bias = config.relative_attention_num_buckets * config.num_heads  # first layer of each stack
    encoder = config.num_layers * (attention + feed_forward + 2 * d) + position_bias + d
    decoder = config.num_decoder_layers * (2 * attention + feed_forward + 3 * d) + position_bias + d
    embeddings = config.vocab_size * d * (1 if tied_head else 2)
    return embeddings + encoder + decoder


def flan_t5_xxl_config() -> T5Config:
    """The configuration of google/flan-t5-xxl (T5 v1.1 XXL), offline."""
    return T5Config(**FLAN_T5_XXL)


# GPT-2's LoRA targets per layer, as (fan_in, fan_out) of each adapted matrix, for a width d.
def _gpt2_lora_shapes(d: int, n_inner: int) -> dict[str, list[tuple[int, int]]]:
    return {
        "q": [(d, d)], "k": [(d, d)], "v": [(d, d)],  # the three slices of the fused c_attn
        "c_attn": [(d, 3 * d)], "attn.c_attn": [(d, 3 * d)],
        "attn.c_proj": [(d, d)], "mlp.c_proj": [(n_inner, d)], "c_proj": [(d, d), (n_inner, d)],
        "c_fc": [(d, n_inner)], "mlp.c_fc": [(d, n_inner)],
    }


def lora_parameter_count(config: GPT2Config, r: int, targets: tuple[str, ...] = ("q", "v")) -> int:
    """Trainable parameters of LoRA at rank ``r`` on GPT-2: ``r * (fan_in + fan_out)`` per adapted matrix.

    ``targets`` name modules by suffix as peft does (``c_attn``, ``c_proj``, ``c_fc``, ``attn.c_proj``,
    ...), or ``q``/``k``/``v`` for one slice of the fused ``c_attn`` (the paper adapts ``q`` and ``v``).
    """
    positive_int(r, "LoRA rank r", "The paper uses r=4 on GPT-2.")
    shapes = _gpt2_lora_shapes(config.n_embd, config.n_inner or 4 * config.n_embd)
    unknown = [t for t in targets if t not in shapes]
    if unknown or not targets:
        raise ValueError(f"Unknown LoRA target(s) {unknown or targets!r} for GPT-2. Valid: {', '.join(shapes)}.")
    per_layer = sum(r * (fan_in + fan_out) for t in targets for fan_in, fan_out in shapes[t])
    return config.n_layer * per_layer


def prefix_parameter_count(config: GPT2Config, length: int, mlp_hidden: int | None = None) -> int:
    """Trainable parameters of prefix-tuning with ``length`` virtual tokens on GPT-2.

    Without reparameterisation the prefix is a key and a value vector per layer and position:
    ``2 * n_layer * length * n_embd``. With ``mlp_hidden`` (Li & Liang's reparameterisation, as in peft's
    ``PrefixEncoder``) training updates a ``length x n_embd`` table and an MLP
    ``n_embd -> mlp_hidden -> 2 * n_layer * n_embd``; after training only the computed prefix is kept.
    """
    positive_int(length, "Prefix length", "Li & Liang use 10 on E2E.")
    positive_int(mlp_hidden, "mlp_hidden", "Li & Liang use 512, or None for no reparameterisation.", allow_none=True)
    kv = 2 * config.n_layer * config.n_embd  # one key and one value vector per layer, per prefix position
    if mlp_hidden is None:
        return length * kv
    d = config.n_embd
    return length * d + (d * mlp_hidden + mlp_hidden) + (mlp_hidden * kv + kv)


def prompt_parameter_count(config: GPT2Config, length: int) -> int:
    """Trainable parameters of prompt tuning: ``length`` soft word embeddings of width ``n_embd``."""
    positive_int(length, "Prompt length", "Try 10.")
    return length * config.n_embd


@dataclass(frozen=True)
class ModelSize:
    """What the memory calculator needs to know about a model."""

    name: str
    n_params: int  # all parameters of the checkpoint
    d_model: int
    n_attention: int  # attention blocks (LoRA adapts q and v in each)
    n_prefix_layers: int  # layers that receive a prefix of keys and values
    source: str  # where the numbers come from

    def lora_params(self, r: int) -> int:
        """LoRA on q and v of every attention block at rank ``r`` (square d x d matrices)."""
        positive_int(r, "LoRA rank r", "The paper uses r=4 on GPT-2.")
        return self.n_attention * 2 * r * (2 * self.d_model)

    def prefix_params(self, length: int) -> int:
        """A stored prefix of ``length`` keys and values per layer (no reparameterisation MLP)."""
        positive_int(length, "Prefix length", "Li & Liang use 10 on E2E.")
        return 2 * self.n_prefix_layers * length * self.d_model


def model_sizes() -> dict[str, ModelSize]:
    """GPT-2 small, medium, large, XL and flan-t5-xxl, computed from their configurations."""
    sizes = {}
    for hub_id, name in GPT2_NAMES.items():
        cfg = gpt2_config(hub_id)
        sizes[name] = ModelSize(name, gpt2_parameter_count(cfg), cfg.n_embd, cfg.n_layer, cfg.n_layer,
                                f"GPT2Config {hub_id}")
    t5 = flan_t5_xxl_config()
    # LoRA: q, v of encoder self-attention, decoder self- and cross-attention; prefix: every self-attention.
    sizes["flan-t5-xxl (11B)"] = ModelSize(
        "flan-t5-xxl (11B)", t5_parameter_count(t5), t5.d_model, t5.num_layers + 2 * t5.num_decoder_layers,
        t5.num_layers + t5.num_decoder_layers, "T5Config of google/flan-t5-xxl (T5 v1.1 XXL)")
    return sizes


# --------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of training state (weights, gradients, fp32 master copy, AdamW moments), before activations."""

    weights: int
    gradients: int
    master: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.master + self.optimizer

    def parts(self) -> dict[str, int]:
        """The four pieces by name, in the order they are stacked in the plots."""
        return {"weights": self.weights, "gradients": self.gradients, "fp32 master weights": self.master,
                "AdamW moments": self.optimizer}


def training_memory(n_trainable: int, n_frozen: int = 0, precision: str | Precision = "fp32") -> TrainingMemory:
    """Memory to train ``n_trainable`` parameters with AdamW next to ``n_frozen`` frozen ones.

    Full fine-tuning: ``training_memory(n_params)``. LoRA or prefix: ``training_memory(n_new, n_params)``;
    the frozen base needs only its weights (no gradients, no optimizer state).
    """
    if n_trainable < 0 or n_frozen < 0:
        raise ValueError(f"Parameter counts must be >= 0, got n_trainable={n_trainable}, n_frozen={n_frozen}.")
    p = get_precision(precision)
    return TrainingMemory(weights=(n_trainable + n_frozen) * p.weight, gradients=n_trainable * p.grad,
                          master=n_trainable * p.master, optimizer=n_trainable * p.optimizer)


def method_memory(model: ModelSize, method: str, precision: str | Precision = "fp32", r: int = 4,
                  prefix_length: int = 10) -> tuple[int, TrainingMemory]:
    """``(trainable parameters, memory)`` to train ``model`` with ``full``, ``lora`` (rank r) or ``prefix``."""
    if method == "full":
        trainable = model.n_params
        return trainable, training_memory(trainable, 0, precision)
    if method == "lora":
        trainable = model.lora_params(r)
    elif method == "prefix":
        trainable = model.prefix_params(prefix_length)
    else:
        raise ValueError(f"Unknown method {method!r}. Choose one of: full, lora, prefix.")
    return trainable, training_memory(trainable, model.n_params, precision)


def fits(n_bytes: float) -> dict[str, bool]:
    """For each card in :data:`GPUS`: does ``n_bytes`` fit in its nominal memory?"""
    return {gpu: n_bytes <= capacity for gpu, capacity in GPUS.items()}


def memory_table(precisions: tuple[str, ...] = ("fp32", "bf16"), r: int = 4) -> list[dict[str, object]]:
    """One row per model: parameters, weights alone, full fine-tuning and LoRA (q, v at rank r), in GB."""
    rows = []
    for model in model_sizes().values():
        row: dict[str, object] = {"model": model.name, "params": model.n_params}
        for prec in precisions:
            row[f"weights {prec}"] = model.n_params * get_precision(prec).weight / GB
            row[f"full FT {prec}"] = method_memory(model, "full", prec)[1].total / GB
            row[f"LoRA r={r} {prec}"] = method_memory(model, "lora", prec, r=r)[1].total / GB
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]], digits: int = 1) -> str:
    """A plain-text table (numbers right-aligned, floats rounded, integers with thousands separators)."""
    def fmt(value: object) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.{digits}f}"
        return str(value)

    header = list(rows[0])
    cells = [[fmt(row[key]) for key in header] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Peak GPU memory of a training step: an estimate, with its arithmetic
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeakEstimate:
    """The estimated peak GPU memory of a training step, part by part, each with the arithmetic behind it."""

    label: str
    parts: dict[str, int]  # bytes, by part
    arithmetic: dict[str, str]  # how each part was computed

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def format(self) -> str:
        """The estimate as lines: the total, then each part in GB with its arithmetic."""
        lines = [f"{self.label}: about {self.total / GB:.2f} GB (an estimate, not a measurement)"]
        lines += [f"  {part:<32} {size / GB:5.2f} GB  {self.arithmetic[part]}" for part, size in self.parts.items()]
        return "\n".join(lines)


def gpt2_activation_bytes(config: GPT2Config, batch_size: int, seq_len: int) -> tuple[int, str]:
    """Bytes a GPT-2 keeps from its forward pass for the backward pass under fp16 autocast, with the arithmetic.

    Per layer ``s * b * h * (34 + 5 * a * s / h)`` bytes (Korthikanti et al. 2022, "Reducing Activation
    Recomputation in Large Transformer Models": 16-bit activations, 1-byte dropout masks; the ``5 a s / h`` term
    is the attention matrix, which PyTorch's fused attention may not keep, so this errs high).
    """
    s, b, h, a = seq_len, batch_size, config.n_embd, config.n_head
    per_layer = 34 * s * b * h + 5 * a * s * s * b  # = s*b*h*(34 + 5*a*s/h), in whole bytes
    return config.n_layer * per_layer, f"{config.n_layer} layers x {s}*{b}*{h}*(34 + 5*{a}*{s}/{h}) B"


def training_peak(config: GPT2Config, n_trainable: int, n_frozen: int, *, batch_size: int, seq_len: int,
                  kept_models: int = 0, label: str = "") -> PeakEstimate:
    """Peak GPU memory of one step of :func:`minipeft.train.train` on a GPT-2 under fp16 autocast (a T4).

    Autocast keeps the fp32 recipe for the state (:func:`training_memory` with ``fp32``: fp32 weights, gradients
    and AdamW moments for what trains, fp32 weights only for what is frozen) and adds fp16 copies of the weights
    its matrix products use, held for the backward pass. On top: the activations (:func:`gpt2_activation_bytes`),
    the logits over the 50,257-token vocabulary (fp16 logits, their fp32 copy for the loss, its fp32
    gradient: 10 bytes each), and ``kept_models`` other fp32 copies of the model left on the GPU. Not counted:
    the CUDA context (a few hundred MB, outside ``torch.cuda.max_memory_allocated``) and the allocator's slack.
    """
    n_model = gpt2_parameter_count(config)
    state = training_memory(n_trainable, n_frozen, "fp32")
    activations, activation_sums = gpt2_activation_bytes(config, batch_size, seq_len)
    n_logits = batch_size * seq_len * config.vocab_size
    parts = {"fp32 weights": state.weights, "fp16 weight copies (autocast)": 2 * n_model,
             "fp32 gradients": state.gradients, "AdamW m and v (fp32)": state.optimizer,
             "activations (fp16)": activations, "logits and their gradient": 10 * n_logits,
             "other models kept on the GPU": kept_models * 4 * n_model}
    arithmetic = {"fp32 weights": f"4 B x ({n_trainable:,} trained + {n_frozen:,} frozen)",
                  "fp16 weight copies (autocast)": f"2 B x {n_model:,}",
                  "fp32 gradients": f"4 B x {n_trainable:,}", "AdamW m and v (fp32)": f"8 B x {n_trainable:,}",
                  "activations (fp16)": activation_sums,
                  "logits and their gradient": f"10 B x {batch_size}*{seq_len}*{config.vocab_size:,}",
                  "other models kept on the GPU": f"{kept_models} x 4 B x {n_model:,}"}
    return PeakEstimate(label, parts, arithmetic)


def gpu_profile_peaks() -> list[PeakEstimate]:
    """The estimated peak of each training run of notebooks 05 and 06 in the ``gpu`` profile (GPT-2 small, its
    batch size and sequence length): notebook 05 keeps the untuned model on the GPU beside the one it trains;
    notebook 06 keeps it and every model trained before (one per setting), and its rate checks train after the
    last setting, with all of them kept: its full fine-tuning at another rate peaks highest."""
    from .forgetting import rate_checks, settings_for  # here, not at the top: forgetting imports this module
    from .profiles import PROFILES

    gpu, cfg = PROFILES["gpu"], gpt2_config("gpt2")
    n, sizes = gpt2_parameter_count(cfg), dict(batch_size=gpu.batch_size, seq_len=gpu.seq_len)
    settings = settings_for(gpu)
    last = settings[-1]
    if last.method != "prefix":
        raise RuntimeError(f"notebook 06's last gpu setting is {last.label}, not a prefix: update this estimate.")
    full_again = next((s for s in rate_checks(gpu) if s.method == "full"), None)
    if full_again is None:
        raise RuntimeError("notebook 06's gpu rate checks train no full fine-tuning: update this estimate.")
    return [
        training_peak(cfg, n, 0, kept_models=1, label="notebook 05, full fine-tuning", **sizes),
        training_peak(cfg, prefix_parameter_count(cfg, 10, 512), n, kept_models=1,
                      label="notebook 05, prefix-tuning (P=10, MLP 512)", **sizes),
        training_peak(cfg, lora_parameter_count(cfg, 4), n, kept_models=1, label="notebook 05, LoRA (q, v, r=4)",
                      **sizes),
        training_peak(cfg, prefix_parameter_count(cfg, last.length, last.mlp_hidden), n, kept_models=len(settings),
                      label=f"notebook 06, its last setting ({last.label}; the untuned model and the "
                            f"{len(settings) - 1} trained before it kept)", **sizes),
        training_peak(cfg, n, 0, kept_models=len(settings) + 1,
                      label=f"notebook 06, its rate check of full fine-tuning ({full_again.label}; the untuned model "
                            f"and the {len(settings)} trained settings kept)", **sizes),
    ]
