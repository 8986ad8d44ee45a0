"""A 4-bit base, QLoRA-style (Dettmers et al., 2023), from scratch: NF4 block-wise quantisation and a 4-bit linear.

NormalFloat-4 (NF4) has 16 levels placed at quantiles of the standard normal, because pretrained weights are
roughly normal: each level then covers about the same share of the weights. A weight matrix is cut into blocks of
64 values; each block is divided by its absolute maximum (so it lies in [-1, 1]) and every value is stored as the
4-bit index of the nearest level, two indices per byte. Dequantising is one table look-up and one multiply::

    w ~ levels[code] * absmax[block]          # 4 bits per weight + 32 bits per 64 weights = 4.5 bits

Double quantisation stores the block scales themselves in 8 bits (blocks of 256 scales, their mean taken out
first), 4 + 8/64 + 32/(64*256) ~ 4.127 bits per weight. Typical use::

    quantize_model(model)                      # every nn.Linear / Conv1D but lm_head becomes a frozen Linear4bit
    apply_lora(model, targets=["q_proj", "v_proj"], r=8, alpha=16)   # QLoRA: LoRA trains on the 4-bit base

The 4-bit weights never change: merging LoRA into them is refused (see :class:`Linear4bit`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

__all__ = ["NF4_LEVELS", "NF4_OFFSET", "Linear4bit", "NF4Measurement", "NF4Weight", "block_scales", "dequantize_nf4",
           "measure_nf4", "nf4_levels", "quantize_model", "quantize_nf4", "storage_bytes"]

NF4_OFFSET = 0.9677083  # QLoRA's outermost quantile: norm.ppf(0.9677083) ~ 1.848 standard deviations
BLOCK_SIZE = 64  # weights per absmax scale (QLoRA)
SCALE_BLOCK_SIZE = 256  # scales per 8-bit block under double quantisation (QLoRA)
TINY = torch.finfo(torch.float32).tiny  # divides an all-zero block without a NaN


def nf4_levels(offset: float = NF4_OFFSET) -> Tensor:
    """The 16 NF4 levels in [-1, 1]: 8 positive and 7 negative normal quantiles, exact zero, divided by the largest.

    As bitsandbytes' ``create_normal_map``: the quantile points in float32, the quantiles in float64, the rest in
    float32, which gives its published table bit for bit.
    """
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double()).float()  # 8 quantiles above 0.5
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double()).float()  # 7 below, mirrored
    levels = torch.cat([negative, torch.zeros(1), positive]).sort().values
    return levels / levels.max()  # -1 = levels[0], 0 = levels[7], 1 = levels[15]


NF4_LEVELS = nf4_levels()


@dataclass
class NF4Weight:
    """A quantised tensor: packed codes, block scales (float32, or 8-bit with their own scales) and its shape."""

    codes: Tensor  # uint8, two 4-bit level indices per byte, the first in the high nibble
    absmax: Tensor  # float32 per block; int8 codes under double quantisation
    shape: torch.Size
    block_size: int = BLOCK_SIZE
    absmax_scale: Tensor | None = None  # double quantisation: float32 per 256 scales
    absmax_offset: Tensor | None = None  # double quantisation: the mean scale, taken out before the 8-bit step

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor this weight stores (what its memory is made of)."""
        named = {"codes": self.codes, "absmax": self.absmax, "absmax_scale": self.absmax_scale,
                 "absmax_offset": self.absmax_offset}
        return {name: t for name, t in named.items() if t is not None}


def _blocks(x: Tensor, block_size: int) -> Tensor:
    """``x`` flattened into rows of ``block_size`` values, zero-padded at the end (zeros never raise an absmax)."""
    flat = x.reshape(-1)
    return F.pad(flat, (0, -flat.numel() % block_size)).view(-1, block_size)


def quantize_nf4(weight: Tensor, block_size: int = BLOCK_SIZE, double_quant: bool = False) -> NF4Weight:
    """Block-wise NF4: each block divided by its absmax, each value the index of the nearest level, two per byte."""
    if block_size <= 0 or block_size % 2:
        raise ValueError(f"block_size must be a positive even number (two codes per byte), got {block_size}. "
                         f"QLoRA uses 64.")
    blocks = _blocks(weight.detach().float(), block_size)
    absmax = blocks.abs().amax(dim=1)  # one scale per block
    scaled = blocks / absmax.clamp_min(TINY)[:, None]  # in [-1, 1]; an all-zero block stays 0
    levels = NF4_LEVELS.to(weight.device)
    midpoints = (levels[:-1] + levels[1:]) / 2  # the nearest level = how many midpoints lie below (ties go down)
    codes = torch.bucketize(scaled.reshape(-1), midpoints).to(torch.uint8)
    packed = codes[0::2] << 4 | codes[1::2]  # two 4-bit codes per byte
    quantised = NF4Weight(packed, absmax, weight.shape, block_size)
    if double_quant:
        offset = absmax.mean()  # scales are all positive: centre them so that 8 signed bits cover them well
        scale_blocks = _blocks(absmax - offset, SCALE_BLOCK_SIZE)
        scale = scale_blocks.abs().amax(dim=1).clamp_min(TINY)
        absmax_codes = torch.round(scale_blocks / scale[:, None] * 127).to(torch.int8)  # 8-bit absmax, 256 per scale
        quantised.absmax, quantised.absmax_scale, quantised.absmax_offset = absmax_codes.view(-1), scale, offset
    return quantised


def block_scales(q: NF4Weight) -> Tensor:
    """The float32 absmax of every block (decoded from 8 bits under double quantisation)."""
    if q.absmax_scale is None:
        return q.absmax
    n_blocks = q.codes.numel() * 2 // q.block_size
    scales = q.absmax.view(-1, SCALE_BLOCK_SIZE).float() / 127 * q.absmax_scale[:, None] + q.absmax_offset
    return scales.reshape(-1)[:n_blocks]


def dequantize_nf4(q: NF4Weight) -> Tensor:
    """``levels[code] * absmax[block]``, back in the original shape (float32)."""
    codes = torch.stack([q.codes >> 4, q.codes & 0xF], dim=1).view(-1)  # unpack: high nibble first
    values = NF4_LEVELS.to(q.codes.device)[codes.long()].view(-1, q.block_size) * block_scales(q)[:, None]
    return values.reshape(-1)[:math.prod(q.shape)].view(q.shape)


def storage_bytes(tensors: Sequence[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``, measured from the storages themselves."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


class Linear4bit(nn.Module):
    """A frozen linear layer whose weight is stored in NF4 and dequantised on the fly: ``y = x W^T + b``.

    ``weight`` is computed from the codes at each read (so LoRA, DoRA and the like see the dequantised ``W``), and
    cannot be written: merging an adapter into 4-bit codes would not be exact (re-quantising ``W0 + s B A``
    changes other weights of each block, and unmerging could not give ``W0`` back), so it is refused.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None, block_size: int = BLOCK_SIZE,
                 double_quant: bool = False, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"Linear4bit needs a 2-D (out, in) weight, got shape {tuple(weight.shape)}.")
        self.out_features, self.in_features = weight.shape
        self.block_size, self.double_quant, self.compute_dtype = block_size, double_quant, compute_dtype
        q = quantize_nf4(weight, block_size, double_quant)
        for name, tensor in q.tensors().items():
            self.register_buffer(name, tensor)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(compute_dtype).clone(), requires_grad=False)

    @classmethod
    def from_layer(cls, layer: nn.Linear | Conv1D, block_size: int = BLOCK_SIZE, double_quant: bool = False,
                   ) -> Linear4bit:
        """Quantise an ``nn.Linear`` or GPT-2's ``Conv1D`` (whose ``(in, out)`` weight is transposed first)."""
        weight = layer.weight.T if isinstance(layer, Conv1D) else layer.weight
        return cls(weight, layer.bias, block_size, double_quant)

    def quantised(self) -> NF4Weight:
        """The stored weight as an :class:`NF4Weight` (the module's own buffers, not copies)."""
        extra = {"absmax_scale": self.absmax_scale, "absmax_offset": self.absmax_offset} if self.double_quant else {}
        return NF4Weight(self.codes, self.absmax, torch.Size((self.out_features, self.in_features)), self.block_size,
                         **extra)

    @property
    def weight(self) -> Tensor:
        """The dequantised ``(out, in)`` weight in the compute dtype: a fresh tensor, never a parameter."""
        return dequantize_nf4(self.quantised()).to(self.compute_dtype)

    @weight.setter
    def weight(self, value: Tensor) -> None:
        raise RuntimeError("This Linear4bit layer holds frozen 4-bit NF4 codes: its weight cannot be written, so "
                           "merging LoRA into it (merge_lora, unload_lora(merge=True)) or replacing it (PiSSA's "
                           "residual) is refused, because re-quantising W0 + s*B*A is not exact. Keep the adapter "
                           "unmerged (forward computes W0 x + s B A x), or load the full-precision base model, "
                           "load the adapter there and merge into that.")

    def forward(self, x: Tensor) -> Tensor:
        return _Dequantising.apply(x.to(self.compute_dtype), self)  # W dequantised for this call only

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"nf4, block_size={self.block_size}, double_quant={self.double_quant}")


class _Dequantising(torch.autograd.Function):
    """``x W^T + b`` with ``W`` dequantised in the forward pass and again in the backward pass, as bitsandbytes does:
    autograd keeps no float copy of the frozen weight between the two (``F.linear`` would save the dequantised
    ``W`` for the input's gradient, a full-precision copy of every 4-bit layer held through each step)."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: Linear4bit) -> Tensor:
        ctx.layer = layer
        return F.linear(x, layer.weight, layer.bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad @ ctx.layer.weight, None  # dL/dx = dL/dy W; the weight and bias are frozen


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or name.endswith("." + p) for p in patterns)


def quantize_model(model: nn.Module, skip: str | Sequence[str] = ("lm_head",), block_size: int = BLOCK_SIZE,
                   double_quant: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` and ``Conv1D`` of ``model`` (except those named in ``skip``, by name suffix) by a
    frozen :class:`Linear4bit`. Returns ``model``, changed in place; bad input raises before anything changes.

    ``lm_head`` is skipped by default: in SmolLM2 it shares its weight with the token embedding, which stays fp32.
    """
    from .lora import lora_layers  # here: minipeft.lora imports this module

    skip = [skip] if isinstance(skip, str) else list(skip)
    if lora_layers(model):
        raise ValueError("This model already has LoRA layers: quantise the base first, then call apply_lora "
                         "(QLoRA's order). Start again from a fresh base model.")
    targets = {name: m for name, m in model.named_modules()
               if isinstance(m, nn.Linear | Conv1D) and not _matches(name, skip)}
    if not targets:
        found = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear | Conv1D)})
        raise ValueError(f"No layer to quantise: quantize_model replaces nn.Linear and GPT-2's Conv1D layers, and "
                         f"this model has none outside skip={skip} (linear layers found: {found or 'none'}). Pass a "
                         f"model with linear layers, or a shorter skip list.")
    replacements = {name: Linear4bit.from_layer(m, block_size, double_quant) for name, m in targets.items()}
    for name, layer in replacements.items():  # every layer quantised above: nothing can fail half-way here
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model


@dataclass(frozen=True)
class NF4Measurement:
    """What NF4 costs and saves on one model, measured (bytes from the tensors' storages)."""

    layers: int  # linear layers quantised
    weights: int  # weights in them
    fp32_bytes: int  # their weight storage before
    nf4_bytes: int  # codes + scales after
    max_logit_diff: float
    mean_logit_diff: float
    fp32_nats: float  # mean next-token cross-entropy before
    nf4_nats: float  # and after
    tokens: int  # tokens the logits and cross-entropy were measured on

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nf4_bytes / self.weights

    def __str__(self) -> str:
        return (f"{self.layers} linear layers, {self.weights:,} weights: fp32 {self.fp32_bytes / 1e6:.1f} MB -> NF4 "
                f"{self.nf4_bytes / 1e6:.1f} MB ({self.bits_per_weight:.3f} bits per weight, "
                f"{self.fp32_bytes / self.nf4_bytes:.2f}x smaller). On {self.tokens} tokens: |logit diff| max "
                f"{self.max_logit_diff:.3f}, mean {self.mean_logit_diff:.4f}; cross-entropy {self.fp32_nats:.4f} -> "
                f"{self.nf4_nats:.4f} nats ({self.nf4_nats - self.fp32_nats:+.4f}).")


@torch.no_grad()
def measure_nf4(model: nn.Module, input_ids: Tensor, skip: str | Sequence[str] = ("lm_head",),
                double_quant: bool = False) -> NF4Measurement:
    """Quantise a copy of ``model`` and measure weight memory, logit change and cross-entropy change on
    ``input_ids`` (``(batch, length)`` token ids). ``model`` itself is left as it was. In a notebook::

        blocks = text_blocks(general_text()[0], tokenizer, block_len=128, n_blocks=4)  # minipeft.forgetting.general
        print(measure_nf4(model, blocks))   # SmolLM2-135M: about 20 s on one CPU thread
    """
    quantised = quantize_model(copy.deepcopy(model), skip=skip, double_quant=double_quant)
    names = [n for n, m in quantised.named_modules() if isinstance(m, Linear4bit)]
    before = [model.get_submodule(n).weight for n in names]
    after = [t for n in names for t in quantised.get_submodule(n).quantised().tensors().values()]
    logits, nats = _logits_and_nats(model, input_ids)
    logits_q, nats_q = _logits_and_nats(quantised, input_ids)
    diff = (logits_q - logits).abs()
    return NF4Measurement(len(names), sum(w.numel() for w in before), storage_bytes(before), storage_bytes(after),
                          diff.max().item(), diff.mean().item(), nats, nats_q, input_ids.numel())


def _logits_and_nats(model: nn.Module, input_ids: Tensor) -> tuple[Tensor, float]:
    """Logits and the mean next-token cross-entropy (nats per predicted token) of a causal LM."""
    logits = model(input_ids=input_ids).logits.float()
    nats = F.cross_entropy(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    return logits, nats.item()
