"""DoRA (Liu et al., 2024): LoRA's update, then every output row rescaled to a trained length.

A DoRA layer's weight is ``W = m * V / ||V||`` with ``V = W0 + s B A`` and the norm taken per OUTPUT feature (each
row of nn.Linear's ``(out, in)`` weight, as the paper and peft; taking it per input column is a known mistake).
The magnitude ``m`` (one number per output) is trained and starts at ``||W0||``, so a fresh layer is the base layer.
``||V||`` is treated as a constant in the backward pass (the paper's section 4.3, and peft): gradients reach m, A
and B, never through the norm. The forward pass reuses the base output ``W0 x + b``, as peft does::

    W x + b = (W0 x + b) + (m/||V|| - 1) W0 x + (m/||V||) s B A x

A row of V that is all zero has no direction: its scale ``m / ||V||`` is taken as 0 (the zero row stays zero, as
``F.normalize`` leaves a zero vector), where peft 0.21.2 divides 0 by 0 and returns NaN (peft issue #2049). Such a
row of W0 (m = 0) then gets no gradient and stays the base model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from .lora import LoRALayer

__all__ = ["DoRALayer"]


def check_dora(modules: dict[str, nn.Module], init_lora_weights: object) -> None:
    """Refuse, before anything changes, DoRA where it is not implemented."""
    odd = [f"{n!r} ({type(m).__name__})" for n, m in modules.items() if type(m) not in (nn.Linear, Conv1D)]
    if odd:
        raise TypeError(f"use_dora=True needs W0 as a dense nn.Linear or Conv1D weight (it takes its row norms); "
                        f"target {odd[0]} is not one. Use use_dora=False (plain LoRA) on it.")
    if init_lora_weights == "pissa":
        raise ValueError("use_dora=True with init_lora_weights='pissa' is not supported here (peft's conversion of "
                         "such an adapter for the original W0 drops the magnitudes). Choose one of the two.")


class DoRALayer(LoRALayer):
    """A :class:`LoRALayer` whose output rows are rescaled to the trained lengths ``lora_magnitude``.

    With ``chunks`` (GPT-2's q-and-v setting) only the adapted rows have a magnitude; the others stay W0's exactly.
    """

    def __init__(self, base: nn.Linear | Conv1D, r: int, alpha: float, dropout: float = 0.0,
                 chunks: Sequence[bool] | None = None, use_rslora: bool = False):
        check_dora({"base": base}, True)
        super().__init__(base, r, alpha, dropout, chunks, use_rslora)
        self.lora_magnitude = nn.Parameter(self.weight_norm())  # m = ||W0||: at init W = W0
        self.merged_scale: Tensor | None = None  # the scale merge() applied, which unmerge() divides out
        self.zero_rows: Tensor | None = None  # W0's rows that merge() scaled to zero

    def out_in(self, weight: Tensor) -> Tensor:
        """``weight`` in nn.Linear's ``(out, in)`` layout (Conv1D stores ``(in, out)``)."""
        return weight.T if self.fan_in_fan_out else weight

    @torch.no_grad()
    def weight_norm(self) -> Tensor:
        """``||W0 + s B A||`` per adapted output row, computed without gradient (a constant for autograd)."""
        norm = torch.linalg.norm(self.out_in(self.base.weight) + self.scaling * (self.full_B() @ self.lora_A), dim=1)
        return norm[self.rows] if self.chunks else norm

    def scale(self) -> Tensor:
        """``m / ||V||`` per output (1 on outputs not adapted); 0 on a row of norm 0 (``m / inf``, not ``0 / 0``)."""
        norm = self.weight_norm()
        scale = self.lora_magnitude / norm.masked_fill(norm == 0, float("inf"))
        return scale.new_ones(self.out_features).index_copy(0, self.rows, scale) if self.chunks else scale

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)  # W0 x + b
        if self.merged or self.disabled:
            return out
        dropped = self.training and isinstance(self.dropout, nn.Dropout)
        x = self.dropout(x)
        bax = F.linear(F.linear(x, self.lora_A), self.full_B())  # B A x
        bias = 0 if self.base.bias is None else self.base.bias
        w0x = F.linear(x, self.out_in(self.base.weight)) if dropped else out - bias  # W0 x (of the dropped-out x)
        scale = self.scale()
        return out + ((scale - 1) * w0x + scale * bax * self.scaling)  # b + (m/||V||) (W0 x + s B A x)

    @torch.no_grad()
    def full_magnitude(self) -> Tensor:
        """m for every output, as peft's files hold it: on outputs not adapted (a q-and-v layer's k rows) W0's own
        row norm, which peft's DoRA turns into a scale of 1."""
        if not self.chunks:
            return self.lora_magnitude.detach().clone()
        norms = torch.linalg.norm(self.out_in(self.unmerged_weight()), dim=1)  # k rows: W0's, as B is zero there
        return norms.index_copy(0, self.rows, self.lora_magnitude.detach())

    def per_output(self, scale: Tensor) -> Tensor:
        """``scale`` shaped to multiply the base weight's output axis."""
        return scale[None, :] if self.fan_in_fan_out else scale[:, None]

    @torch.no_grad()
    def merge(self) -> None:
        """``W = (m/||V||) (W0 + s B A)``: forward then costs what the base costs."""
        if not self.merged:
            self.merged_scale = self.scale()
            zero = self.merged_scale == 0  # rows merged to zero: kept, as division cannot bring them back
            self.zero_rows = self.out_in(self.base.weight)[zero].clone()
            self.base.weight.copy_((self.base.weight + self.delta_weight()) * self.per_output(self.merged_scale))
            self.merged = True

    def unmerged_weight(self) -> Tensor:
        """``W0 = W / (m/||V||) - s B A`` once merged (rows merged to zero come back from a copy)."""
        if not self.merged:
            return self.base.weight
        zero = self.merged_scale == 0
        weight = self.base.weight / self.per_output(self.merged_scale.masked_fill(zero, 1)) - self.delta_weight()
        self.out_in(weight)[zero] = self.zero_rows  # a view: writes into weight
        return weight

    @torch.no_grad()
    def unmerge(self) -> None:
        super().unmerge()
        self.merged_scale = None
