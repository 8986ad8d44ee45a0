"""LoRA (Hu et al., 2021) from scratch: a frozen weight plus a trainable low-rank update.

A wrapped layer computes ``h = W0 x + (alpha / r) * B (A x)`` where ``W0`` is the frozen base layer
(``nn.Linear`` or GPT-2's ``Conv1D``), ``A`` is ``r x in`` (Kaiming-uniform) and ``B`` is ``out x r``
(zeros, so a fresh adapter changes nothing). Typical use::

    apply_lora(model, targets=["c_attn"], r=4, alpha=32, qv_only=True)  # the paper's E2E setting on GPT-2
    apply_lora(llama, targets=["q_proj", "v_proj"], r=4, alpha=32)       # the same on a Llama-family model
    print_trainable_parameters(model)        # trainable params: ... || all params: ... || trainable%: ...
    ...train...
    save_lora(model, "my-adapter")          # adapter_model.safetensors + adapter_config.json
    merge_lora(model)                        # fold (alpha/r) B A into W0: inference costs what the base costs

Saved adapters use peft's file layout, so ``peft.PeftModel.from_pretrained(base, "my-adapter")`` loads
them, and ``load_lora`` loads adapters saved by peft (plain LoRA: no DoRA, rsLoRA or rank patterns).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

__all__ = [
    "LoRALayer", "apply_lora", "count_parameters", "disable_lora", "load_lora", "lora_layers", "merge_lora",
    "print_trainable_parameters", "save_lora", "unload_lora", "unmerge_lora",
]

QV_CHUNKS = (True, False, True)  # GPT-2's fused c_attn outputs [q | k | v]: adapt q and v, leave k alone
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"  # peft's file names
MINIPEFT_FILE = "minipeft_adapter.json"  # ours: r, alpha, qv_only and the base model it was trained on
PEFT_PREFIX = "base_model.model."  # peft's key prefix: base_model.model.<module name>.lora_A.weight


def _in_out(layer: nn.Linear | Conv1D) -> tuple[int, int]:
    """(in, out) features: Conv1D stores its weight as (in, out), nn.Linear as (out, in)."""
    shape = tuple(layer.weight.shape)
    return shape if isinstance(layer, Conv1D) else shape[::-1]


class LoRALayer(nn.Module):
    """A frozen ``nn.Linear`` or ``Conv1D`` plus a trainable low-rank update ``(alpha / r) * B @ A``.

    ``chunks`` splits the output into equal parts and adapts only the ``True`` ones, each with its own
    rank-``r`` pair (loralib's ``MergedLinear``); ``(True, False, True)`` on GPT-2's ``c_attn`` is q-and-v LoRA.
    """

    def __init__(self, base: nn.Linear | Conv1D, r: int, alpha: float, dropout: float = 0.0,
                 chunks: Sequence[bool] | None = None):
        super().__init__()
        _check_hyperparameters(r, alpha, dropout)
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)  # Conv1D stores W as (in, out), the transpose of Linear
        self.in_features, self.out_features = _in_out(base)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.chunks = tuple(chunks) if chunks is not None else None
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

    def full_B(self) -> Tensor:
        """``B`` as one ``out x (groups * r)`` matrix: each adapted chunk reads only its own ``r`` rows of ``A x``."""
        if not self.chunks:
            return self.lora_B
        blocks = torch.block_diag(*self.lora_B.split(self.chunk_size))  # (groups*chunk, groups*r)
        return blocks.new_zeros(self.out_features, blocks.shape[1]).index_copy(0, self.rows, blocks)

    def delta_weight(self) -> Tensor:
        """``(alpha / r) * B @ A`` in the base layer's own layout (transposed for ``Conv1D``)."""
        delta = (self.full_B() @ self.lora_A) * self.scaling  # (out, in), like nn.Linear.weight
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)  # h = W0 x (+ bias)
        if self.merged or self.disabled:
            return out
        return out + F.linear(F.linear(self.dropout(x), self.lora_A), self.full_B()) * self.scaling  # + (alpha/r) B A x

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
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        qv = f", chunks={self.chunks}" if self.chunks else ""
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}{qv}, merged={self.merged}"


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Every LoRA layer of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALayer)}


def _check_hyperparameters(r: int, alpha: float, dropout: float) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got r={r!r}. Try r=4 or r=8.")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0, got alpha={alpha!r}; scaling is alpha / r. Try alpha=2*r.")
    if not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1), got dropout={dropout!r}. Use 0.0 (none) or 0.1 (the paper).")


def _find_targets(model: nn.Module, targets: Sequence[str], qv_only: bool) -> dict[str, Sequence[bool] | None]:
    """Names of the modules to wrap (matched by name suffix) and their chunks; raises before changing anything."""
    if lora_layers(model):
        raise ValueError("This model already has LoRA layers: wrapping twice would stack adapters. Call "
                         "unload_lora(model) first, or start again from a fresh base model.")
    found: dict[str, Sequence[bool] | None] = {}
    for name, module in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if not isinstance(module, nn.Linear | Conv1D):
            raise TypeError(f"Target {name!r} is a {type(module).__name__}; LoRA here wraps nn.Linear and "
                            f"transformers' Conv1D only. Choose targets such as 'c_attn', 'c_proj', 'c_fc'.")
        found[name] = QV_CHUNKS if qv_only and name.split(".")[-1] == "c_attn" else None
    if not found:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear | Conv1D)})
        raise ValueError(f"No module of the model matches targets {list(targets)}. Layers LoRA can wrap here: "
                         f"{linear}.")
    if qv_only:
        fused = [n for n, chunks in found.items() if chunks]
        if not fused:
            raise ValueError("qv_only=True adapts GPT-2's fused q|k|v projection, but no target is named 'c_attn'. "
                             "Add 'c_attn' to targets, or set qv_only=False.")
        odd = [n for n in fused if _in_out(model.get_submodule(n))[1] % 3]
        if odd:
            raise ValueError(f"qv_only=True needs c_attn's output to split in three equal parts (q, k, v); "
                             f"{odd[0]!r} has {_in_out(model.get_submodule(odd[0]))[1]} outputs.")
    return found


def apply_lora(model: nn.Module, targets: str | Sequence[str] = ("c_attn",), r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0, qv_only: bool = False) -> nn.Module:
    """Wrap the modules named ``targets`` (by name suffix) in :class:`LoRALayer` and freeze everything else.

    ``qv_only=True`` adapts only the query and value parts of GPT-2's fused ``c_attn`` (the paper's setting).
    Returns ``model``, changed in place. Bad input raises before anything is changed.
    """
    _check_hyperparameters(r, alpha, dropout)
    targets = [targets] if isinstance(targets, str) else list(targets)
    found = _find_targets(model, targets, qv_only)
    model.requires_grad_(False)
    for name, chunks in found.items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, LoRALayer(getattr(owner, child), r, alpha, dropout, chunks))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer's update into its frozen weight (see :meth:`LoRALayer.merge`)."""
    for layer in lora_layers(model).values():
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
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def unload_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put the base layers back in place of the LoRA layers (merged in first if ``merge``): a plain model again."""
    for name, layer in lora_layers(model).items():
        layer.merge() if merge else layer.unmerge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; shared (tied) weights count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def print_trainable_parameters(model: nn.Module) -> None:
    """Print the counts in peft's format: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


# ---- saving and loading: peft's file layout, plus a "minipeft" section naming the base model ----------------

# Standard config names (GPT2Config maps them to n_layer, n_embd, n_head, n_positions), so Llama configs answer too.
_IDENTITY_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                  "vocab_size", "max_position_embeddings")


def _identity(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    return {k: getattr(config, k) for k in _IDENTITY_KEYS if hasattr(config, k)}


@torch.no_grad()
def _weights_norm(weights: Iterable[Tensor]) -> float:
    """L2 norm of the adapted base weights: tells two checkpoints of the same architecture apart."""
    return math.sqrt(sum(w.double().square().sum().item() for w in weights))


def save_lora(model: nn.Module, folder: str | Path) -> Path:
    """Save only the adapter: ``adapter_model.safetensors`` + ``adapter_config.json`` (peft loads both) and
    ``minipeft_adapter.json`` (r, alpha, qv_only and the base model's identity: its configuration and the norm
    of the adapted weights, checked by :func:`load_lora`).

    peft has no q/v split of a fused layer, so a ``qv_only`` layer is stored as the equivalent LoRA of rank
    ``2r`` on the whole ``c_attn`` with zero blocks for k (same outputs); :func:`load_lora` turns it back.
    """
    layers = lora_layers(model)
    if not layers:
        raise ValueError("This model has no LoRA layers to save. Call apply_lora(model, ...) first.")
    first = next(iter(layers.values()))
    groups = sum(first.chunks) if first.chunks else 1
    weights = {}
    for name, layer in layers.items():
        if (layer.r, layer.alpha, layer.chunks is not None) != (first.r, first.alpha, first.chunks is not None):
            raise ValueError("save_lora expects one r, alpha and qv_only setting for all layers.")
        weights[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().contiguous().cpu()
        weights[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.full_B().detach().contiguous().cpu()
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    peft_config = {  # peft's LoraConfig fields; a qv_only adapter is stored as rank groups*r with the same alpha/r
        "peft_type": "LORA", "r": first.r * groups, "lora_alpha": first.alpha * groups, "lora_dropout": dropout,
        "target_modules": sorted(layers), "fan_in_fan_out": first.fan_in_fan_out, "bias": "none",
        "base_model_name_or_path": getattr(getattr(model, "config", None), "name_or_path", None) or None,
        "task_type": None, "inference_mode": True,
    }
    ours = {"r": first.r, "alpha": first.alpha, "dropout": dropout, "qv_only": first.chunks is not None,
            "base_model": _identity(model),
            "base_weights_norm": _weights_norm(layer.base.weight - layer.delta_weight() if layer.merged
                                               else layer.base.weight for layer in layers.values()),
            "shapes": {name: [layer.in_features, layer.out_features] for name, layer in layers.items()}}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(peft_config, indent=2) + "\n")
    (folder / MINIPEFT_FILE).write_text(json.dumps(ours, indent=2) + "\n")
    return folder


def _plain_lora_config(config: dict) -> None:
    """Refuse peft options this LoRA does not implement, instead of loading them wrongly."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"This adapter is {config['peft_type']}, not LoRA; load_lora reads LoRA adapters only.")
    unsupported = {k: config.get(k) for k in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern",
                                             "modules_to_save", "layers_to_transform") if config.get(k)}
    if config.get("bias", "none") != "none":
        unsupported["bias"] = config["bias"]
    if unsupported:
        raise ValueError(f"This peft adapter uses options minipeft's LoRA does not implement: {unsupported}. "
                         f"Load it with peft.PeftModel.from_pretrained instead.")


def load_lora(model: nn.Module, folder: str | Path) -> nn.Module:
    """Wrap a fresh base ``model`` with the adapter saved in ``folder`` (by :func:`save_lora` or by peft).

    Checks the base model and every shape first; on any mismatch raises and leaves ``model`` unchanged.
    """
    folder = Path(folder)
    if lora_layers(model):
        raise ValueError("This model already has LoRA layers. Load the adapter onto a fresh base model, or call "
                         "unload_lora(model) first.")
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE} and {WEIGHTS_FILE}; save one with save_lora().")
    config = json.loads((folder / CONFIG_FILE).read_text())
    _plain_lora_config(config)
    stored = load_file(folder / WEIGHTS_FILE)
    weights = {k.removeprefix(PEFT_PREFIX).replace(".default.", "."): v for k, v in stored.items()}
    ours = json.loads((folder / MINIPEFT_FILE).read_text()) if (folder / MINIPEFT_FILE).is_file() else {}
    if ours.get("base_model", {}) != {k: v for k, v in _identity(model).items() if k in ours.get("base_model", {})}:
        raise ValueError(f"This adapter was saved for base model {ours['base_model']}, but this model is "
                         f"{_identity(model)}. Load it onto the base model it was trained on.")
    r, alpha, qv_only = ours.get("r", config["r"]), ours.get("alpha", config["lora_alpha"]), ours.get("qv_only", False)
    names = sorted({k.rsplit(".lora_", 1)[0] for k in weights})
    modules = dict(model.named_modules())
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear | Conv1D)]
    if missing:
        raise ValueError(f"This adapter adapts {missing}, which this model does not have as nn.Linear/Conv1D "
                         f"layers. Load it onto the base model it was trained on.")
    for n in names:  # stored A is (groups*r, in) and B is (out, groups*r), whatever the base layer's layout
        d_in, d_out = _in_out(modules[n])
        rank = r * (sum(QV_CHUNKS) if qv_only and n.split(".")[-1] == "c_attn" else 1)
        A, B = weights.get(f"{n}.lora_A.weight"), weights.get(f"{n}.lora_B.weight")
        if A is None or B is None or A.shape != (rank, d_in) or B.shape != (d_out, rank):
            got = "missing" if A is None or B is None else f"A {tuple(A.shape)}, B {tuple(B.shape)}"
            raise ValueError(f"Adapter weights for {n!r} ({got}) do not fit this model's layer: expected A "
                             f"{(rank, d_in)}, B {(d_out, rank)}. Load it onto the base model it was trained on.")
    norm, expected = _weights_norm(modules[n].weight for n in names), ours.get("base_weights_norm", 0.0)
    if expected and abs(norm - expected) > 1e-3 * expected:
        raise ValueError(f"This adapter was trained on base weights of norm {expected:.4f}, but this model's are "
                         f"{norm:.4f}: same architecture, other weights (another checkpoint?). Load it onto the "
                         f"base model it was trained on.")
    apply_lora(model, targets=names, r=r, alpha=alpha, dropout=ours.get("dropout", config.get("lora_dropout", 0.0)),
               qv_only=qv_only)
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            layer.lora_A.copy_(weights[f"{name}.lora_A.weight"])
            layer.lora_B.copy_(_compact_B(layer, weights[f"{name}.lora_B.weight"]))
    return model


def _compact_B(layer: LoRALayer, full_B: Tensor) -> Tensor:
    """Inverse of :meth:`LoRALayer.full_B`: the per-chunk blocks of a stored ``out x (groups*r)`` B."""
    if not layer.chunks:
        return full_B
    rows = full_B[layer.rows.cpu()]  # (groups*chunk, groups*r), block diagonal
    return torch.cat([rows[g * layer.chunk_size:(g + 1) * layer.chunk_size, g * layer.r:(g + 1) * layer.r]
                      for g in range(sum(layer.chunks))])
