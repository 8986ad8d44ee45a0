"""What the first code cell of every notebook calls: seeds, quiet logs, and one line saying where we run."""

from __future__ import annotations

import logging
import os
import warnings

import torch

from .profiles import Profile, dry_run_description, get_device, get_profile
from .seeding import seed_everything


def quiet() -> None:
    """Silence library chatter (transformers' logger, FutureWarnings, datasets' bars) in notebooks."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger("datasets").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def describe(profile: Profile, device: torch.device, gpt2: bool = False, trains_base: bool = False) -> str:
    """One line: the active profile, its base model (``profile.gpt2_model`` if ``gpt2``) and the device, with
    library versions. In a dry run (``MINIPEFT_DRY_RUN=1``) the profile's description says so.

    ``gpt2`` and ``trains_base`` together (notebooks 02 and 03: the build on ``profile.gpt2_model``, the training on
    ``profile.base_model``) name both models where they differ, the trained one as the base model. ``gpt2`` alone
    (notebook 04: only ``profile.gpt2_model`` is trained) replaces a description that would name the profile's other
    base model by one naming the GPT-2 the notebook trains."""
    import transformers

    model = profile.gpt2_model if gpt2 and not trains_base else profile.base_model  # MINIPEFT_BASE_MODEL applied
    built = f"built on: {profile.gpt2_model} | " if gpt2 and trains_base and profile.gpt2_model != model else ""
    about = profile.description
    if model != profile.base_model:  # the description is about base_model's runs, which this notebook never makes
        about = (f"{profile.gpt2_steps}-step training runs of {model} only; the profile's {profile.base_model} "
                 "is not used here")
        if profile.dry_run:
            about = dry_run_description(about)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return (f"minipeft profile: {profile.name} ({about}) | {built}base model: {model} | "
            f"device: {where} | torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}")


def setup_notebook(seed: int = 0, gpt2: bool = False, trains_base: bool = False) -> tuple[Profile, torch.device]:
    """Seed, quiet the logs, print the active profile and device; returns ``(profile, device)``.

    Notebooks that build the methods on GPT-2 (02-04) pass ``gpt2=True``: they use ``profile.gpt2_model``,
    and the line names it (04, which trains nothing else, says so in place of the profile's description). Those
    that then train on the profile's base model (02, 03) also pass ``trains_base=True``, and the line names both
    (``built on: mini-gpt2 | base model: smollm2-135m``)."""
    seed_everything(seed)
    quiet()
    profile = get_profile()
    device = get_device(profile)
    print(describe(profile, device, gpt2, trains_base))
    return profile, device
