"""Profiles: the one knob that scales every notebook.

``MINIPEFT_PROFILE`` = ``ci`` | ``cpu`` | ``gpu`` picks a :class:`Profile`; when it is unset,
``gpu`` is chosen if CUDA is available, else ``cpu``. Every size a notebook uses (base model,
sequence length, batch size, steps, data sizes) is read from here, so the same cells run in all three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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
    n_test: int  # ... for the final test
    n_seeds: int  # repetitions of experiments that report a spread
    max_new_tokens: int  # generation length for samples
    description: str


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", base_model="mini-gpt2", gpt2_model="mini-gpt2", seq_len=128, batch_size=8, train_steps=40,
        gpt2_steps=40, sweep_steps=40, eval_every=20, eval_batches=2, n_train=256, n_val=64, n_test=32, n_seeds=1,
        max_new_tokens=24, description="smoke run on 2 CPU cores: every notebook in well under 2 minutes",
    ),
    "cpu": Profile(
        name="cpu", base_model="smollm2-135m", gpt2_model="mini-gpt2", seq_len=128, batch_size=8, train_steps=120,
        gpt2_steps=600, sweep_steps=60, eval_every=40, eval_batches=4, n_train=2000, n_val=200, n_test=200,
        n_seeds=1, max_new_tokens=40,
        description="a laptop: real training runs of a real pretrained LM (SmolLM2-135M), offline",
    ),
    "gpu": Profile(
        name="gpu", base_model="gpt2", gpt2_model="gpt2", seq_len=128, batch_size=8, train_steps=2000,
        gpt2_steps=2000, sweep_steps=500, eval_every=200, eval_batches=25, n_train=42061, n_val=1000, n_test=630,
        n_seeds=3, max_new_tokens=60, description="one GPU (a Colab T4 is enough): real GPT-2 (124M)",
    ),
}


def default_profile_name() -> str:
    """The profile used when ``MINIPEFT_PROFILE`` is unset: ``gpu`` with CUDA, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | Profile | None = None) -> Profile:
    """Return the profile ``name``, or the one chosen by ``MINIPEFT_PROFILE`` / the hardware."""
    if isinstance(name, Profile):
        return name
    chosen = name or os.environ.get("MINIPEFT_PROFILE") or default_profile_name()
    key = chosen.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(PROFILES)
        raise ValueError(
            f"Unknown minipeft profile {chosen!r}. Valid profiles: {valid}. "
            f"Set MINIPEFT_PROFILE to one of them (or unset it to choose from the hardware)."
        )
    return PROFILES[key]


def get_device(profile: Profile | None = None) -> torch.device:
    """CUDA for the ``gpu`` profile when present, else CPU (``ci``/``cpu`` always run on CPU)."""
    profile = get_profile(profile)
    return torch.device("cuda" if profile.name == "gpu" and torch.cuda.is_available() else "cpu")
