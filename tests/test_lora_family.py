"""rsLoRA, DoRA and PiSSA against the algebra, by hand, and their refusals (against peft: test_lora_family_peft.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import train_like
from safetensors.torch import load_file, save_file
from test_lora import ALL_GPT2, ALL_LLAMA, tokens
from torch import nn
from transformers.pytorch_utils import Conv1D

from minipeft.dora import DoRALayer
from minipeft.lora import (
    LoRALayer,
    apply_lora,
    disable_lora,
    lora_layers,
    lora_scaling,
    merge_lora,
    unload_lora,
    unmerge_lora,
)
from minipeft.lora_files import load_lora, save_lora
from minipeft.pissa import is_pissa

pytestmark = pytest.mark.usefixtures("one_thread")



# ---- rsLoRA ----------------------------------------------------------------------------------------------------

def test_rslora_scales_by_alpha_over_sqrt_r():
    ranks = torch.arange(1, 257)
    lora = torch.tensor([lora_scaling(16, int(r)) for r in ranks])
    rslora = torch.tensor([lora_scaling(16, int(r), use_rslora=True) for r in ranks])
    assert lora[0] == rslora[0] == 16 and lora[3] == 4 and rslora[3] == 8
    assert torch.allclose(rslora / lora, ranks.double().sqrt().float())
    layer = LoRALayer(nn.Linear(8, 8), r=4, alpha=16, use_rslora=True)
    assert layer.scaling == 8 and "use_rslora=True" in repr(layer)


# ---- DoRA --------------------------------------------------------------------------------------------------------

def test_dora_magnitude_is_the_norm_of_each_output_on_linear_and_conv1d():
    """Per OUTPUT feature: rows of nn.Linear's (out, in) weight, columns of Conv1D's (in, out) weight."""
    torch.manual_seed(0)
    linear, conv = nn.Linear(6, 3), Conv1D(3, 6)  # both 6 in, 3 out
    assert torch.equal(DoRALayer(linear, r=2, alpha=4).lora_magnitude, torch.linalg.norm(linear.weight, dim=1))
    assert torch.equal(DoRALayer(conv, r=2, alpha=4).lora_magnitude, torch.linalg.norm(conv.weight, dim=0))
    assert DoRALayer(conv, r=2, alpha=4).lora_magnitude.shape == (3,)


@pytest.mark.parametrize("base", [nn.Linear(6, 5), Conv1D(5, 6)], ids=["linear", "conv1d"])
def test_dora_computes_m_times_the_direction_and_its_norm_is_a_constant_for_autograd(base):
    torch.manual_seed(0)
    layer = DoRALayer(copy.deepcopy(base), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude.mul_(1.5)
    x = torch.randn(7, 6)
    out = layer(x)
    # by hand: the same leaves, the norm computed from detached copies
    A, B, m = (t.detach().clone().requires_grad_() for t in (layer.lora_A, layer.lora_B, layer.lora_magnitude))
    W0 = base.weight.T if isinstance(base, Conv1D) else base.weight
    V = W0 + 2 * B @ A  # s = alpha / r = 2
    W = m[:, None] * V / torch.linalg.norm(V.detach(), dim=1, keepdim=True)
    by_hand = F.linear(x, W, base.bias)
    assert torch.allclose(out, by_hand, atol=1e-5, rtol=0)
    out.square().sum().backward()
    by_hand.square().sum().backward()
    for ours, theirs in ((layer.lora_A, A), (layer.lora_B, B), (layer.lora_magnitude, m)):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_fresh_and_disabled_dora_give_the_base_model_exactly(family, tiny):
    base = tiny[family]()
    targets = ALL_GPT2 if family == "gpt2" else ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
    model = apply_lora(copy.deepcopy(base), targets=targets, r=4, alpha=8, use_dora=True, use_rslora=True)
    ids = tokens(base)
    with torch.no_grad():
        expected = base(ids).logits
        assert torch.equal(model(ids).logits, expected), "m = ||W0|| and B = 0: the base model, bit for bit"
        train_like(model)
        adapted = model(ids).logits
        with disable_lora(model):
            assert torch.equal(model(ids).logits, expected)
        assert torch.equal(model(ids).logits, adapted)
    trainable = {n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B", "lora_magnitude"}


def test_dora_on_q_and_v_leaves_the_key_projection_exactly_as_it_was(tiny_gpt2):
    base = tiny_gpt2()
    model = apply_lora(copy.deepcopy(base), targets="c_attn", r=2, alpha=4, qv_only=True, use_dora=True)
    train_like(model)
    layer, d = model.transformer.h[0].attn.c_attn, base.config.n_embd
    assert layer.lora_magnitude.shape == (2 * d,)
    x = torch.randn(3, d)
    with torch.no_grad():
        assert torch.equal(layer(x)[:, d:2 * d], base.transformer.h[0].attn.c_attn(x)[:, d:2 * d])
        assert not torch.allclose(layer(x)[:, :d], base.transformer.h[0].attn.c_attn(x)[:, :d])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("family, kwargs", [
    ("gpt2", dict(use_dora=True)), ("gpt2", dict(use_dora=True, qv_only=True)), ("gpt2", dict(use_rslora=True)),
    ("gpt2", dict(init_lora_weights="pissa")), ("llama", dict(use_dora=True)), ("llama", dict(use_rslora=True)),
    ("llama", dict(use_dora=True, use_rslora=True)), ("llama", dict(init_lora_weights="pissa"))])
def test_merge_equals_unmerged_and_unmerge_restores_the_weights(dtype, family, kwargs, tiny):
    """On GPT-2's Conv1D and on nn.Linear (a GQA Llama, every projection), float32 and float64."""
    base = tiny[family]().to(dtype)
    targets = ("c_attn" if kwargs.get("qv_only") else ALL_GPT2) if family == "gpt2" else ALL_LLAMA
    model = apply_lora(copy.deepcopy(base), targets=targets, r=4, alpha=8, **kwargs)
    train_like(model)
    weights = {n: layer.base.weight.clone() for n, layer in lora_layers(model).items()}
    ids = tokens(base)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        expected = model(ids).logits
        assert torch.allclose(merge_lora(model)(ids).logits, expected, atol=tol, rtol=tol)
        unmerge_lora(model)
        for name, layer in lora_layers(model).items():
            assert torch.allclose(layer.base.weight, weights[name], atol=tol / 10, rtol=0)
        assert torch.allclose(model(ids).logits, expected, atol=tol, rtol=tol)
        assert torch.allclose(unload_lora(model)(ids).logits, expected, atol=tol, rtol=tol)


def test_a_zero_weight_row_gives_a_finite_result_and_stays_the_base_models():
    """peft 0.21.2 divides 0 by 0 there and returns NaN in the output and every gradient (peft issue #2049)."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with torch.no_grad():
        base[0].weight[1] = 0  # as the 511 all-zero rows of Llama-3.1-8B's o_proj
    model = apply_lora(copy.deepcopy(base), targets=["0", "2"], r=2, alpha=4, use_dora=True)
    layer, x = model[0], torch.randn(5, 4)
    assert layer.lora_magnitude[1] == 0 and torch.equal(model(x), base(x))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).square().sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(torch.isfinite(g).all() for g in grads)
        assert layer.lora_B.grad[1].count_nonzero() == 0 and layer.lora_magnitude.grad[1] == 0
        optimizer.step()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
        assert torch.equal(layer(x)[:, 1], base[0](x)[:, 1]), "the zero row stays the base model's (its bias)"
        assert not torch.allclose(model(x), base(x))
        merged_out = merge_lora(model)(x)
        assert torch.allclose(merged_out, unmerge_lora(model)(x), atol=1e-6, rtol=0)
        assert torch.equal(layer.base.weight[1], torch.zeros(4))


@pytest.mark.parametrize("base", [nn.Linear(4, 3), Conv1D(3, 4)], ids=["linear", "conv1d"])
def test_an_output_whose_magnitude_is_zero_comes_back_exactly_after_merge_and_unmerge(base):
    torch.manual_seed(0)
    layer = DoRALayer(base, r=2, alpha=4)
    before = layer.out_in(layer.base.weight).clone()
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude[2] = 0  # merging scales this output's weights to zero: division cannot undo that
        layer.merge()
        assert torch.equal(layer.out_in(layer.base.weight)[2], torch.zeros(4))
        layer.unmerge()
    after = layer.out_in(layer.base.weight)
    assert torch.equal(after[2], before[2]) and torch.allclose(after, before, atol=1e-6)


# ---- PiSSA -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("base", [nn.Linear(12, 8), Conv1D(8, 12)], ids=["linear", "conv1d"])
def test_pissa_takes_the_top_singular_triplets_and_leaves_the_residual(base, use_rslora):
    torch.manual_seed(0)
    base.weight.data.normal_()
    W0 = (base.weight.T if isinstance(base, Conv1D) else base.weight).detach().clone()
    model = apply_lora(nn.Sequential(copy.deepcopy(base)), targets="0", r=3, alpha=6, use_rslora=use_rslora,
                       init_lora_weights="pissa")
    layer = model[0]
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    top = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    s = layer.scaling
    assert torch.allclose(s * layer.lora_B @ layer.lora_A, top, atol=1e-5, rtol=0)
    assert torch.allclose(layer.lora_B.T @ layer.lora_B, torch.diag(S[:3] / s), atol=1e-4), "B = U_r sqrt(S_r / s)"
    residual = layer.base.weight.T if isinstance(base, Conv1D) else layer.base.weight
    assert torch.allclose(residual, W0 - top, atol=1e-5, rtol=0)
    assert torch.linalg.matrix_norm(residual, ord=2) == pytest.approx(S[3].item(), rel=1e-4), "r+1st value left"
    x = torch.randn(5, 12)
    with torch.no_grad():
        assert torch.allclose(model(x), base(x), atol=1e-5, rtol=0), "the output is unchanged at init"
    assert is_pissa(layer) and not any("pissa" in k for k in model.state_dict())


def test_pissa_on_q_and_v_takes_the_svd_of_each_part_and_leaves_k_exactly(tiny_gpt2):
    base = tiny_gpt2()
    model = apply_lora(copy.deepcopy(base), targets="c_attn", r=3, alpha=6, qv_only=True, init_lora_weights="pissa")
    layer, d = model.transformer.h[0].attn.c_attn, base.config.n_embd
    W0 = base.transformer.h[0].attn.c_attn.weight.T  # (out, in): rows [q | k | v]
    for part, (A, B) in enumerate(zip(layer.lora_A.split(3), layer.lora_B.split(d), strict=True)):
        U, S, Vh = torch.linalg.svd(W0[2 * part * d:(2 * part + 1) * d], full_matrices=False)  # W_q, then W_v
        assert torch.allclose(layer.scaling * B @ A, U[:, :3] @ torch.diag(S[:3]) @ Vh[:3], atol=1e-5, rtol=0)
    assert torch.equal(layer.base.weight[:, d:2 * d], base.transformer.h[0].attn.c_attn.weight[:, d:2 * d])
    ids = tokens(base)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, base(ids).logits, atol=1e-5, rtol=0)


def test_pissa_on_q_and_v_is_saved_only_converted_since_peft_would_redo_the_svd_otherwise(tmp_path, tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets="c_attn", r=2, alpha=4, qv_only=True, init_lora_weights="pissa")
    with pytest.raises(ValueError, match=r"of the whole c_attn.*save_lora\(model, folder, convert_pissa=True\)"):
        save_lora(model, tmp_path / "a")
    assert not list(tmp_path.iterdir())
    save_lora(model, tmp_path / "a", convert_pissa=True)
    loaded = load_lora(tiny_gpt2(), tmp_path / "a")
    assert {(layer.r, layer.chunks) for layer in lora_layers(loaded).values()} == {(4, (True, False, True))}


def test_pissa_unloads_to_the_original_base_and_refuses_to_pretend_that_disabling_does(tiny_llama):
    base = tiny_llama()
    model = apply_lora(copy.deepcopy(base), targets=["q_proj", "v_proj"], r=4, alpha=8, init_lora_weights="pissa")
    train_like(model)
    with pytest.raises(RuntimeError, match="residual.*unload_lora\\(model, merge=False\\)"), disable_lora(model):
        pass
    plain = unload_lora(model, merge=False)
    for (name, p), q in zip(plain.named_parameters(), base.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6, rtol=0), name


# ---- files and refusals ------------------------------------------------------------------------------------------

def test_a_dora_adapter_file_without_its_magnitudes_is_refused_naming_them(tmp_path, tiny_gpt2, snapshot):
    model = apply_lora(tiny_gpt2(), targets="c_attn", r=2, alpha=4, use_dora=True)
    save_lora(model, tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(path).items() if "magnitude" not in k}, path)
    fresh = tiny_gpt2()
    before = snapshot(fresh)
    with pytest.raises(ValueError, match=r"\(missing\) do not fit .*lora_magnitude_vector \(96,\)"):
        load_lora(fresh, tmp_path)
    assert snapshot(fresh) == before


class ScaledLinear(nn.Linear):
    """A subclass of nn.Linear (as quantised linears are): LoRA wraps it, DoRA and PiSSA do not read its weight."""


@pytest.mark.parametrize("family, kwargs, error, match", [
    ("gpt2", dict(use_rslora=1), TypeError, "use_rslora must be True or False, got 1"),
    ("gpt2", dict(use_dora="yes"), TypeError, "use_dora must be True or False, got 'yes'"),
    ("gpt2", dict(init_lora_weights="gaussian"), ValueError, "init_lora_weights must be True .* or 'pissa'"),
    ("gpt2", dict(init_lora_weights=False), ValueError, "init_lora_weights must be True .* got False"),
    ("gpt2", dict(init_lora_weights="pissa_niter_4"), ValueError, "randomised SVD.*use 'pissa'"),
    ("gpt2", dict(init_lora_weights="pissa", qv_only=True, r=33), ValueError,
     r"'transformer.h.0.attn.c_attn' has a 32 x 32 weight \(each adapted part\), hence only 32. Use r <= 32"),
    ("gpt2", dict(init_lora_weights="pissa", use_dora=True), ValueError, "Choose one of the two"),
    ("llama", dict(init_lora_weights="pissa", r=17), ValueError,
     r"'model.layers.0.self_attn.v_proj' has a 16 x 32 weight, hence only 16. Use r <= 16"),
    ("scaled", dict(use_dora=True), TypeError, r"target '0' \(ScaledLinear\) is not one. Use use_dora=False"),
    ("scaled", dict(init_lora_weights="pissa"), TypeError, r"'0' \(ScaledLinear\) .*init_lora_weights=True"),
])
def test_bad_input_is_refused_naming_the_fix_and_changes_nothing(family, kwargs, error, match, tiny, snapshot):
    if family == "scaled":
        model, targets = nn.Sequential(ScaledLinear(4, 4), nn.Linear(4, 4)), ["0", "1"]
    else:
        model, targets = tiny[family](), ["c_attn"] if family == "gpt2" else ["q_proj", "v_proj"]
    before = snapshot(model)
    with pytest.raises(error, match=match):
        apply_lora(model, targets=targets, **{"r": 4, "alpha": 8, **kwargs})
    assert snapshot(model) == before
    assert isinstance(apply_lora(model, targets=targets, r=4, alpha=8), nn.Module), "plain LoRA still goes"


@pytest.mark.parametrize("qv_only", [False, True])
def test_pissa_refuses_r_above_the_rank_of_a_rank_deficient_weight(qv_only, tiny_gpt2, snapshot):
    """The shape allows r = 4, the rank does not: a direction of singular value 0 would start with A = B = 0 and get
    no gradient (dL/dB = g (A x)^T and dL/dA = B^T g x^T are both 0 there), so PiSSA would train fewer than r."""
    model = tiny_gpt2()
    attn = model.transformer.h[1].attn.c_attn  # Conv1D, (in, out) = (32, 96): q | k | v columns
    with torch.no_grad():  # rank 3: v alone (q keeps rank 32) or the whole layer (every output but 3 all zero)
        attn.weight[:, 64 + 3 if qv_only else 3:] = 0
    before = snapshot(model)
    where = " \\(its lowest adapted part\\)" if qv_only else ""
    with pytest.raises(ValueError, match=rf"'transformer.h.1.attn.c_attn' has rank 3{where}: .*Use r <= 3\."):
        apply_lora(model, targets="c_attn", r=4, alpha=8, qv_only=qv_only, init_lora_weights="pissa")
    assert snapshot(model) == before
    if qv_only:
        model = apply_lora(model, targets="c_attn", r=3, alpha=6, qv_only=True, init_lora_weights="pissa")
        assert is_pissa(model.transformer.h[1].attn.c_attn)


def test_dora_layer_refuses_a_layer_it_cannot_read():
    with pytest.raises(TypeError, match=r"\(Embedding\) is not one. Use use_dora=False"):
        DoRALayer(nn.Embedding(10, 4), r=2, alpha=4)


def test_converting_what_is_not_pissa_is_refused_and_writes_nothing(tmp_path, tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets="c_attn", r=2, alpha=4)
    with pytest.raises(ValueError, match="not initialised with init_lora_weights='pissa'.*convert_pissa=False"):
        save_lora(model, tmp_path / "a", convert_pissa=True)
    with pytest.raises(TypeError, match="convert_pissa must be True or False, got 'yes'"):
        save_lora(model, tmp_path / "a", convert_pissa="yes")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs", [dict(use_rslora=True), dict(use_dora=True), dict(use_dora=True, qv_only=True),
                                    dict(init_lora_weights="pissa"), dict(use_dora=True, use_rslora=True)])
def test_every_variant_saves_and_loads_to_the_same_logits(tmp_path, kwargs, tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets="c_attn" if kwargs.get("qv_only") else ALL_GPT2, r=2, alpha=4, **kwargs)
    train_like(model)
    save_lora(model, tmp_path)
    loaded = load_lora(tiny_gpt2(), tmp_path)
    ids = tokens(model)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    layer = next(iter(lora_layers(loaded).values()))
    assert (layer.use_rslora, isinstance(layer, DoRALayer), is_pissa(layer)) == (
        kwargs.get("use_rslora", False), kwargs.get("use_dora", False), "init_lora_weights" in kwargs)
