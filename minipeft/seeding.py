"""One seed for every random number generator a run draws from, so that a notebook, a test or an experiment repeats."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that every run of a notebook repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
