"""LoRA (Hu et al., 2021) from scratch: a frozen weight plus a trainable low-rank update.

A wrapped layer computes ``h = W0 x + (alpha / r) * B (A x)`` where ``W0`` is the frozen base layer
(``nn.Linear`` or GPT-2's ``Conv1D``), ``A`` is ``r x in`` (Kaiming-uniform) and ``B`` is ``out x r``
(zeros, so a fresh adapter changes nothing). Typical use::

    apply_lora(model, targets=["c_attn"], r=4, alpha=32, qv_only=True)  # the paper's E2E setting on GPT-2
    apply_lora(llama, targets=["q_proj", "v_proj"], r=4, alpha=32)       # the same on a Llama-family model
    ...train...
    merge_lora(model)                        # fold (alpha/r) B A into W0: inference costs what the base costs

Three descendants are switches of :func:`apply_lora`: ``use_rslora=True`` (scaling ``alpha / sqrt(r)``,
:func:`lora_scaling`), ``use_dora=True`` (:mod:`minipeft.dora`) and ``init_lora_weights="pissa"``
(:mod:`minipeft.pissa`). Saving and loading adapters (peft's file layout) live in :mod:`minipeft.lora_files`;
this module is the method.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from .checks import finite_float, flag, positive_int, probability
from .pissa import check_pissa, init_pissa, is_pissa, restore_base
from .quant import Linear4bit

__all__ = ["LoRALayer", "apply_lora", "disable_lora", "lora_layers", "lora_scaling", "merge_lora", "unload_lora",
           "unmerge_lora"]

QV_CHUNKS = (True, False, True)  # GPT-2's fused c_attn outputs [q | k | v]: adapt q and v, leave k alone


def lora_scaling(alpha: float, r: int, use_rslora: bool = False) -> float:
    """The factor ``s`` of the update ``s * B A``: ``alpha / r`` (LoRA) or ``alpha / sqrt(r)`` (rsLoRA, Kalajdzievski
    2023, which keeps the update's size from shrinking as ``r`` grows)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def in_out_features(layer: nn.Linear | Conv1D) -> tuple[int, int]:
    """(in, out) features: Conv1D stores its weight as (in, out), nn.Linear as (out, in)."""
    shape = tuple(layer.weight.shape)
    return shape if isinstance(layer, Conv1D) else shape[::-1]


class LoRALayer(nn.Module):
    """A frozen ``nn.Linear`` or ``Conv1D`` plus a trainable low-rank update ``(alpha / r) * B @ A``.

    ``chunks`` splits the output into equal parts and adapts only the ``True`` ones, each with its own
    rank-``r`` pair (loralib's ``MergedLinear``); ``(True, False, True)`` on GPT-2's ``c_attn`` is q-and-v LoRA.
    ``use_rslora=True`` scales the update by ``alpha / sqrt(r)`` instead of ``alpha / r``.
    """

    def __init__(self, base: nn.Linear | Conv1D, r: int, alpha: float, dropout: float = 0.0,
                 chunks: Sequence[bool] | None = None, use_rslora: bool = False):
        super().__init__()
        _check_hyperparameters(r, alpha, dropout, use_rslora)
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)  # Conv1D stores W as (in, out), the transpose of Linear
        self.in_features, self.out_features = in_out_features(base)
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = lora_scaling(alpha, r, use_rslora)
        self.chunks = tuple(chunks) if chunks is not None else None
        if self.chunks is not None:
            _check_chunks(self.chunks, self.out_features)
        groups = sum(self.chunks) if self.chunks else 1  # adapted output chunks, each with its own A and B
        self.chunk_size = self.out_features // len(self.chunks) if self.chunks else self.out_features
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(groups * r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(groups * self.chunk_size, r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own init (and peft, loralib)
        if self.chunks:  # output rows that receive an update, e.g. the q and v thirds of c_attn
            size = self.chunk_size
            rows = [torch.arange(j * size, (j + 1) * size) for j, on in enumerate(self.chunks) if on]
            self.register_buffer("rows", torch.cat(rows).to(kw["device"]), persistent=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged, self.disabled = False, False
        base.requires_grad_(False)
        self.train(base.training)  # a wrapped eval-mode model stays in eval mode (no dropout)

    def full_B(self, B: Tensor | None = None) -> Tensor:
        """``B`` (default ``lora_B``) as one ``out x (groups * r)`` matrix: each adapted chunk reads only its own
        ``r`` rows of ``A x``."""
        B = self.lora_B if B is None else B
        if not self.chunks:
            return B
        blocks = torch.block_diag(*B.split(self.chunk_size))  # (groups*chunk, groups*r)
        return blocks.new_zeros(self.out_features, blocks.shape[1]).index_copy(0, self.rows, blocks)

    def delta_weight(self) -> Tensor:
        """``(alpha / r) * B @ A`` in the base layer's own layout (transposed for ``Conv1D``)."""
        delta = (self.full_B() @ self.lora_A) * self.scaling  # (out, in), like nn.Linear.weight
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)  # h = W0 x (+ bias)
        if self.merged or self.disabled:
            return out
        ax = F.linear(self.dropout(x), self.lora_A)  # A x: r numbers per token (per adapted chunk)
        bax = F.linear(ax, self.full_B())  # B A x: back to the layer's outputs
        return out + bax * self.scaling  # W0 x + (alpha / r) B A x

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the weight, ``W = W0 + (alpha / r) B A``: forward then costs what the base costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out again: ``W0 = W - (alpha / r) B A`` (equal to the original up to rounding)."""
        if self.merged:
            self.base.weight.copy_(self.unmerged_weight())
            self.merged = False

    def unmerged_weight(self) -> Tensor:
        """The frozen weight without the merged update: ``W0`` (PiSSA's residual), in the base layer's layout."""
        return self.base.weight - self.delta_weight() if self.merged else self.base.weight

    def extra_repr(self) -> str:
        qv = f", chunks={self.chunks}" if self.chunks else ""
        rs = ", use_rslora=True" if self.use_rslora else ""
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}{rs}{qv}, merged={self.merged}"


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Every LoRA layer of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALayer)}


def _check_hyperparameters(r: int, alpha: float, dropout: float, use_rslora: bool = False) -> None:
    positive_int(r, "LoRA rank r", "Try r=4 or r=8.")
    finite_float(alpha, "LoRA alpha", "The update is scaled by alpha / r: try alpha=2*r.", positive=True)
    probability(dropout, "LoRA dropout", "Use 0.0 (none) or 0.1 (the paper).", below_one=True)
    flag(use_rslora, "use_rslora", "use_rslora=True scales the update by alpha / sqrt(r), False by alpha / r.")


def _check_chunks(chunks: tuple[bool, ...], out_features: int) -> None:
    """Equal output parts, at least one adapted: ``(True, False, True)`` on a layer whose outputs split in three."""
    if not chunks or not all(isinstance(on, bool) for on in chunks) or not any(chunks):
        raise ValueError(f"LoRA chunks must be True/False flags, at least one True (the parts to adapt), got "
                         f"{chunks!r}. GPT-2's q-and-v setting is chunks=(True, False, True).")
    if out_features % len(chunks):
        raise ValueError(f"LoRA chunks={chunks!r} splits the output into {len(chunks)} equal parts, but this layer "
                         f"has {out_features} outputs, which {len(chunks)} does not divide. Use a number of chunks "
                         f"that divides {out_features} (3 for GPT-2's fused q|k|v), or chunks=None.")


def _find_targets(model: nn.Module, targets: Sequence[str], qv_only: bool) -> dict[str, Sequence[bool] | None]:
    """Names of the modules to wrap (matched by name suffix) and their chunks; raises before changing anything."""
    if not targets:
        raise ValueError("targets must name at least one module, e.g. targets=['c_attn'] or ['q_proj', 'v_proj'].")
    odd = [t for t in targets if not isinstance(t, str)]
    if odd:
        raise TypeError(f"targets must be module names (strings) such as 'c_attn'; got {odd[0]!r}.")
    flag(qv_only, "qv_only")
    if lora_layers(model):
        raise ValueError("This model already has LoRA layers: wrapping twice would stack adapters. Call "
                         "unload_lora(model) first, or start again from a fresh base model.")
    found: dict[str, Sequence[bool] | None] = {}
    for name, module in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if not isinstance(module, nn.Linear | Conv1D | Linear4bit):
            raise TypeError(f"Target {name!r} is a {type(module).__name__}; LoRA here wraps nn.Linear and "
                            f"transformers' Conv1D only. Choose targets such as 'c_attn', 'c_proj', 'c_fc'.")
        found[name] = QV_CHUNKS if qv_only and name.split(".")[-1] == "c_attn" else None
    if not found:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules()
                         if isinstance(m, nn.Linear | Conv1D | Linear4bit)})
        raise ValueError(f"No module of the model matches targets {list(targets)}. Layers LoRA can wrap here: "
                         f"{linear}.")
    if qv_only:
        fused = [n for n, chunks in found.items() if chunks]
        if not fused:
            raise ValueError("qv_only=True adapts GPT-2's fused q|k|v projection, but no target is named 'c_attn'. "
                             "Add 'c_attn' to targets, or set qv_only=False.")
        whole = [n for n, chunks in found.items() if not chunks]
        if whole:
            raise ValueError(f"qv_only=True adapts q and v inside c_attn only; other targets ({whole}) would mix "
                             f"q/v-split and whole layers in one adapter, which save_lora and peft's adapter files "
                             f"cannot hold. Use targets=['c_attn'] with qv_only=True, or qv_only=False.")
        odd = [n for n in fused if in_out_features(model.get_submodule(n))[1] % 3]
        if odd:
            raise ValueError(f"qv_only=True needs c_attn's output to split in three equal parts (q, k, v); "
                             f"{odd[0]!r} has {in_out_features(model.get_submodule(odd[0]))[1]} outputs.")
    return found


def apply_lora(model: nn.Module, targets: str | Sequence[str] = ("c_attn",), r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0, qv_only: bool = False, use_rslora: bool = False, use_dora: bool = False,
               init_lora_weights: bool | str = True) -> nn.Module:
    """Wrap the modules named ``targets`` (by name suffix) in :class:`LoRALayer` and freeze everything else.

    ``qv_only=True`` adapts only the query and value parts of GPT-2's fused ``c_attn`` (the paper's setting).
    ``use_rslora=True`` scales by ``alpha / sqrt(r)``; ``use_dora=True`` wraps in :class:`minipeft.dora.DoRALayer`;
    ``init_lora_weights="pissa"`` starts A and B from W0's top singular vectors (:func:`minipeft.pissa.init_pissa`).
    Returns ``model``, changed in place. Bad input raises before anything is changed.
    """
    from .dora import DoRALayer, check_dora  # here, not at the top: DoRALayer is a LoRALayer, defined above

    _check_hyperparameters(r, alpha, dropout, use_rslora)
    flag(use_dora, "use_dora", "use_dora=True rescales each output row of W0 + s B A to a trained length (DoRA).")
    targets = [targets] if isinstance(targets, str) else list(targets)
    found = _find_targets(model, targets, qv_only)
    modules = {name: model.get_submodule(name) for name in found}
    check_pissa(modules, r, init_lora_weights, found)
    if use_dora:
        check_dora(modules, init_lora_weights)
    model.requires_grad_(False)
    for name, chunks in found.items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        layer = (DoRALayer if use_dora else LoRALayer)(getattr(owner, child), r, alpha, dropout, chunks, use_rslora)
        if init_lora_weights == "pissa":
            init_pissa(layer)
        setattr(owner, child, layer)
    return model


def _check_mergeable(layers: dict[str, LoRALayer]) -> None:
    """Refuse, before any layer merges, a model with an adapter on a 4-bit base (its weight cannot be written)."""
    quantised = [name for name, layer in layers.items() if not layer.merged and isinstance(layer.base, Linear4bit)]
    if quantised:
        raise RuntimeError(f"{len(quantised)} LoRA layer(s), e.g. {quantised[0]!r}, sit on a frozen 4-bit "
                           f"Linear4bit base whose weight cannot be written (re-quantising W0 + s B A is not exact), "
                           f"so nothing was merged. Keep the adapter unmerged (forward computes W0 x + s B A x), "
                           f"or load the full-precision base model, load_lora the adapter there and merge into that.")


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer's update into its frozen weight (see :meth:`LoRALayer.merge`); all or none: a layer
    on a 4-bit base is refused before any layer changes."""
    layers = lora_layers(model)
    _check_mergeable(layers)
    for layer in layers.values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora`."""
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


@contextmanager
def disable_lora(model: nn.Module) -> Iterator[nn.Module]:
    """``with disable_lora(model):`` the base model answers, exactly; the adapters come back afterwards."""
    layers = lora_layers(model).values()
    if any(layer.merged for layer in layers):
        raise RuntimeError("The adapters are merged into the weights, so they cannot be switched off exactly. "
                           "Call unmerge_lora(model) first.")
    if any(is_pissa(layer) for layer in layers):
        raise RuntimeError("PiSSA replaced W0 by its residual W0 - s B0 A0, so switching the adapter off would give "
                           "the residual model, not the base model. Compare with a fresh copy of the base model, or "
                           "unload_lora(model, merge=False), which puts W0 back.")
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def unload_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put the base layers back in place of the LoRA layers (merged in first if ``merge``): a plain model again.

    With ``merge=False`` the base is the original one, also after PiSSA (its residual gets ``s B0 A0`` back)."""
    layers = lora_layers(model)
    if merge:
        _check_mergeable(layers)
    for name, layer in layers.items():
        layer.merge() if merge else layer.unmerge()
        if not merge and is_pissa(layer):
            restore_base(layer)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base)
    return model
