"""What fine-tuning costs in bytes: training state per parameter, and the peak GPU memory of a training step.

The parameter counts come from :mod:`minipeft.params`. Memory is counted per parameter, before activations
(which depend on batch size and sequence length):

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

from transformers import GPT2Config

from .params import ModelSize, gpt2_parameter_count, model_sizes

GB = 10**9

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
# Training state
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
