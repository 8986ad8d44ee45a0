"""Profiles: the one knob that scales every notebook.

``MINIPEFT_PROFILE`` = ``ci`` | ``cpu`` | ``gpu`` picks a :class:`Profile`; when it is unset,
``gpu`` is chosen if CUDA is available, else ``cpu``. Every size a notebook uses (base model,
sequence length, batch size, steps, data sizes) is read from here, so the same cells run in all three.

Three more variables adjust the chosen profile, in :func:`get_profile`, so every notebook sees them:

- ``MINIPEFT_BASE_MODEL`` replaces ``base_model`` (notebooks 00, 01, 05-07): ``mini-gpt2``, ``smollm2-135m``,
  a Hub id such as ``gpt2``, or a local folder written by ``save_pretrained`` holding a GPT-2 or a
  Llama-family causal LM;
- ``MINIPEFT_GPT2_MODEL`` replaces ``gpt2_model`` (notebooks 02-04 build on GPT-2's own modules, so a local
  folder must hold a GPT-2);
- ``MINIPEFT_DRY_RUN=1`` keeps the model, batch size and sequence length and cuts every count (steps,
  evaluation batches, data, seeds, generation length) to the least that runs every cell (:func:`dry_run`).

Together they run the ``gpu`` profile on a CPU: ``make gpu-dry`` points both models at a stand-in for the Hub's
GPT-2 (GPT-2's exact shapes and tokenizer, random weights: ``python -m minipeft.standin gpt2 DIR``).
A dry run's numbers are not results: its profile says so in the line every notebook prints first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .families import model_family
from .paths import REPO_ROOT


class OneLineError:
    """Mixed into errors whose message already names the problem and its fix: IPython and Jupyter show such an
    error as that one line (their ``_render_traceback_`` hook) instead of a traceback; plain Python still
    prints the traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConfigurationError(OneLineError, ValueError):
    """A course setting is wrong (``MINIPEFT_PROFILE``, ``MINIPEFT_BASE_MODEL``, ``MINIPEFT_GPT2_MODEL``): the
    message names the variable and the fix."""


@dataclass(frozen=True)
class Profile:
    """Sizes for one kind of machine. Notebooks read these instead of hard-coding numbers."""

    name: str
    base_model: str  # the model notebooks 00, 01 and 05-07 fine-tune: "mini-gpt2", "smollm2-135m" or a Hub id
    gpt2_model: str  # the GPT-2 that notebooks 02-04 build the methods on, line by line
    seq_len: int  # tokens per training example
    batch_size: int
    train_steps: int  # budget of a demonstration training run on base_model
    gpt2_steps: int  # the same budget for the build notebooks' runs on gpt2_model
    sweep_steps: int  # budget of each run in a sweep of many runs (notebook 06: settings x seeds)
    eval_every: int  # evaluate every N training steps
    eval_batches: int  # batches per evaluation
    n_train: int  # task examples for training
    n_val: int  # ... for validation
    n_test: int  # ... for the final test, in rows (pairs); the test split keeps whole MRs (data.first_rows)
    n_seeds: int  # repetitions of experiments that report a spread
    max_new_tokens: int  # generation length for samples
    description: str
    dry_run: bool = False  # MINIPEFT_DRY_RUN: shapes kept, counts cut to the minimum (numbers are not results)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", base_model="mini-gpt2", gpt2_model="mini-gpt2", seq_len=128, batch_size=8, train_steps=40,
        gpt2_steps=40, sweep_steps=40, eval_every=20, eval_batches=2, n_train=256, n_val=64, n_test=32, n_seeds=1,
        max_new_tokens=24, description="smoke run on 2 CPU cores: every notebook in well under 2 minutes",
    ),
    "cpu": Profile(
        name="cpu", base_model="smollm2-135m", gpt2_model="mini-gpt2", seq_len=128, batch_size=8, train_steps=120,
        gpt2_steps=600, sweep_steps=60, eval_every=40, eval_batches=4, n_train=2000, n_val=200, n_test=200,
        n_seeds=2, max_new_tokens=40,
        description="a laptop: real training runs of a real pretrained LM (SmolLM2-135M), offline",
    ),
    # n_train and n_test: every row of E2E's train and test splits (the test split: 4,693 rows, 630 MRs, as scored
    # in the papers); n_test counts rows, so 630 here would score only the first ~85 MRs.
    "gpu": Profile(
        name="gpu", base_model="gpt2", gpt2_model="gpt2", seq_len=128, batch_size=8, train_steps=2000,
        gpt2_steps=2000, sweep_steps=500, eval_every=200, eval_batches=25, n_train=42061, n_val=1000, n_test=4693,
        n_seeds=3, max_new_tokens=60, description="one GPU (a Colab T4 is enough): real GPT-2 (124M)",
    ),
}


def default_profile_name() -> str:
    """The profile used when ``MINIPEFT_PROFILE`` is unset: ``gpu`` with CUDA, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | Profile | None = None) -> Profile:
    """Return the profile ``name``, or the one chosen by ``MINIPEFT_PROFILE`` / the hardware, with the
    overrides of ``MINIPEFT_BASE_MODEL``, ``MINIPEFT_GPT2_MODEL`` and ``MINIPEFT_DRY_RUN`` applied."""
    if isinstance(name, Profile):
        return with_overrides(name)
    unset = name is None or (isinstance(name, str) and not name)
    chosen = (os.environ.get("MINIPEFT_PROFILE") or default_profile_name()) if unset else name
    key = chosen.strip().lower() if isinstance(chosen, str) else None  # 3, b"ci", ["ci"]: unknown, like "cpi"
    if key not in PROFILES:
        valid = ", ".join(PROFILES)
        raise ConfigurationError(
            f"Unknown minipeft profile {chosen!r}. Valid profiles: {valid}. "
            f"Set MINIPEFT_PROFILE to one of them (or unset it to choose from the hardware)."
        )
    return with_overrides(PROFILES[key])


BASE_MODEL_ENV = "MINIPEFT_BASE_MODEL"
GPT2_MODEL_ENV = "MINIPEFT_GPT2_MODEL"
DRY_RUN_ENV = "MINIPEFT_DRY_RUN"


def dry_run_requested() -> bool:
    """True when ``MINIPEFT_DRY_RUN`` is set to 1 (or true, yes)."""
    return os.environ.get(DRY_RUN_ENV, "").strip().lower() in ("1", "true", "yes")


def dry_run(profile: Profile) -> Profile:
    """``profile`` with its model, batch size and sequence length, and every count cut to the least that runs
    every cell: 2 steps, evaluation every step on 1 batch, 4 batches of training data and 2 of validation,
    16 test rows (a few MRs), 1 seed, 4 new tokens."""
    if profile.dry_run:
        return profile
    return replace(profile, train_steps=2, gpt2_steps=2, sweep_steps=2, eval_every=1, eval_batches=1,
                   n_train=4 * profile.batch_size, n_val=2 * profile.batch_size, n_test=16, n_seeds=1,
                   max_new_tokens=4, dry_run=True, description=dry_run_description(profile.description))


def dry_run_description(description: str) -> str:
    """What a dry run of a run described by ``description`` is (the first output line of every notebook says it)."""
    return (f"DRY RUN ({DRY_RUN_ENV}=1) of {description}, every count cut to the minimum: no number it prints is "
            "a result")


def with_overrides(profile: Profile) -> Profile:
    """``profile`` with ``MINIPEFT_BASE_MODEL``, ``MINIPEFT_GPT2_MODEL`` and ``MINIPEFT_DRY_RUN`` applied; a bad
    model variable raises :class:`ConfigurationError`."""
    base = os.environ.get(BASE_MODEL_ENV, "").strip()
    gpt2 = os.environ.get(GPT2_MODEL_ENV, "").strip()
    try:
        if base:
            profile = replace(profile, base_model=checked_model(BASE_MODEL_ENV, base))
        if gpt2:
            profile = replace(profile, gpt2_model=checked_model(GPT2_MODEL_ENV, gpt2, gpt2_only=True))
    except ValueError as err:  # checked_model's one line, which names the variable and the fix
        raise ConfigurationError(str(err)) from None
    return dry_run(profile) if dry_run_requested() else profile


def model_folder(name: str) -> Path | None:
    """The folder ``name`` stands for, or None for a model's name (``mini-gpt2``, a Hub id such as
    ``openai-community/gpt2``, which has at most one slash). A folder exists, from the current folder or, for a
    relative path set at the repository root and read in a kernel running in ``notebooks/``, from the repository
    root; or it is written as a path (``/x``, ``./x``, ``~/x``, ``a/b/c``)."""
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.is_dir() and (REPO_ROOT / path).is_dir():
        return REPO_ROOT / path
    if path.is_dir() or name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return path
    return None


def checked_model(env: str, name: str, gpt2_only: bool = False) -> str:
    """``name`` as given in the variable ``env``; a folder (:func:`model_folder`) must exist and hold a model of a
    family the course covers (:func:`minipeft.families.model_family`; a GPT-2 if ``gpt2_only``), and comes back as
    its full path.

    Raises a one-line ``ValueError`` naming the variable otherwise. Names (``mini-gpt2``, ``gpt2``, ...) pass
    unchecked here: the loader resolves them. ``MINIPEFT_GPT2_MODEL`` refuses ``smollm2-135m`` (not a GPT-2).
    """
    fix = "Point it at a folder written by save_pretrained (or `python -m minipeft.standin gpt2 DIR`), or unset it."
    path = model_folder(name)
    if path is None:
        if gpt2_only and name == "smollm2-135m":
            raise ValueError(f"{env}={name}: notebooks 02-04 build on GPT-2's own modules, and SmolLM2 is a Llama-"
                             f"family model. Use mini-gpt2, gpt2 or a GPT-2 folder, or unset it.")
        return name
    if not path.is_dir():
        raise ValueError(f"{env}={name}: no such directory. {fix}")
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"{env}={name}: this directory holds no causal LM that from_pretrained can read "
                         f"(no config.json). {fix}")
    try:
        saved = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{env}={name}: its config.json cannot be read ({type(err).__name__}). {fix}") from err
    family = model_family(saved if isinstance(saved, dict) else {}, f"{env}={name}: the model in this directory", fix)
    if gpt2_only and family != "gpt2":
        raise ValueError(f"{env}={name}: this directory holds a {family!r} model, not a GPT-2 (model_type gpt2). "
                         f"{fix}")
    return str(path.absolute())


def get_device(profile: Profile | None = None) -> torch.device:
    """CUDA for the ``gpu`` profile when present, else CPU (``ci``/``cpu`` always run on CPU)."""
    profile = get_profile(profile)
    return torch.device("cuda" if profile.name == "gpu" and torch.cuda.is_available() else "cpu")
