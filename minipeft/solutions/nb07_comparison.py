"""Solutions to the exercises of ``07_comparison.ipynb``."""

from __future__ import annotations

from ..exercises import solution


@solution("07.1")
def serving_bytes(n_tasks: int, model_bytes: int, adapter_bytes: int) -> tuple[int, int]:
    """Bytes to serve ``n_tasks`` tasks: one base plus an adapter each, versus one full copy each."""
    return model_bytes + n_tasks * adapter_bytes, n_tasks * model_bytes
