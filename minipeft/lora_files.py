"""LoRA adapters on disk, in peft's file layout: ``save_lora`` and ``load_lora``.

A folder holds ``adapter_model.safetensors`` (every ``A`` and ``B``, keyed as peft keys them) and
``adapter_config.json`` (peft's ``LoraConfig``), so ``peft.PeftModel.from_pretrained(base, folder)`` loads what
``save_lora`` writes and ``load_lora`` loads what peft writes: plain LoRA only. Any peft option that changes what an
adapter computes (DoRA, rsLoRA, rank patterns, ``lora_bias``, aLoRA, ...) is refused by name, never loaded wrongly.
A third file, ``minipeft_adapter.json``, names the base model, which ``load_lora`` checks before changing anything::

    save_lora(model, "my-adapter")
    model = load_lora(fresh_base, "my-adapter")
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from .atomic import write_folder
from .checks import positive_int
from .lora import QV_CHUNKS, LoRALayer, apply_lora, in_out_features, lora_layers

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"  # peft's file names
MINIPEFT_FILE = "minipeft_adapter.json"  # ours: r, alpha, qv_only and the base model it was trained on
PEFT_PREFIX = "base_model.model."  # peft's key prefix: base_model.model.<module name>.lora_A.weight
SAVE_AGAIN = "Save the adapter again with save_lora(model, folder)."

# adapter_config.json: the LoraConfig fields load_lora reads or that do not change what a trained adapter computes,
# with the values it accepts (None: any). Every other field must keep peft's default (empty, or DEFAULTS below).
SUPPORTED = {
    "peft_type": ("LORA",), "bias": ("none",), "init_lora_weights": (True, False, "gaussian"),
    **dict.fromkeys(("r", "lora_alpha", "lora_dropout", "target_modules", "fan_in_fan_out", "task_type",
                     "inference_mode", "base_model_name_or_path", "revision", "peft_version", "auto_mapping")),
}
DEFAULTS = {"megatron_core": "megatron.core", "qalora_group_size": 16}  # peft's defaults that are not empty


# ---- reading files: a one-line error that names the file, never a parser's traceback -----------------------

def _read(path: Path, read: Callable[[Path], object]) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {path.parent} holds no LoRA adapter. Save one there with "
                                f"save_lora(model, folder) (or peft's save_pretrained).")
    try:
        return read(path)
    except Exception as err:  # json's and safetensors' own errors, each with a traceback of its own
        reason = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {reason}): the file is damaged or "
                         f"truncated. {SAVE_AGAIN}") from None


def _read_json(path: Path) -> dict:
    value = _read(path, lambda p: json.loads(p.read_text()))
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds {type(value).__name__}, not the JSON object a LoRA adapter's "
                         f"configuration is. {SAVE_AGAIN}")
    return value


def _implemented(key: str, value: object) -> bool:
    if key in SUPPORTED:
        return SUPPORTED[key] is None or value in SUPPORTED[key]
    return value == DEFAULTS[key] if key in DEFAULTS else value in (None, False, "", [], {})


def _refuse_unsupported(config: dict, path: Path) -> None:
    """Refuse every peft option this LoRA does not implement, naming it, instead of loading it wrongly."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path} describes a {config['peft_type']} adapter, not LoRA; load_lora reads LoRA "
                         f"adapters only. Load it with peft.PeftModel.from_pretrained instead.")
    unsupported = [f"{k}={v!r}" for k, v in config.items() if not _implemented(k, v)]
    if unsupported:
        raise ValueError(f"{path} uses {', '.join(unsupported)}, which minipeft's LoRA does not implement. Load it "
                         f"with peft.PeftModel.from_pretrained instead.")


# ---- saving --------------------------------------------------------------------------------------------------

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
    The files go to a folder beside ``folder`` that then takes its place (:func:`minipeft.atomic.write_folder`):
    a save that fails or is killed half-way leaves the previous adapter intact.
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

    def write(tmp: Path) -> None:
        save_file(weights, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(peft_config, indent=2) + "\n")
        (tmp / MINIPEFT_FILE).write_text(json.dumps(ours, indent=2) + "\n")

    return write_folder(folder, (WEIGHTS_FILE, CONFIG_FILE, MINIPEFT_FILE), write)


# ---- loading -------------------------------------------------------------------------------------------------

def load_lora(model: nn.Module, folder: str | Path) -> nn.Module:
    """Wrap a fresh base ``model`` with the adapter saved in ``folder`` (by :func:`save_lora` or by peft).

    Reads every file and checks the base model and every shape first; on any problem raises and leaves ``model``
    exactly as it was.
    """
    folder = Path(folder)
    if lora_layers(model):
        raise ValueError("This model already has LoRA layers. Load the adapter onto a fresh base model, or call "
                         "unload_lora(model) first.")
    config = _read_json(folder / CONFIG_FILE)
    _refuse_unsupported(config, folder / CONFIG_FILE)
    stored = _read(folder / WEIGHTS_FILE, load_file)
    ours = _read_json(folder / MINIPEFT_FILE) if (folder / MINIPEFT_FILE).is_file() else {}
    weights = {k.removeprefix(PEFT_PREFIX).replace(".default.", "."): v for k, v in stored.items()}
    other = [k for k in weights if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
    if other:
        raise ValueError(f"{folder / WEIGHTS_FILE} holds {other[0]!r}, a tensor minipeft's LoRA does not implement "
                         f"(only lora_A and lora_B weights). Load it with peft.PeftModel.from_pretrained instead.")
    if ours.get("base_model", {}) != {k: v for k, v in _identity(model).items() if k in ours.get("base_model", {})}:
        raise ValueError(f"This adapter was saved for base model {ours['base_model']}, but this model is "
                         f"{_identity(model)}. Load it onto the base model it was trained on.")
    r, alpha = ours.get("r", config.get("r")), ours.get("alpha", config.get("lora_alpha"))
    qv_only = ours.get("qv_only", False)
    positive_int(r, f"The rank r of the adapter in {folder}", SAVE_AGAIN)
    names = sorted({k.rsplit(".lora_", 1)[0] for k in weights})
    modules = dict(model.named_modules())
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear | Conv1D)]
    if missing:
        raise ValueError(f"This adapter adapts {missing}, which this model does not have as nn.Linear/Conv1D "
                         f"layers. Load it onto the base model it was trained on.")
    for n in names:  # stored A is (groups*r, in) and B is (out, groups*r), whatever the base layer's layout
        d_in, d_out = in_out_features(modules[n])
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
