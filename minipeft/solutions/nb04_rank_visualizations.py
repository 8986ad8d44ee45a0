"""Solutions to the exercises of ``04_rank_visualizations.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("04.1")
def error_from_spectrum(s: torch.Tensor, r: int) -> float:
    """Frobenius error of the best rank-r approximation (Eckart–Young): the root of the tail's squares."""
    return s[r:].square().sum().sqrt().item()


@solution("04.2")
def rank_for(s: torch.Tensor, fraction: float) -> int:
    """Smallest r whose top-r singular values hold at least ``fraction`` of the energy sum(s**2)."""
    energy = s.square().cumsum(0) / s.square().sum()
    return int((energy < fraction - 1e-12).sum().item()) + 1


@solution("04.3")
def phi(u1: torch.Tensor, u2: torch.Tensor, i: int, j: int) -> float:
    """The LoRA paper's normalised subspace similarity ||u1[:, :i]ᵀ u2[:, :j]||_F² / min(i, j)."""
    return (u1[:, :i].T @ u2[:, :j]).square().sum().item() / min(i, j)
