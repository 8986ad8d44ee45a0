"""minipeft.rank on matrices whose answers are known by construction."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from minipeft.rank import (
    amplification,
    best_rank_r,
    effective_rank,
    energy_captured,
    gpt2_weights,
    numerical_rank,
    plot_energy,
    plot_matrix,
    plot_similarity,
    plot_spectrum,
    random_like,
    rank_for_energy,
    reconstruction_error,
    singular_values,
    subspace_similarity,
    tail_error,
    top_directions,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def orthonormal(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]


def with_spectrum(s: list[float], rows: int = 12, cols: int = 9, seed: int = 0) -> torch.Tensor:
    """U diag(s) Vᵀ with random orthonormal U, V: a matrix whose singular values are exactly s."""
    k = len(s)
    diag = torch.diag(torch.tensor(s, dtype=torch.float64))
    return orthonormal(rows, k, seed) @ diag @ orthonormal(cols, k, seed + 1).T


def test_rank3_matrix_has_three_nonzero_singular_values():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, 3, generator=g) @ torch.randn(3, 15, generator=g)
    s = singular_values(w)
    assert s.shape == (15,)
    assert (s > 1e-6 * s[0]).sum().item() == 3
    assert numerical_rank(w) == 3
    np.testing.assert_allclose(s.numpy(), np.linalg.svd(w.double().numpy(), compute_uv=False), atol=1e-10)


def test_spectrum_is_recovered_largest_first():
    spectrum = [5.0, 3.0, 2.0, 0.5]
    s = singular_values(with_spectrum([2.0, 5.0, 0.5, 3.0]))
    torch.testing.assert_close(s[:4], torch.tensor(spectrum, dtype=torch.float64))
    assert s[4:].abs().max() < 1e-12


def test_energy_and_rank_for_energy():
    w = with_spectrum([3.0, 2.0, 1.0, 1.0])  # squares 9, 4, 1, 1: total 15
    expected = torch.tensor([9 / 15, 13 / 15, 14 / 15, 1.0], dtype=torch.float64)
    torch.testing.assert_close(energy_captured(w)[:4], expected)
    assert rank_for_energy(w, 0.6) == 1  # 9/15 = 0.6 exactly: one direction is enough
    assert rank_for_energy(w, 0.61) == 2
    assert rank_for_energy(w, 0.9) == 3
    assert rank_for_energy(w, 1.0) == 4


def test_functions_accept_a_precomputed_spectrum():
    w = with_spectrum([3.0, 2.0, 1.0, 1.0])
    s = singular_values(w)
    torch.testing.assert_close(singular_values(s), s)
    torch.testing.assert_close(energy_captured(s), energy_captured(w))
    assert rank_for_energy(s, 0.9) == rank_for_energy(w, 0.9) == 3
    assert effective_rank(s) == pytest.approx(effective_rank(w))
    assert tail_error(s, 2) == pytest.approx(math.sqrt(2.0))
    with pytest.raises(ValueError, match="sorted largest first"):
        energy_captured(torch.tensor([1.0, 2.0]))


def test_effective_rank():
    assert effective_rank(with_spectrum([2.0, 2.0, 2.0])) == pytest.approx(3.0)
    assert effective_rank(with_spectrum([7.0])) == pytest.approx(1.0)
    assert 1.0 < effective_rank(with_spectrum([10.0, 1.0, 1.0])) < 3.0


@pytest.mark.parametrize("r", range(0, 10))
def test_reconstruction_error_is_the_tail_of_the_spectrum(r):
    w = torch.randn(12, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    expected = math.sqrt(float((s[r:] ** 2).sum()))
    assert reconstruction_error(w, r) == pytest.approx(expected, abs=1e-9)
    assert tail_error(w, r) == pytest.approx(expected, abs=1e-9)
    assert numerical_rank(best_rank_r(w, r)) == r


def test_best_rank_r_beats_other_rank_r_matrices():
    w = torch.randn(12, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    r = 3
    best = torch.linalg.matrix_norm(w - best_rank_r(w, r))
    for seed in range(5):  # project w onto random r-dimensional subspaces: always worse (Eckart–Young)
        u, v = orthonormal(12, r, seed), orthonormal(9, r, seed + 10)
        assert torch.linalg.matrix_norm(w - u @ (u.T @ w @ v) @ v.T) > best
    assert best_rank_r(w.float(), r).dtype == torch.float32


def test_top_directions_are_orthonormal_and_span_the_matrix():
    w = with_spectrum([4.0, 2.0])
    v = top_directions(w, 2, "right")
    u = top_directions(w, 2, "left")
    torch.testing.assert_close(v.T @ v, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(u @ (u.T @ w @ v) @ v.T, w)


def test_similarity_of_a_subspace_with_itself_is_one():
    u = orthonormal(30, 8, seed=3)
    phi = subspace_similarity(u, u)
    assert phi.shape == (8, 8)
    torch.testing.assert_close(phi, torch.ones(8, 8, dtype=torch.float64))


def test_similarity_nested_orthogonal_and_partial():
    basis = orthonormal(30, 12, seed=4)
    small, big = basis[:, :4], basis[:, :12]
    torch.testing.assert_close(subspace_similarity(small, big), torch.ones(4, 12, dtype=torch.float64))
    assert subspace_similarity(basis[:, :4], basis[:, 4:8]).abs().max() < 1e-12  # orthogonal subspaces
    # one shared direction out of two: phi(2, 2) = 1/2, phi(1, 1) = 1
    a = basis[:, [0, 1]]
    b = basis[:, [0, 2]]
    phi = subspace_similarity(a, b)
    assert phi[0, 0].item() == pytest.approx(1.0)
    assert phi[1, 1].item() == pytest.approx(0.5)
    assert phi[1, 0].item() == pytest.approx(1.0)  # min(i, j) = 1: the one direction of b[:, :1] is in a


def test_similarity_of_random_subspaces_is_about_max_dim_over_n():
    n = 400
    phi = subspace_similarity(orthonormal(n, 8, seed=5), orthonormal(n, 64, seed=6))
    assert phi[7, 63].item() == pytest.approx(64 / n, rel=0.35)
    assert phi.min() >= 0 and phi.max() <= 1


def test_amplification_on_a_constructed_case():
    n = 10
    u, v = orthonormal(n, n, seed=7), orthonormal(n, n, seed=8)
    s = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05], dtype=torch.float64)
    w = u @ torch.diag(s) @ v.T
    # a rank-1 update along w's 5th direction (where w has only 0.5): ||dW|| / ||Uᵀ W V|| = 3 / 0.5
    delta = 3.0 * torch.outer(u[:, 4], v[:, 4])
    out = amplification(w, delta)
    assert out["r"] == 1
    assert out["delta_norm"] == pytest.approx(3.0)
    assert out["projected_norm"] == pytest.approx(0.5)
    assert out["factor"] == pytest.approx(6.0)
    assert out["w_top_norm"] == pytest.approx(10.0)
    assert out["w_norm"] == pytest.approx(s.square().sum().sqrt().item())
    assert 0 < out["random_norm"] < out["w_top_norm"]
    # rank 2, along directions 3 and 4: projection sqrt(2² + 1²), delta sqrt(4² + 3²) = 5
    delta2 = 4.0 * torch.outer(u[:, 2], v[:, 2]) + 3.0 * torch.outer(u[:, 3], v[:, 3])
    out2 = amplification(w, delta2)
    assert out2["r"] == 2
    assert out2["factor"] == pytest.approx(5.0 / math.sqrt(5.0))
    assert amplification(w, delta2, r=2)["w_top_norm"] == pytest.approx(math.sqrt(125.0))


def test_amplification_default_rank_of_a_float32_update():
    """A float32 LoRA-like update B @ A has rank r up to float32 round-off: the default r must find r, not n."""
    g = torch.Generator().manual_seed(9)
    w = torch.randn(16, 12, generator=g)
    delta = torch.randn(16, 3, generator=g) @ torch.randn(3, 12, generator=g)
    assert amplification(w, delta)["r"] == 3
    assert amplification(w, delta)["factor"] == pytest.approx(amplification(w, delta, r=3)["factor"])


def test_random_like_keeps_shape_and_norm():
    w = with_spectrum([3.0, 1.0]).float()
    rnd = random_like(w, torch.Generator().manual_seed(0))
    assert rnd.shape == w.shape and rnd.dtype == w.dtype
    assert torch.linalg.matrix_norm(rnd).item() == pytest.approx(torch.linalg.matrix_norm(w).item(), rel=1e-5)
    assert numerical_rank(rnd) == min(w.shape)


def test_gpt2_weights_split_and_transpose_conv1d():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16))
    weights = gpt2_weights(model)
    assert set(weights) == {f"{i}.{k}" for i in range(2) for k in ("q", "k", "v", "attn_out", "mlp_in", "mlp_out")}
    assert weights["0.q"].shape == (32, 32) and weights["1.mlp_in"].shape == (128, 32)
    assert weights["1.mlp_out"].shape == (32, 128)
    x = torch.randn(5, 32)
    attn = model.transformer.h[0].attn.c_attn
    qkv = attn(x) - attn.bias  # Conv1D: x @ W (in, out)
    torch.testing.assert_close(x @ weights["0.q"].T, qkv[:, :32])
    torch.testing.assert_close(x @ weights["0.v"].T, qkv[:, 64:])


def test_plots_have_labels_and_draw_the_spectrum():
    w = with_spectrum([3.0, 2.0, 1.0])
    fig, axes = plt.subplots(1, 4)
    plot_spectrum(axes[0], w, label="w")
    plot_energy(axes[1], w)
    plot_matrix(axes[2], w, "w")
    plot_similarity(axes[3], subspace_similarity(top_directions(w, 3), top_directions(w, 3)), "phi")
    for ax in (axes[0], axes[1], axes[3]):
        assert ax.get_xlabel() and ax.get_ylabel()
    (spectrum,), (energy,) = axes[0].get_lines(), axes[1].get_lines()
    np.testing.assert_allclose(spectrum.get_xydata()[:3], [[1, 1], [2, 2 / 3], [3, 1 / 3]], atol=1e-12)  # s_i / s_1
    np.testing.assert_allclose(energy.get_xydata()[:3], [[1, 9 / 14], [2, 13 / 14], [3, 1]], atol=1e-12)  # 9 + 4 + 1
    assert spectrum.get_ydata()[3:].max() < 1e-12 and np.allclose(energy.get_ydata()[3:], 1)  # rank 3 of 9
    assert axes[2].get_title() == "w" and axes[3].get_title() == "phi"
    plt.close(fig)


def test_bad_input_says_what_is_wrong():
    w = torch.randn(6, 4)
    with pytest.raises(ValueError, match="rank r must be an integer between 0 and 4"):
        best_rank_r(w, 5)
    with pytest.raises(ValueError, match="rank r must be"):
        tail_error(w, -1)
    with pytest.raises(ValueError, match="expected a 2-D torch.Tensor"):
        singular_values(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="must have the same shape"):
        amplification(w, torch.randn(4, 6))
    with pytest.raises(ValueError, match="all zeros"):
        amplification(w, torch.zeros(6, 4))
    with pytest.raises(ValueError, match="different spaces"):
        subspace_similarity(orthonormal(5, 2, 0), orthonormal(6, 2, 0))
    with pytest.raises(ValueError, match="side must be"):
        top_directions(w, 2, "up")
    with pytest.raises(ValueError, match="no energy"):
        energy_captured(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="fraction must be"):
        rank_for_energy(w, 0.0)
    with pytest.raises(ValueError, match="no GPT-2 blocks"):
        gpt2_weights(torch.nn.Linear(2, 2))
