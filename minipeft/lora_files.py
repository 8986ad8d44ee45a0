"""LoRA adapters on disk, in peft's file layout: ``save_lora`` and ``load_lora``.

A folder holds ``adapter_model.safetensors`` (every ``A`` and ``B``, and DoRA's magnitudes, keyed as peft keys them)
and ``adapter_config.json`` (peft's ``LoraConfig``), so ``peft.PeftModel.from_pretrained(base, folder)`` loads what
``save_lora`` writes and ``load_lora`` loads what peft writes: LoRA, rsLoRA, DoRA and PiSSA. Any other peft option
that changes what an adapter computes (rank patterns, ``lora_bias``, aLoRA, OLoRA, ...) is refused by name, never
loaded wrongly. A PiSSA adapter is saved as peft saves it (loading re-runs the SVD on the original base model, as
peft does), or with ``convert_pissa=True`` as a plain LoRA of rank ``2r`` for the original W0.
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
from .checks import flag, positive_int
from .dora import DoRALayer
from .lora import QV_CHUNKS, LoRALayer, apply_lora, in_out_features, lora_layers
from .pissa import is_pissa, pissa_as_lora, pissa_delta
from .quant import Linear4bit

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"  # peft's file names
MINIPEFT_FILE = "minipeft_adapter.json"  # ours: r, alpha, qv_only and the base model it was trained on
PEFT_PREFIX = "base_model.model."  # peft's key prefix: base_model.model.<module name>.lora_A.weight
MAGNITUDE = "lora_magnitude_vector"  # peft's key for DoRA's m: base_model.model.<module name>.lora_magnitude_vector
SAVE_AGAIN = "Save the adapter again with save_lora(model, folder)."

# adapter_config.json: the LoraConfig fields load_lora reads or that do not change what a trained adapter computes,
# with the values it accepts (None: any). Every other field must keep peft's default (empty, or DEFAULTS below).
SUPPORTED = {
    "peft_type": ("LORA",), "bias": ("none",), "init_lora_weights": (True, False, "gaussian", "pissa"),
    "use_rslora": (True, False), "use_dora": (True, False),
    **dict.fromkeys(("r", "lora_alpha", "lora_dropout", "target_modules", "fan_in_fan_out", "task_type",
                     "inference_mode", "base_model_name_or_path", "revision", "peft_version", "auto_mapping")),
}
DEFAULTS = {"megatron_core": "megatron.core", "qalora_group_size": 16}  # peft's defaults that are not empty
# How far the adapted weights' norm may move before load_lora calls the base another checkpoint: 0.1%, or 1% where
# the adapter was trained on, or is loaded onto, a 4-bit base (NF4's rounding moves a matrix's norm by about 0.2% on
# a 64 x 64 block of normal weights, 0.005% on a 576 x 576 one: tests/test_quant.py measures it on the tiny models).
NORM_TOLERANCE, NF4_NORM_TOLERANCE = 1e-3, 1e-2


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


def _original_weight(layer: LoRALayer) -> Tensor:
    """The base model's W0 under ``layer``: without the merged update, and with what PiSSA took out put back."""
    weight = layer.unmerged_weight()
    return weight + pissa_delta(layer) if is_pissa(layer) else weight


def _setting(layer: LoRALayer) -> tuple:
    """What save_lora writes once for all layers: r, alpha, qv_only, use_rslora, use_dora, PiSSA."""
    return (layer.r, layer.alpha, layer.chunks is not None, layer.use_rslora, isinstance(layer, DoRALayer),
            is_pissa(layer))


def save_lora(model: nn.Module, folder: str | Path, convert_pissa: bool = False) -> Path:
    """Save only the adapter: ``adapter_model.safetensors`` + ``adapter_config.json`` (peft loads both) and
    ``minipeft_adapter.json`` (r, alpha, qv_only, the variant and the base model's identity: its configuration and
    the norm of the adapted weights, checked by :func:`load_lora`).

    peft has no q/v split of a fused layer, so a ``qv_only`` layer is stored as the equivalent LoRA of rank
    ``2r`` on the whole ``c_attn`` with zero blocks for k (same outputs; DoRA's magnitudes of the k rows are their
    norms, a scale of 1); :func:`load_lora` turns it back. ``convert_pissa=True`` stores a PiSSA adapter as the plain
    LoRA ``[A ; A0], [B | -B0]`` of rank ``2r`` for the original W0 (:func:`minipeft.pissa.pissa_as_lora`).
    The files go to a folder beside ``folder`` that then takes its place (:func:`minipeft.atomic.write_folder`):
    a save that fails or is killed half-way leaves the previous adapter intact.
    """
    flag(convert_pissa, "convert_pissa", "True saves a PiSSA adapter as a plain LoRA of rank 2r for the original W0.")
    layers = lora_layers(model)
    if not layers:
        raise ValueError("This model has no LoRA layers to save. Call apply_lora(model, ...) first.")
    first = next(iter(layers.values()))
    if any(_setting(layer) != _setting(first) for layer in layers.values()):
        raise ValueError("save_lora expects one r, alpha, qv_only, use_rslora, use_dora and init_lora_weights "
                         "setting for all layers.")
    if convert_pissa and not is_pissa(first):
        raise ValueError("convert_pissa=True converts a PiSSA adapter, but this model's adapter was not initialised "
                         "with init_lora_weights='pissa'. Save it with convert_pissa=False.")
    if is_pissa(first) and first.chunks and not convert_pissa:
        raise ValueError("This PiSSA adapter took the SVD of the q and v parts of c_attn separately; peft re-runs "
                         "PiSSA's SVD when it loads an adapter, of the whole c_attn, so it would load these files "
                         "wrongly. Save it as a plain LoRA for the original weights: save_lora(model, folder, "
                         "convert_pissa=True).")
    convert = is_pissa(first) and convert_pissa
    groups = sum(first.chunks) if first.chunks else 1
    r, alpha = first.r, first.alpha  # per adapted part; converted PiSSA: 2r, and alpha that keeps the scaling
    weights = {}
    for name, layer in layers.items():
        A, B = layer.lora_A.detach(), layer.full_B().detach()
        if convert:
            A, B, r, alpha = pissa_as_lora(layer)
            B = layer.full_B(B)
        weights[f"{PEFT_PREFIX}{name}.lora_A.weight"] = A.contiguous().cpu()
        weights[f"{PEFT_PREFIX}{name}.lora_B.weight"] = B.contiguous().cpu()
        if isinstance(layer, DoRALayer):
            weights[f"{PEFT_PREFIX}{name}.{MAGNITUDE}"] = layer.full_magnitude().contiguous().cpu()
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    init = "pissa" if is_pissa(first) and not convert else True
    peft_config = {  # peft's LoraConfig fields; a qv_only adapter is stored as rank groups*r with the same scaling
        "peft_type": "LORA", "r": r * groups, "lora_alpha": alpha * (groups ** 0.5 if first.use_rslora else groups),
        "lora_dropout": dropout,
        "target_modules": sorted(layers), "fan_in_fan_out": first.fan_in_fan_out, "bias": "none",
        "use_rslora": first.use_rslora, "use_dora": isinstance(first, DoRALayer), "init_lora_weights": init,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "name_or_path", None) or None,
        "task_type": None, "inference_mode": True,
    }
    ours = {"r": r, "alpha": alpha, "dropout": dropout, "qv_only": first.chunks is not None,
            "use_rslora": first.use_rslora, "use_dora": isinstance(first, DoRALayer), "init_lora_weights": init,
            "base_model": _identity(model),
            "base_weights_norm": _weights_norm(_original_weight(layer) for layer in layers.values()),
            "base_4bit": any(isinstance(layer.base, Linear4bit) for layer in layers.values()),
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
    use_dora = config.get("use_dora", False)
    kinds = (".lora_A.weight", ".lora_B.weight") + ((f".{MAGNITUDE}",) if use_dora else ())
    other = [k for k in weights if not k.endswith(kinds)]
    if other:
        raise ValueError(f"{folder / WEIGHTS_FILE} holds {other[0]!r}, a tensor minipeft's LoRA does not implement "
                         f"(only lora_A and lora_B weights, and {MAGNITUDE} for DoRA). Load it with "
                         f"peft.PeftModel.from_pretrained instead.")
    if ours.get("base_model", {}) != {k: v for k, v in _identity(model).items() if k in ours.get("base_model", {})}:
        raise ValueError(f"This adapter was saved for base model {ours['base_model']}, but this model is "
                         f"{_identity(model)}. Load it onto the base model it was trained on.")
    r, alpha = ours.get("r", config.get("r")), ours.get("alpha", config.get("lora_alpha"))
    qv_only = ours.get("qv_only", False)
    positive_int(r, f"The rank r of the adapter in {folder}", SAVE_AGAIN)
    names = sorted({k.rsplit(".lora_", 1)[0] for k in weights})
    modules = dict(model.named_modules())
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear | Conv1D | Linear4bit)]
    if missing:
        raise ValueError(f"This adapter adapts {missing}, which this model does not have as nn.Linear/Conv1D "
                         f"(or 4-bit Linear4bit) layers. Load it onto the base model it was trained on.")
    for n in names:  # stored A is (groups*r, in) and B is (out, groups*r), whatever the base layer's layout
        d_in, d_out = in_out_features(modules[n])
        rank = r * (sum(QV_CHUNKS) if qv_only and n.split(".")[-1] == "c_attn" else 1)
        A, B = weights.get(f"{n}.lora_A.weight"), weights.get(f"{n}.lora_B.weight")
        m = weights.get(f"{n}.{MAGNITUDE}") if use_dora else torch.empty(d_out)
        if A is None or B is None or m is None or (A.shape, B.shape, m.shape) != ((rank, d_in), (d_out, rank),
                                                                                 (d_out,)):
            got = "missing" if A is None or B is None or m is None else \
                f"A {tuple(A.shape)}, B {tuple(B.shape)}" + (f", {MAGNITUDE} {tuple(m.shape)}" if use_dora else "")
            want = f"A {(rank, d_in)}, B {(d_out, rank)}" + (f", {MAGNITUDE} {(d_out,)}" if use_dora else "")
            raise ValueError(f"Adapter weights for {n!r} ({got}) do not fit this model's layer: expected {want}. "
                             f"Load it onto the base model it was trained on.")
    norm, expected = _weights_norm(modules[n].weight for n in names), ours.get("base_weights_norm", 0.0)
    nf4 = ours.get("base_4bit", False) or any(isinstance(modules[n], Linear4bit) for n in names)
    tolerance = NF4_NORM_TOLERANCE if nf4 else NORM_TOLERANCE  # a 4-bit base: compared dequantised, within NF4
    if expected and abs(norm - expected) > tolerance * expected:
        within = f" (within {tolerance:.0%}, as one side is 4-bit NF4)" if nf4 else ""
        raise ValueError(f"This adapter was trained on base weights of norm {expected:.4f}, but this model's are "
                         f"{norm:.4f}{within}: same architecture, other weights (another checkpoint?). Load it onto "
                         f"the base model it was trained on.")
    apply_lora(model, targets=names, r=r, alpha=alpha, dropout=ours.get("dropout", config.get("lora_dropout", 0.0)),
               qv_only=qv_only, use_rslora=config.get("use_rslora", False), use_dora=use_dora,
               init_lora_weights="pissa" if config.get("init_lora_weights") == "pissa" else True)
    with torch.no_grad():  # PiSSA's SVD above made the residual; the trained A and B replace its A0 and B0
        for name, layer in lora_layers(model).items():
            layer.lora_A.copy_(weights[f"{name}.lora_A.weight"])
            layer.lora_B.copy_(_compact_B(layer, weights[f"{name}.lora_B.weight"]))
            if use_dora:
                magnitude = weights[f"{name}.{MAGNITUDE}"]
                layer.lora_magnitude.copy_(magnitude[layer.rows.cpu()] if layer.chunks else magnitude)
    return model


def _compact_B(layer: LoRALayer, full_B: Tensor) -> Tensor:
    """Inverse of :meth:`LoRALayer.full_B`: the per-chunk blocks of a stored ``out x (groups*r)`` B."""
    if not layer.chunks:
        return full_B
    rows = full_B[layer.rows.cpu()]  # (groups*chunk, groups*r), block diagonal
    return torch.cat([rows[g * layer.chunk_size:(g + 1) * layer.chunk_size, g * layer.r:(g + 1) * layer.r]
                      for g in range(sum(layer.chunks))])
