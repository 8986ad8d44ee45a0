"""How many parameters: the one counter for a built model, and counts from configurations by formula.

:func:`count_parameters` is the package's single parameter counter. The formulas cover the real
``transformers`` configurations (GPT-2 small to XL, and the 11-billion-parameter T5 v1.1 shape of
flan-t5-xxl) and what LoRA, prefix-tuning and prompt tuning add to them; the tests check every formula
against the model ``transformers`` (or peft) builds. What the parameters cost in bytes is :mod:`minipeft.memory`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from .checks import positive_int

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


# ----------------------------------------------------------------------------- a built model
def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model`` (tied weights counted once), or only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def print_trainable_parameters(model: torch.nn.Module) -> None:
    """Print the counts in peft's format: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


# ----------------------------------------------------------------------------- base models, by formula
def gpt2_config(name: str = "gpt2") -> GPT2Config:
    """The configuration of a released GPT-2 (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``), offline."""
    if name not in GPT2_SHAPES:
        raise ValueError(f"Unknown GPT-2 size {name!r}. Choose one of: {', '.join(GPT2_SHAPES)}.")
    n_embd, n_layer, n_head = GPT2_SHAPES[name]
    return GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, vocab_size=50257, n_positions=1024)


def flan_t5_xxl_config() -> T5Config:
    """The configuration of google/flan-t5-xxl (T5 v1.1 XXL), offline."""
    return T5Config(**FLAN_T5_XXL)


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


# ----------------------------------------------------------------------------- what each method trains
def lora_matrix_count(r: int, shapes: Iterable[tuple[int, int]]) -> int:
    """LoRA's parameters at rank ``r`` on matrices of shape ``(fan_in, fan_out)``: ``r * (fan_in + fan_out)`` each."""
    positive_int(r, "LoRA rank r", "The paper uses r=4 on GPT-2.")
    return sum(r * (fan_in + fan_out) for fan_in, fan_out in shapes)


def prefix_kv_count(n_layers: int, length: int, d_model: int) -> int:
    """A stored prefix: one key and one value vector of width ``d_model`` per layer and prefix position."""
    positive_int(length, "Prefix length", "Li & Liang use 10 on E2E.")
    return 2 * n_layers * length * d_model


# GPT-2's LoRA targets per layer, as (fan_in, fan_out) of each adapted matrix, for a width d.
def _gpt2_lora_shapes(d: int, n_inner: int) -> dict[str, list[tuple[int, int]]]:
    return {
        "q": [(d, d)], "k": [(d, d)], "v": [(d, d)],  # the three slices of the fused c_attn
        "c_attn": [(d, 3 * d)], "attn.c_attn": [(d, 3 * d)],
        "attn.c_proj": [(d, d)], "mlp.c_proj": [(n_inner, d)], "c_proj": [(d, d), (n_inner, d)],
        "c_fc": [(d, n_inner)], "mlp.c_fc": [(d, n_inner)],
    }


def lora_parameter_count(config: GPT2Config, r: int, targets: tuple[str, ...] = ("q", "v")) -> int:
    """Trainable parameters of LoRA at rank ``r`` on GPT-2 (:func:`lora_matrix_count` per layer).

    ``targets`` name modules by suffix as peft does (``c_attn``, ``c_proj``, ``c_fc``, ``attn.c_proj``,
    ...), or ``q``/``k``/``v`` for one slice of the fused ``c_attn`` (the paper adapts ``q`` and ``v``).
    """
    shapes = _gpt2_lora_shapes(config.n_embd, config.n_inner or 4 * config.n_embd)
    unknown = [t for t in targets if t not in shapes]
    if unknown or not targets:
        raise ValueError(f"Unknown LoRA target(s) {unknown or targets!r} for GPT-2. Valid: {', '.join(shapes)}.")
    return config.n_layer * lora_matrix_count(r, [shape for t in targets for shape in shapes[t]])


def prefix_parameter_count(config: GPT2Config, length: int, mlp_hidden: int | None = None) -> int:
    """Trainable parameters of prefix-tuning with ``length`` virtual tokens on GPT-2.

    Without reparameterisation the prefix is a key and a value vector per layer and position
    (:func:`prefix_kv_count`). With ``mlp_hidden`` (Li & Liang's reparameterisation, as in peft's
    ``PrefixEncoder``) training updates a ``length x n_embd`` table and an MLP
    ``n_embd -> mlp_hidden -> 2 * n_layer * n_embd``; after training only the computed prefix is kept.
    """
    stored = prefix_kv_count(config.n_layer, length, config.n_embd)
    positive_int(mlp_hidden, "mlp_hidden", "Li & Liang use 512, or None for no reparameterisation.", allow_none=True)
    if mlp_hidden is None:
        return stored
    d, kv = config.n_embd, stored // length  # kv: the keys and values of one prefix position, all layers
    return length * d + (d * mlp_hidden + mlp_hidden) + (mlp_hidden * kv + kv)


def prompt_parameter_count(config: GPT2Config, length: int) -> int:
    """Trainable parameters of prompt tuning: ``length`` soft word embeddings of width ``n_embd``."""
    positive_int(length, "Prompt length", "Try 10.")
    return length * config.n_embd


# ----------------------------------------------------------------------------- the memory calculator's models
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
        return self.n_attention * lora_matrix_count(r, [(self.d_model, self.d_model)] * 2)

    def prefix_params(self, length: int) -> int:
        """A stored prefix of ``length`` keys and values per layer (no reparameterisation MLP)."""
        return prefix_kv_count(self.n_prefix_layers, length, self.d_model)


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
