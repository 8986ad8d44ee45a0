"""Rank, seen in numbers and pictures: the analysis behind LoRA's low-rank hypothesis (notebook 04).

Everything rests on one factorisation, the SVD ``W = U diag(s) Vᵀ`` (``torch.linalg.svd``):

- the singular values ``s`` (largest first) are the *spectrum*; how many are non-zero is the rank;
- keeping the top ``r`` terms gives the best rank-``r`` approximation (Eckart–Young), whose Frobenius
  error is the tail of the spectrum, ``sqrt(sum(s[r:]**2))``; ``sum(s[:r]**2) / sum(s**2)`` is the
  *energy* the top ``r`` directions capture;
- LoRA's Section 7 (Hu et al., 2021) compares subspaces with the normalised similarity
  ``phi(i, j) = ||U_iᵀ U_j||_F² / min(i, j)`` and measures how much an update ``dW`` *amplifies*
  directions of ``W`` with ``||dW||_F / ||Uᵀ W V||_F`` (``U``, ``V``: top-``r`` singular vectors of ``dW``).

Matrices are in ``nn.Linear`` orientation ``(out, in)``, like the paper's ``h = W x``: GPT-2's ``Conv1D``
stores ``(in, out)``, so :func:`gpt2_weights` transposes it (and splits the fused ``c_attn`` into q, k, v).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "amplification", "best_rank_r", "effective_rank", "energy_captured", "gpt2_weights", "numerical_rank",
    "plot_energy", "plot_matrix", "plot_similarity", "plot_spectrum", "random_like", "rank_for_energy",
    "reconstruction_error", "singular_values", "subspace_similarity", "tail_error", "top_directions",
]


def _matrix(w: Tensor) -> Tensor:
    """A detached float64 2-D copy (SVD in double precision, so tiny singular values stay honest)."""
    if not isinstance(w, Tensor) or w.ndim != 2:
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"expected a 2-D torch.Tensor (a weight matrix), got {shape}; "
                         f"reshape or pick one matrix, e.g. W[0] or W.reshape(W.shape[0], -1)")
    return w.detach().to("cpu", torch.float64)


def _check_r(r: int, limit: int) -> None:
    if not isinstance(r, int) or not 0 <= r <= limit:
        raise ValueError(f"rank r must be an integer between 0 and {limit} (the smaller side), got {r!r}")


def singular_values(w: Tensor) -> Tensor:
    """The spectrum of ``w``: its singular values, largest first (float64).

    A 1-D tensor is taken as a spectrum already computed and returned as is (float64), so the functions
    below accept "a matrix or its singular values": one SVD, many readings.
    """
    if isinstance(w, Tensor) and w.ndim == 1:
        if (w < 0).any() or (w[1:] > w[:-1]).any():
            raise ValueError("a 1-D tensor is read as singular values: they must be >= 0 and sorted largest first")
        return w.detach().to("cpu", torch.float64)
    return torch.linalg.svdvals(_matrix(w))


def numerical_rank(w: Tensor, rtol: float | None = None) -> int:
    """How many singular values are non-zero up to round-off (``torch.linalg.matrix_rank``).

    The default tolerance, ``max(shape) * eps`` relative to the largest, uses the eps of ``w``'s own dtype:
    a float32 matrix carries float32 round-off even when the SVD runs in float64.
    """
    m = _matrix(w)
    if rtol is None:
        rtol = max(m.shape) * torch.finfo(w.dtype if w.is_floating_point() else torch.float64).eps
    return int(torch.linalg.matrix_rank(m, rtol=rtol))


def effective_rank(w: Tensor) -> float:
    """Roy & Vetterli's (2007) effective rank ``exp(entropy(s / sum(s)))``: between 1 and the rank.

    It is ``k`` for a matrix with ``k`` equal non-zero singular values, and smaller when a few dominate.
    ``w``: a matrix or its singular values.
    """
    s = singular_values(w)
    p = s[s > 0] / s.sum()
    return math.exp(-(p * p.log()).sum().item()) if len(p) else 0.0


def energy_captured(w: Tensor) -> Tensor:
    """``e[r-1] = sum(s[:r]**2) / sum(s**2)``: the share of ``||w||_F²`` in the top ``r`` directions, r = 1..n.

    ``w``: a matrix or its singular values.
    """
    s2 = singular_values(w) ** 2
    total = s2.sum()
    if total == 0:
        raise ValueError("the matrix is all zeros: it has no energy to share among directions")
    return s2.cumsum(0) / total


def rank_for_energy(w: Tensor, fraction: float = 0.9) -> int:
    """The smallest ``r`` whose top ``r`` directions hold at least ``fraction`` of the energy (matrix or spectrum)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    e = energy_captured(w)
    return int((e < fraction - 1e-12).sum().item()) + 1


def best_rank_r(w: Tensor, r: int) -> Tensor:
    """The best rank-``r`` approximation of ``w`` (Eckart–Young): ``U[:, :r] diag(s[:r]) Vᵀ[:r]``, in w's dtype."""
    m = _matrix(w)
    _check_r(r, min(m.shape))
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return ((u[:, :r] * s[:r]) @ vh[:r]).to(w.dtype)


def reconstruction_error(w: Tensor, r: int) -> float:
    """``||w - best_rank_r(w, r)||_F``, computed from the two matrices."""
    return torch.linalg.matrix_norm(_matrix(w) - best_rank_r(_matrix(w), r)).item()


def tail_error(w: Tensor, r: int) -> float:
    """The same error read off the spectrum: ``sqrt(sum(s[r:]**2))`` (Eckart–Young); matrix or spectrum."""
    s = singular_values(w)
    _check_r(r, len(s))
    return s[r:].square().sum().sqrt().item()


def top_directions(w: Tensor, r: int, side: str = "right") -> Tensor:
    """Orthonormal columns spanning the top-``r`` ``"left"`` (output) or ``"right"`` (input) singular directions."""
    m = _matrix(w)
    _check_r(r, min(m.shape))
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    if side == "left":
        return u[:, :r]
    if side == "right":
        return vh[:r].T
    raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def subspace_similarity(u1: Tensor, u2: Tensor) -> Tensor:
    """The LoRA paper's grid ``phi[i-1, j-1] = ||u1[:, :i]ᵀ u2[:, :j]||_F² / min(i, j)``.

    ``u1`` (n × I) and ``u2`` (n × J) have orthonormal columns, best first (e.g. from :func:`top_directions`).
    ``phi`` is 1 where one top subspace contains the other and about ``max(i, j) / n`` for random ones.
    """
    u1, u2 = _matrix(u1), _matrix(u2)
    if u1.shape[0] != u2.shape[0]:
        raise ValueError(f"the two bases live in different spaces: {u1.shape[0]} vs {u2.shape[0]} rows; "
                         f"compare directions of the same side (e.g. both 'right') of same-shape matrices")
    overlap = (u1.T @ u2).square().cumsum(0).cumsum(1)  # [i-1, j-1] = ||u1[:, :i]ᵀ u2[:, :j]||_F²
    i = torch.arange(1, u1.shape[1] + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, u2.shape[1] + 1, dtype=torch.float64)[None, :]
    return overlap / torch.minimum(i, j)


def amplification(w: Tensor, delta: Tensor, r: int | None = None, seed: int = 0) -> dict[str, float]:
    """LoRA Sec. 7.3: how strongly ``delta`` amplifies directions that ``w`` holds only weakly.

    With ``U``, ``V`` the top-``r`` left/right singular vectors of ``delta`` (``r`` defaults to its rank),
    ``w`` is projected onto that subspace, ``Uᵀ w V``. Returns the norms the paper's Table 7 compares:
    ``delta_norm`` = ``||delta||_F``, ``projected_norm`` = ``||Uᵀ w V||_F``, ``factor`` = their ratio,
    and for scale ``w_norm`` = ``||w||_F``, ``w_top_norm`` (w projected on its own top-r directions) and
    ``random_norm`` (w projected on random r-dimensional subspaces drawn with ``seed``).
    """
    w64, d64 = _matrix(w), _matrix(delta)
    if w64.shape != d64.shape:
        raise ValueError(f"w {tuple(w64.shape)} and delta {tuple(d64.shape)} must have the same shape "
                         f"(both (out, in); transpose a GPT-2 Conv1D weight, or use gpt2_weights)")
    r = numerical_rank(delta) if r is None else r  # delta's own dtype sets the round-off tolerance
    _check_r(r, min(d64.shape))
    if r == 0:
        raise ValueError("delta is all zeros (rank 0): there is no update to measure; train first")
    u, v = top_directions(d64, r, "left"), top_directions(d64, r, "right")
    uw, vw = top_directions(w64, r, "left"), top_directions(w64, r, "right")
    g = torch.Generator().manual_seed(seed)
    ur, vr = (torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0] for n in w64.shape)
    projected = torch.linalg.matrix_norm(u.T @ w64 @ v).item()
    delta_norm = torch.linalg.matrix_norm(d64).item()
    return {"r": r, "delta_norm": delta_norm, "projected_norm": projected, "factor": delta_norm / projected,
            "w_top_norm": torch.linalg.matrix_norm(uw.T @ w64 @ vw).item(),
            "random_norm": torch.linalg.matrix_norm(ur.T @ w64 @ vr).item(),
            "w_norm": torch.linalg.matrix_norm(w64).item()}


def random_like(w: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A Gaussian random matrix with the shape and Frobenius norm of ``w``: the "no structure" baseline."""
    g = torch.randn(w.shape, generator=generator, dtype=torch.float64)
    return (g * torch.linalg.matrix_norm(_matrix(w)) / torch.linalg.matrix_norm(g)).to(w.dtype)


def gpt2_weights(model: torch.nn.Module) -> dict[str, Tensor]:
    """GPT-2's per-layer weight matrices in ``(out, in)`` orientation, detached on CPU.

    Keys are ``"<layer>.<kind>"`` with kind ``q``, ``k``, ``v`` (the three thirds of the fused ``c_attn``),
    ``attn_out`` (``attn.c_proj``), ``mlp_in`` (``mlp.c_fc``), ``mlp_out`` (``mlp.c_proj``).
    """
    blocks = getattr(getattr(model, "transformer", model), "h", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__} has no GPT-2 blocks (model.transformer.h); pass a GPT2LMHeadModel")
    out = {}
    for i, block in enumerate(blocks):
        q, k, v = block.attn.c_attn.weight.detach().cpu().T.chunk(3, dim=0)  # Conv1D (in, 3d) -> 3 × (d, in)
        out |= {f"{i}.q": q, f"{i}.k": k, f"{i}.v": v, f"{i}.attn_out": block.attn.c_proj.weight.detach().cpu().T,
                f"{i}.mlp_in": block.mlp.c_fc.weight.detach().cpu().T,
                f"{i}.mlp_out": block.mlp.c_proj.weight.detach().cpu().T}
    return out


# ----------------------------------------------------------------------------- plots (matplotlib Axes in, Axes out)

def plot_spectrum(ax, w: Tensor, label: str | None = None, normalise: bool = True, **kwargs):
    """Singular values of ``w`` (a matrix or its spectrum) against their index (log y); ``normalise`` divides by s_1."""
    s = singular_values(w)
    s = s / s[0] if normalise and s[0] > 0 else s
    ax.semilogy(range(1, len(s) + 1), s.numpy(), label=label, **kwargs)
    ax.set_xlabel("index i (largest first)")
    ax.set_ylabel("singular value s_i / s_1" if normalise else "singular value s_i")
    return ax


def plot_energy(ax, w: Tensor, label: str | None = None, max_r: int | None = None, **kwargs):
    """Energy captured by the top ``r`` directions of ``w`` (a matrix or its spectrum), ``r = 1..max_r``."""
    e = energy_captured(w)[:max_r]
    ax.plot(range(1, len(e) + 1), e.numpy(), label=label, **kwargs)
    ax.set_xlabel("r (top singular directions kept)")
    ax.set_ylabel("energy captured  sum(s[:r]²) / sum(s²)")
    ax.set_ylim(0, 1.02)
    return ax


def plot_matrix(ax, m: Tensor, title: str, cmap: str = "gray", **kwargs):
    """A matrix as an image (no ticks): what the eye sees of rank."""
    image = ax.imshow(_matrix(m).numpy(), cmap=cmap, **kwargs)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def plot_similarity(ax, phi: Tensor, title: str, xlabel: str = "j", ylabel: str = "i"):
    """The paper's subspace-similarity heatmap: ``phi[i-1, j-1]`` with i down, j across, colours 0..1."""
    image = ax.imshow(_matrix(phi).numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                      extent=(0.5, phi.shape[1] + 0.5, phi.shape[0] + 0.5, 0.5))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return image
