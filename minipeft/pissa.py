"""PiSSA (Meng et al., 2024): LoRA whose A and B start from the top-r singular triplets of W0.

With ``W0 = U S V^T`` (singular values in decreasing order) PiSSA takes the ``r`` largest:
``B = U_r sqrt(S_r / s)`` and ``A = sqrt(S_r / s) V_r^T``, so that ``s B A = U_r S_r V_r^T``, and replaces W0 by the
residual ``W_res = W0 - s B A``. The model computes the same function at init (up to rounding), but training moves
W0's principal directions instead of a random A and a zero B. These are peft's ``init_lora_weights="pissa"``
formulas; the SVD runs in float32 (float64 for a float64 weight) and the results are cast to the weight's dtype.
On GPT-2's q-and-v setting each adapted part of ``c_attn`` (W_q, W_v) gets the SVD of its own rows.

The first A0 and B0 stay on the layer (buffers ``pissa_A0``, ``pissa_B0``, never saved): W0 is
``W_res + s B0 A0``, so the trained adapter converts into a plain LoRA of rank ``2r`` for the original W0,
``s (B A - B0 A0) = s [B | -B0] [A ; A0]`` (:func:`pissa_as_lora`, as peft's
``path_initial_model_for_weight_conversion``), and ``unload_lora(model, merge=False)`` puts W0 back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

if TYPE_CHECKING:
    from .lora import LoRALayer

__all__ = ["init_pissa", "is_pissa", "pissa_as_lora", "pissa_delta"]


def check_pissa(modules: dict[str, nn.Module], r: int, init_lora_weights: object,
                chunks: dict[str, Sequence[bool] | None]) -> None:
    """Refuse, before anything changes, an ``init_lora_weights`` other than True or "pissa", and PiSSA on a layer
    whose weight it cannot read or whose (adapted part's) SVD has fewer than ``r`` directions: a shape too small, or
    a rank too low (a direction of singular value 0 starts with A = B = 0, where no gradient ever reaches it)."""
    if init_lora_weights is True:
        return
    if init_lora_weights != "pissa":
        niter = isinstance(init_lora_weights, str) and init_lora_weights.startswith("pissa_niter_")
        why = (" peft's 'pissa_niter_K' takes a randomised SVD, which loading the adapter cannot repeat exactly (peft "
               "re-runs the initialisation on loading): use 'pissa', the exact SVD." if niter else "")
        raise ValueError(f"init_lora_weights must be True (A Kaiming-uniform, B zero) or 'pissa' (A and B from W0's "
                         f"top singular vectors), got {init_lora_weights!r}.{why}")
    odd = [f"{n!r} ({type(m).__name__})" for n, m in modules.items() if type(m) not in (nn.Linear, Conv1D)]
    if odd:
        raise TypeError(f"init_lora_weights='pissa' takes the SVD of a dense nn.Linear or Conv1D weight; target "
                        f"{odd[0]} is not one. Use init_lora_weights=True on it.")
    for name, module in modules.items():
        rows, cols = module.weight.shape
        if chunks[name]:  # the SVD of each adapted part: out / len(chunks) rows (Conv1D: columns) of the weight
            rows, cols = (rows, cols // len(chunks[name])) if isinstance(module, Conv1D) else \
                (rows // len(chunks[name]), cols)
        if min(rows, cols) < r:
            part = " (each adapted part)" if chunks[name] else ""
            raise ValueError(f"init_lora_weights='pissa' takes the top r={r} singular vectors of W0, but {name!r} "
                             f"has a {rows} x {cols} weight{part}, hence only {min(rows, cols)}. Use r <= "
                             f"{min(rows, cols)}.")
        rank = min(int(torch.linalg.matrix_rank(part)) for part in _adapted_parts(module, chunks[name]))
        if rank < r:
            raise ValueError(f"init_lora_weights='pissa' takes the top r={r} singular vectors of W0, but {name!r} "
                             f"has rank {rank}{' (its lowest adapted part)' if chunks[name] else ''}: only {rank} "
                             f"singular values are non-zero, so {r - rank} of the r directions would start with "
                             f"A = B = 0 and never get a gradient. Use r <= {rank}.")


def _adapted_parts(module: nn.Linear | Conv1D, chunks: Sequence[bool] | None) -> list[Tensor]:
    """W0 in nn.Linear's (out, in) layout, split into the adapted output parts (the whole weight without chunks)."""
    weight = module.weight.detach()
    weight = (weight.T if isinstance(module, Conv1D) else weight).to(torch.promote_types(weight.dtype, torch.float32))
    if not chunks:
        return [weight]
    size = weight.shape[0] // len(chunks)
    return [weight[j * size:(j + 1) * size] for j, on in enumerate(chunks) if on]


@torch.no_grad()
def init_pissa(layer: LoRALayer) -> None:
    """A and B from the top-``r`` singular triplets of W0 (of each adapted part); W0 replaced by the residual."""
    weight, r = layer.base.weight, layer.r
    w = weight.to(torch.promote_types(weight.dtype, torch.float32))
    w = (w.T if layer.fan_in_fan_out else w).clone()  # (out, in), as nn.Linear
    parts = layer.rows.view(-1, layer.chunk_size) if layer.chunks else [slice(None)]  # the adapted rows, per part
    for g, rows in enumerate(parts):
        U, S, Vh = torch.linalg.svd(w[rows], full_matrices=False)  # = U diag(S) Vh, S decreasing
        root = (S[:r] / layer.scaling).sqrt()  # sqrt(S_r / s): s B A = U_r S_r V_r^T
        A, B = root[:, None] * Vh[:r], U[:, :r] * root
        w[rows] -= layer.scaling * B @ A  # W_res = W0 - s B A
        layer.lora_A[g * r:(g + 1) * r] = A
        layer.lora_B[g * layer.chunk_size:(g + 1) * layer.chunk_size] = B
    weight.copy_(w.T if layer.fan_in_fan_out else w)
    layer.register_buffer("pissa_A0", layer.lora_A.detach().clone(), persistent=False)
    layer.register_buffer("pissa_B0", layer.lora_B.detach().clone(), persistent=False)


def is_pissa(layer: nn.Module) -> bool:
    """Whether ``layer`` was initialised by :func:`init_pissa` (its W0 is a residual)."""
    return hasattr(layer, "pissa_A0")


def pissa_delta(layer: LoRALayer) -> Tensor:
    """``s B0 A0``, what PiSSA took out of W0, in the base layer's layout: ``W0 = W_res + s B0 A0``."""
    delta = layer.scaling * (layer.full_B(layer.pissa_B0) @ layer.pissa_A0)
    return delta.T if layer.fan_in_fan_out else delta


@torch.no_grad()
def restore_base(layer: LoRALayer) -> None:
    """Put W0 back in place of the residual: ``W0 = W_res + s B0 A0`` (up to rounding)."""
    layer.base.weight += pissa_delta(layer)


def pissa_as_lora(layer: LoRALayer) -> tuple[Tensor, Tensor, int, float]:
    """The trained PiSSA adapter as a plain LoRA for the original W0: ``(A', B', 2r, alpha')`` with
    ``A' = [A ; A0]``, ``B' = [B | -B0]`` (per adapted part, B' compact as ``lora_B``) and ``alpha'`` chosen so that
    the scaling stays ``s``."""
    r, n = layer.r, layer.chunk_size
    A_parts = zip(layer.lora_A.detach().split(r), layer.pissa_A0.split(r), strict=True)
    B_parts = zip(layer.lora_B.detach().split(n), layer.pissa_B0.split(n), strict=True)
    A = torch.cat([torch.cat([A, A0]) for A, A0 in A_parts])
    B = torch.cat([torch.cat([B, -B0], dim=1) for B, B0 in B_parts])
    alpha = layer.alpha * (2 ** 0.5 if layer.use_rslora else 2)  # alpha'/sqrt(2r) or alpha'/(2r) equals s
    return A, B, 2 * r, alpha
