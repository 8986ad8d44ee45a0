"""rsLoRA, DoRA and PiSSA against the oracle, peft: same weights give the same logits and the same gradient on every
trainable tensor (within 1e-5 relative, float32), merging agrees, and adapter files move both ways.

GPT-2 (Conv1D) q-and-v only (the course's chunked c_attn, which peft sees as rank 2r on the whole c_attn) and on
whole layers; a Llama with grouped-query attention (nn.Linear, k_proj and v_proj narrower than q_proj), q and v only
and every projection of attention and MLP. The algebra by hand,
without peft: tests/test_lora_family.py.
"""

import copy
import warnings

import pytest
import torch
from conftest import train_like
from test_lora import ALL_GPT2, ALL_LLAMA, tokens
from test_lora_peft import LOW_PRECISION
from torch import nn

from minipeft.dora import DoRALayer
from minipeft.lora import apply_lora, lora_layers, merge_lora, unmerge_lora
from minipeft.lora_files import _compact_B, load_lora, save_lora
from minipeft.params import count_parameters

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = {  # family, apply_lora targets, qv_only
    "gpt2-qv": ("gpt2", ["c_attn"], True),
    "gpt2-all": ("gpt2", ALL_GPT2, False),
    "llama": ("llama", ["q_proj", "v_proj"], False),
    "llama-all": ("llama", ALL_LLAMA, False),  # k_proj as narrow as v_proj (GQA), o_proj and the MLP too
}
VARIANTS = {
    "rslora": dict(use_rslora=True),
    "dora": dict(use_dora=True),
    "dora-rslora": dict(use_dora=True, use_rslora=True),
    "pissa": dict(init_lora_weights="pissa"),
}
CASES = [(s, v) for s in SETTINGS for v in VARIANTS]
R, ALPHA = 4, 8


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


def build(setting: str, variant: str, tiny) -> tuple[nn.Module, nn.Module, list[str]]:
    family, targets, qv_only = SETTINGS[setting]
    base = tiny[family]()
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=R, alpha=ALPHA, qv_only=qv_only, **VARIANTS[variant])
    return base, ours, targets



def residual_base(base: nn.Module, ours: nn.Module) -> nn.Module:
    """``base`` with PiSSA's residual weights in place of W0."""
    residual = copy.deepcopy(base)
    for name, layer in lora_layers(ours).items():
        residual.get_submodule(name).weight.data.copy_(layer.base.weight)
    return residual


def peft_twin(base: nn.Module, ours: nn.Module, setting: str, variant: str) -> nn.Module:
    """peft's model of the same adapter: its own initialisation (PiSSA: its own SVD), then our A, B (and m).

    PiSSA on q and v takes the SVD of W_q and W_v, which peft cannot (it takes the whole c_attn's): its twin is
    peft's plain LoRA on our residual weights."""
    family, targets, qv_only = SETTINGS[setting]
    groups = 2 if qv_only else 1  # q-and-v in peft: rank 2r on the whole c_attn, k rows of B zero, same scaling
    kw = VARIANTS[variant]
    if qv_only and variant == "pissa":
        base, kw = residual_base(base, ours), {}
    alpha = ALPHA * (groups ** 0.5 if kw.get("use_rslora") else groups)
    config = peft.LoraConfig(r=R * groups, lora_alpha=alpha, target_modules=targets, fan_in_fan_out=family == "gpt2",
                             **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config)
    twin.load_state_dict(peft_weights(ours), strict=False)
    return twin.eval()


def peft_weights(ours: nn.Module) -> dict[str, torch.Tensor]:
    weights = {}
    for name, layer in lora_layers(ours).items():
        prefix = f"base_model.model.{name}"
        weights[f"{prefix}.lora_A.default.weight"] = layer.lora_A.detach()
        weights[f"{prefix}.lora_B.default.weight"] = layer.full_B().detach()
        if isinstance(layer, DoRALayer):
            weights[f"{prefix}.lora_magnitude_vector.default.weight"] = layer.full_magnitude()
    return weights


def gradients(ours: nn.Module, twin: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, our gradient, peft's gradient of the same numbers) for every trainable tensor of ours."""
    theirs = dict(twin.named_parameters())
    pairs = []
    for name, layer in lora_layers(ours).items():
        prefix = f"base_model.model.{name}"
        pairs.append((f"{name}.lora_A", layer.lora_A.grad, theirs[f"{prefix}.lora_A.default.weight"].grad))
        pairs.append((f"{name}.lora_B", layer.lora_B.grad,
                      _compact_B(layer, theirs[f"{prefix}.lora_B.default.weight"].grad)))
        if isinstance(layer, DoRALayer):
            m = theirs[f"{prefix}.lora_magnitude_vector.default.weight"].grad
            pairs.append((f"{name}.lora_magnitude", layer.lora_magnitude.grad, m[layer.rows] if layer.chunks else m))
    assert len(pairs) == sum(p.requires_grad for p in ours.parameters()), "every trainable tensor is compared"
    assert len(pairs) == sum(p.requires_grad for p in twin.parameters()), "and peft trains the same tensors"
    return pairs


@pytest.mark.parametrize("setting, variant", CASES)
def test_logits_and_gradients_match_peft(setting, variant, tiny):
    base, ours, _ = build(setting, variant, tiny)
    twin = peft_twin(base, ours, setting, variant)
    ids = tokens(base)
    if variant == "pissa":  # before training: peft's SVD gave the same A, B and residual, and the model is unchanged
        for name, layer in lora_layers(ours).items():
            theirs = twin.get_submodule(f"base_model.model.{name}")
            assert torch.allclose(layer.base.weight, theirs.base_layer.weight, atol=1e-6, rtol=0)
        with torch.no_grad():
            assert torch.allclose(ours(ids).logits, base(ids).logits, atol=1e-5, rtol=0)
    train_like(ours)
    twin.load_state_dict(peft_weights(ours), strict=False)
    loss = ours(ids, labels=ids).loss
    loss.backward()
    their_loss = twin(input_ids=ids, labels=ids).loss
    their_loss.backward()
    with torch.no_grad():
        assert relative_error(ours(ids).logits, twin(ids).logits) < 1e-5
        assert relative_error(ours(ids).logits, base(ids).logits) > 1e-3, "the trained adapter changes the output"
    for name, mine, theirs in gradients(ours, twin):
        assert mine is not None and theirs.norm() > 0, name
        assert relative_error(mine, theirs) < 1e-5, name
    if not SETTINGS[setting][2]:  # peft's q-and-v twin trains the zero k blocks too
        assert (count_parameters(ours, trainable_only=True), count_parameters(ours)) == \
            twin.get_nb_trainable_parameters()


@pytest.mark.parametrize("setting, variant", CASES)
def test_merge_and_unmerge_match_peft(setting, variant, tiny):
    """Merged weights equal peft's merged weights (DoRA on Conv1D included: peft unmerged it wrongly until #3531),
    the merged model computes what the unmerged one does, and unmerging gives the weights back."""
    base, ours, _ = build(setting, variant, tiny)
    twin = peft_twin(base, ours, setting, variant)
    train_like(ours)
    twin.load_state_dict(peft_weights(ours), strict=False)
    ids = tokens(base)
    before = {name: layer.base.weight.clone() for name, layer in lora_layers(ours).items()}
    with torch.no_grad():
        expected = ours(ids).logits
        merge_lora(ours)
        twin.merge_adapter()
        for name, layer in lora_layers(ours).items():
            theirs = twin.get_submodule(f"base_model.model.{name}").base_layer.weight
            assert relative_error(layer.base.weight, theirs) < 1e-6, name
        assert relative_error(ours(ids).logits, expected) < 1e-5
        unmerge_lora(ours)
        twin.unmerge_adapter()
        for name, layer in lora_layers(ours).items():
            theirs = twin.get_submodule(f"base_model.model.{name}").base_layer.weight
            assert torch.allclose(layer.base.weight, before[name], atol=1e-6, rtol=0), name
            assert torch.allclose(theirs, before[name], atol=1e-5, rtol=0), name
        assert relative_error(ours(ids).logits, expected) < 1e-5


@pytest.mark.parametrize("setting, variant", CASES)
def test_adapter_files_move_between_minipeft_and_peft(tmp_path, setting, variant, tiny):
    """Ours -> peft and peft's own save -> ours, onto the original base model (PiSSA: loading re-runs the SVD;
    PiSSA on q and v is saved converted, as a plain LoRA for the original weights)."""
    base, ours, _ = build(setting, variant, tiny)
    train_like(ours)
    convert = setting == "gpt2-qv" and variant == "pissa"
    save_lora(ours, tmp_path / "ours", convert_pissa=convert)
    ids = tokens(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
        in_peft.save_pretrained(tmp_path / "peft")
    again = load_lora(copy.deepcopy(base), tmp_path / "ours")
    back = load_lora(copy.deepcopy(base), tmp_path / "peft")  # peft's files, without minipeft_adapter.json
    with torch.no_grad():
        expected = ours(ids).logits
        assert relative_error(again(ids).logits, expected) < 1e-5 if convert else torch.equal(again(ids).logits,
                                                                                              expected)
        assert relative_error(in_peft(ids).logits, expected) < 1e-5
        assert relative_error(back(ids).logits, expected) < 1e-5
    assert {type(layer) for layer in lora_layers(back).values()} == {type(layer) for layer in
                                                                     lora_layers(ours).values()}


@pytest.mark.parametrize("family, targets", [("gpt2", ALL_GPT2), ("llama", ["q_proj", "v_proj"])])
@pytest.mark.parametrize("use_rslora", [False, True])
def test_pissa_converted_for_the_original_weights_matches_peft(tmp_path, family, targets, use_rslora, tiny):
    """convert_pissa=True writes what peft's path_initial_model_for_weight_conversion writes: a plain LoRA of rank
    2r, [A ; A0] and [B | -B0], that gives the trained model on the ORIGINAL base, in peft and in minipeft."""
    base = tiny[family]()
    kw = dict(r=R, alpha=ALPHA, use_rslora=use_rslora, init_lora_weights="pissa")
    ours = apply_lora(copy.deepcopy(base), targets=targets, **kw)
    config = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=targets, fan_in_fan_out=family == "gpt2",
                             use_rslora=use_rslora, init_lora_weights="pissa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config)
        twin.save_pretrained(tmp_path / "peft-init")  # peft needs the initial adapter on disk to convert
        train_like(ours)
        twin.load_state_dict(peft_weights(ours), strict=False)
        twin.save_pretrained(tmp_path / "peft", path_initial_model_for_weight_conversion=tmp_path / "peft-init")
        save_lora(ours, tmp_path / "ours", convert_pissa=True)
        in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    from safetensors.torch import load_file
    mine, theirs = load_file(tmp_path / "ours" / "adapter_model.safetensors"), load_file(
        tmp_path / "peft" / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    assert all(relative_error(mine[k], theirs[k]) < 1e-6 for k in mine)
    loaded = load_lora(copy.deepcopy(base), tmp_path / "ours")
    assert all(layer.r == 2 * R and layer.scaling == pytest.approx(next(iter(lora_layers(ours).values())).scaling)
               for layer in lora_layers(loaded).values())
    ids = tokens(base)
    with torch.no_grad():
        expected = ours(ids).logits
        assert relative_error(in_peft(ids).logits, expected) < 1e-5
        assert relative_error(loaded(ids).logits, expected) < 1e-5
        assert relative_error(expected, base(ids).logits) > 1e-3


@pytest.mark.parametrize("family, targets", [("gpt2", ALL_GPT2), ("llama", ["q_proj", "v_proj"])])
def test_dora_with_dropout_in_training_matches_peft(family, targets, tiny):
    """While training, dropout acts on the input of the whole DoRA update: W0 x is recomputed on the dropped-out x
    (peft's (m/||V|| - 1) W0 dropout(x) term). Same seed, same dropout masks, same logits and gradients."""
    base = tiny[family]()
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=R, alpha=ALPHA, dropout=0.25, use_dora=True).train()
    config = peft.LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.25, target_modules=targets, use_dora=True,
                             fan_in_fan_out=family == "gpt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config).train()
    train_like(ours)
    twin.load_state_dict(peft_weights(ours), strict=False)
    ids = tokens(base)
    torch.manual_seed(5)
    mine = ours(ids, labels=ids)
    torch.manual_seed(5)
    theirs = twin(input_ids=ids, labels=ids)
    assert relative_error(mine.logits, theirs.logits) < 1e-5
    with torch.no_grad():
        assert relative_error(ours.eval()(ids).logits, mine.logits) > 1e-3, "dropout was on"
    mine.loss.backward()
    theirs.loss.backward()
    for name, g, h in gradients(ours, twin):
        assert relative_error(g, h) < 1e-5, name


@pytest.mark.parametrize("variant", ["dora", "pissa"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_16_bit_base_models_match_peft(family, dtype, variant, tiny):
    """On a 16-bit base the adapter keeps the base's dtype (peft with autocast_adapter_dtype=False does too): the
    logits agree bit for bit on the CPU (measured), within LOW_PRECISION's tolerance elsewhere."""
    base = tiny[family]().to(dtype)
    targets = ["c_attn"] if family == "gpt2" else ["q_proj", "v_proj"]
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=R, alpha=ALPHA, **VARIANTS[variant])
    config = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=targets, fan_in_fan_out=family == "gpt2",
                             **VARIANTS[variant])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config, autocast_adapter_dtype=False).eval()
    train_like(ours)
    twin.load_state_dict(peft_weights(ours), strict=False)
    ids = tokens(base)
    with torch.no_grad():
        a, b = ours(ids).logits, twin(ids).logits
    assert a.dtype == dtype and a.abs().max() < 1 and not torch.equal(a, base(ids).logits)
    torch.testing.assert_close(a, b, atol=LOW_PRECISION[dtype], rtol=LOW_PRECISION[dtype])


def test_a_zero_weight_row_is_finite_where_peft_0_21_gives_nan_and_equal_to_peft_elsewhere():
    """A fresh DoRA adapter on a layer with an all-zero weight row (peft issue #2049): peft 0.21.x divides 0 by 0 and
    returns NaN in that output (and in the next layer's); ours keeps the row the base model's, and agrees with peft
    on every other output within 1e-5 relative."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with torch.no_grad():
        base[0].weight[1] = 0
    ours = apply_lora(copy.deepcopy(base), targets=["0", "2"], r=2, alpha=4, use_dora=True)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"], use_dora=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config).eval()
    twin.load_state_dict(peft_weights(ours), strict=False)
    x = torch.randn(5, 4)
    with torch.no_grad():
        mine, theirs = ours[0](x), twin.base_model.model[0](x)
        assert torch.isfinite(mine).all() and torch.equal(mine[:, 1], base[0](x)[:, 1])
        assert relative_error(mine[:, [0, 2]], theirs[:, [0, 2]]) < 1e-5
        if peft.__version__.startswith("0.21."):
            assert theirs[:, 1].isnan().all(), "peft 0.21.x: 0 / 0 on the zero row (if fixed, update the notebook)"
