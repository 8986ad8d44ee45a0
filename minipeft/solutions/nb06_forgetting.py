"""Solutions to the exercises of ``06_forgetting.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("06.1")
def forgetting_between(p0: tuple[float, float], p1: tuple[float, float], loss: float) -> float:
    """Forgetting at task loss ``loss`` on the straight line from ``p0`` to ``p1``, each ``(task loss, forgetting)``."""
    (l0, f0), (l1, f1) = p0, p1
    return f0 + (f1 - f0) * (loss - l0) / (l1 - l0)


@solution("06.2")
def count_intruders(w0: torch.Tensor, w: torch.Tensor, k: int = 10, eps: float = 0.5) -> int:
    """Of ``w``'s top ``k`` left singular vectors, how many have |cosine| below ``eps`` with every one of ``w0``'s."""
    u0 = torch.linalg.svd(w0, full_matrices=False).U  # columns: w0's left singular vectors, unit length
    u = torch.linalg.svd(w, full_matrices=False).U[:, :k]  # the fine-tuned matrix's top k
    best = (u0.T @ u).abs().max(dim=0).values  # each new vector's closest old one (cosine: both unit vectors)
    return int((best < eps).sum())
