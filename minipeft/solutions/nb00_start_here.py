"""Solutions to the exercises of ``00_start_here.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("00.1")
def count_parameters(model) -> int:
    """Number of parameters of a PyTorch model (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
