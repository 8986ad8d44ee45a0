"""One base model, many tasks: LoRA adapters swapped at run time.

A LoRA adapter is only its ``A`` and ``B`` matrices (and DoRA's magnitudes), a few percent of the model. Keep one
frozen base model in memory, wrap it with LoRA layers once, and copy in the ``A``/``B`` of whichever task a request
is for::

    bank = AdapterBank(model)                 # model already wrapped by apply_lora
    bank.add("restaurants", "adapters/restaurants")   # folders written by save_lora
    bank.add("slots", "adapters/slots")
    bank.use("slots")                         # now the model is the slot-list model, exactly
    print(bank.active, bank.nbytes("slots"))

Swapping copies tensors into the existing layers (no new modules, no reloading of the base), so it
takes microseconds; the outputs are exactly those of a model loaded with that one adapter.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .lora import lora_layers, unload_lora
from .lora_files import load_lora
from .pissa import is_pissa

ADAPTER_KEYS = (".lora_A", ".lora_B", ".lora_magnitude")  # LoRA's A and B, DoRA's m: the whole adapter


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every LoRA ``A`` and ``B`` (and DoRA magnitude) of ``model``, keyed like ``state_dict``.

    A PiSSA model is refused: its adapter is only half of what it learned, the other half being the residual W0 it
    replaced the base weight by, which a swap of A and B would not bring along."""
    if any(is_pissa(layer) for layer in lora_layers(model).values()):
        raise ValueError("This model's adapter was initialised by PiSSA (init_lora_weights='pissa'), which replaced "
                         "W0 by a residual: swapping its A and B alone would pair them with another adapter's base. "
                         "Save it as a plain LoRA for the original weights (save_lora(model, folder, "
                         "convert_pissa=True)) and keep it out of an AdapterBank of rank-r adapters, or use "
                         "init_lora_weights=True for adapters you want to swap.")
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if any(key in k for key in ADAPTER_KEYS)}
    if not state:
        raise ValueError("This model has no LoRA layers. Call apply_lora(model, ...) or load_lora first.")
    return state


class AdapterBank:
    """Named LoRA adapters for one LoRA-wrapped model; :meth:`use` switches between them in place (DoRA's
    magnitudes with A and B; a PiSSA model is refused, see :func:`lora_state`)."""

    def __init__(self, model: nn.Module) -> None:
        if not lora_layers(model):
            raise ValueError("AdapterBank needs a model with LoRA layers (apply_lora or load_lora first).")
        lora_state(model)  # refuses a PiSSA model before the bank holds it
        self.model = model
        self.adapters: dict[str, dict[str, torch.Tensor]] = {}
        self.active: str | None = None

    def add(self, name: str, source: str | Path | nn.Module) -> None:
        """Register adapter ``name`` from a folder saved by :func:`save_lora` or from a trained LoRA model."""
        if isinstance(source, nn.Module):
            state = lora_state(source)
        else:  # load it onto a throwaway copy of nothing but shapes: the bank's own model's base layers
            scratch = unload_lora(copy.deepcopy(self.model), merge=False)
            state = lora_state(load_lora(scratch, source))
        mine = lora_state(self.model)
        if state.keys() != mine.keys() or any(state[k].shape != mine[k].shape for k in mine):
            raise ValueError(f"Adapter {name!r} has other LoRA layers or ranks than this model's (or is DoRA where "
                             f"the model is not, or the reverse). Every adapter in a bank must use the same targets, "
                             f"r and variant (train them with the same apply_lora call).")
        self.adapters[name] = state

    @torch.no_grad()
    def use(self, name: str) -> nn.Module:
        """Copy adapter ``name``'s ``A`` and ``B`` (and magnitudes) into the model's LoRA layers; returns it."""
        if name not in self.adapters:
            raise KeyError(f"No adapter {name!r} in the bank; known: {sorted(self.adapters)}.")
        if any(layer.merged for layer in lora_layers(self.model).values()):
            raise RuntimeError("The adapters are merged into the weights; call unmerge_lora(model) before swapping.")
        self.model.load_state_dict(self.adapters[name], strict=False)
        self.active = name
        return self.model

    def nbytes(self, name: str) -> int:
        """Bytes the adapter ``name`` occupies."""
        return sum(t.numel() * t.element_size() for t in self.adapters[name].values())
