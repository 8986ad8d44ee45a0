"""Solutions to the exercises of ``00_start_here.ipynb``."""

from __future__ import annotations

from ..exercises import solution
from ..params import count_parameters


@solution("00.1")
def embedding_share(model) -> float:
    """The token embedding's share of the model's parameters (tied weights counted once)."""
    return model.get_input_embeddings().weight.numel() / count_parameters(model)
