"""A prefix on disk: ``prefix.safetensors`` (the folded prefix, one ``[P, n_layer * 2 * kv_dim]`` tensor) and
``prefix_config.json`` (P and the cache shape of the model it was trained for). :meth:`PrefixTuningModel.save` and
:meth:`PrefixTuningModel.load` use these two functions::

    write_prefix(folder, prefix, {"prefix_len": 10, "n_layer": 12, "n_kv_head": 12, "head_dim": 64})
    prefix_len, prefix = read_prefix(folder, (12, 12, 64))  # checked against the model's (layers, kv heads, head_dim)

A damaged or missing file, or a prefix for another model shape, is a one-line error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import write_folder
from .checks import positive_int

PREFIX_WEIGHTS = "prefix.safetensors"
PREFIX_CONFIG = "prefix_config.json"
SHAPE_KEYS = ("n_layer", "n_kv_head", "head_dim")  # the model's attention cache, as kv_shape gives it
SAVE_AGAIN = "Save the prefix again with model.fold().save(folder)."


def write_prefix(folder: str | Path, prefix: torch.Tensor, config: dict[str, int]) -> Path:
    """Save ``prefix`` and ``config`` in ``folder`` all at once (:func:`minipeft.atomic.write_folder`)."""

    def write(tmp: Path) -> None:
        save_file({"prefix": prefix.detach().contiguous().cpu()}, str(tmp / PREFIX_WEIGHTS))
        (tmp / PREFIX_CONFIG).write_text(json.dumps(config, indent=2))

    return write_folder(folder, (PREFIX_WEIGHTS, PREFIX_CONFIG), write)


def read_prefix(folder: str | Path, kv_shape: tuple[int, int, int]) -> tuple[int, torch.Tensor]:
    """``(prefix_len, prefix)`` saved in ``folder``, checked to fit a model whose cache is ``kv_shape``."""
    folder = Path(folder)
    saved, prefix = _read_files(folder)
    here = dict(zip(SHAPE_KEYS, kv_shape, strict=True))
    wrong = [f"{k}: saved {saved[k]}, model {v}" for k, v in here.items() if saved[k] != v]
    if wrong:
        raise ValueError(f"The prefix in {folder} was saved for another model shape ({'; '.join(wrong)}). "
                         f"Load it into the base model it was trained on.")
    shape = (saved["prefix_len"], saved["n_layer"] * 2 * saved["n_kv_head"] * saved["head_dim"])
    if tuple(prefix.shape) != shape:
        raise ValueError(f"{folder / PREFIX_WEIGHTS} holds a prefix of shape {list(prefix.shape)}, but "
                         f"{PREFIX_CONFIG} beside it describes {list(shape)}: the two files come from different "
                         f"saves. {SAVE_AGAIN}")
    return saved["prefix_len"], prefix


def _read_files(folder: Path) -> tuple[dict, torch.Tensor]:
    """The saved configuration and prefix tensor, or a one-line error naming the file that is missing or damaged."""
    config, weights = folder / PREFIX_CONFIG, folder / PREFIX_WEIGHTS
    for path in (config, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {folder} holds no saved prefix. Save one there with "
                                    f"model.fold().save(folder).")
    try:
        saved = json.loads(config.read_text())
    except ValueError as err:  # invalid JSON or text
        raise ValueError(f"{config} is not valid JSON ({err}): the file is damaged. {SAVE_AGAIN}") from None
    keys = ("prefix_len", *SHAPE_KEYS)
    if not isinstance(saved, dict):
        raise ValueError(f"{config} holds {type(saved).__name__}, not a prefix's configuration. {SAVE_AGAIN}")
    for key in keys:
        positive_int(saved.get(key), f"{config} does not describe a prefix: {key}", f"It needs the positive "
                     f"integers {', '.join(keys)}. {SAVE_AGAIN}")
    try:
        prefix = load_file(str(weights))["prefix"]
    except Exception as err:  # safetensors' own error for a damaged file, or no "prefix" tensor in it
        reason = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{weights} is not a readable saved prefix ({type(err).__name__}: {reason}): the file is "
                         f"damaged or truncated. {SAVE_AGAIN}") from None
    return saved, prefix
