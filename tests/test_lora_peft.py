"""minipeft.lora against the oracle, peft: same A and B give the same logits, and adapter files move both ways.

Only these tests need peft; the rest of LoRA's tests (tests/test_lora.py) run without it.
"""

import copy
import re
import warnings

import pytest
import torch
from test_lora import ALL_GPT2, randomise_B, tokens
from torch import nn

from minipeft.lora import apply_lora, lora_layers, merge_lora
from minipeft.lora_files import load_lora, save_lora
from minipeft.params import count_parameters, print_trainable_parameters

peft = pytest.importorskip("peft")


def peft_twin(base: nn.Module, ours: nn.Module, targets, r: int, alpha: float, fan_in_fan_out: bool) -> nn.Module:
    """peft's LoRA on a copy of ``base`` with our A and B copied in (B as full_B: see the q-and-v test)."""
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, fan_in_fan_out=fan_in_fan_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config)
    weights = {}
    for name, layer in lora_layers(ours).items():
        weights[f"base_model.model.{name}.lora_A.default.weight"] = layer.lora_A.detach()
        weights[f"base_model.model.{name}.lora_B.default.weight"] = layer.full_B().detach()
    result = twin.load_state_dict(weights, strict=False)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if "lora_" in k], "every peft LoRA weight must come from ours"
    return twin.eval()


def test_conv1d_targets_match_peft(gpt2):
    ours = apply_lora(copy.deepcopy(gpt2), targets=ALL_GPT2, r=4, alpha=8)
    randomise_B(ours)
    twin = peft_twin(gpt2, ours, ALL_GPT2, r=4, alpha=8, fan_in_fan_out=True)
    ids = tokens(gpt2)
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, twin(ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(ours(ids).logits, gpt2(ids).logits, atol=1e-3), "B != 0 must change the output"
    assert (count_parameters(ours, trainable_only=True), count_parameters(ours)) == twin.get_nb_trainable_parameters()


def test_linear_targets_match_peft(capsys):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    ours = apply_lora(copy.deepcopy(base), targets=["0", "2"], r=3, alpha=6)
    assert all(not layer.fan_in_fan_out for layer in lora_layers(ours).values())
    randomise_B(ours)
    twin = peft_twin(base, ours, ["0", "2"], r=3, alpha=6, fan_in_fan_out=False)
    x = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), twin(x), atol=1e-5, rtol=0)
    print_trainable_parameters(ours)
    twin.print_trainable_parameters()
    mine, theirs = capsys.readouterr().out.splitlines()
    lora = 3 * (16 + 32) + 3 * (32 + 8)  # r * (in + out) per layer
    base_count = (16 * 32 + 32) + (32 * 8 + 8)
    assert mine == theirs == f"trainable params: {lora} || all params: {base_count + lora:,d} || trainable%: " \
        f"{100 * lora / (base_count + lora):.4f}"


def test_llama_q_and_v_match_peft(tmp_path, tiny_llama):
    """On a Llama-family model the paper's q-and-v setting is two nn.Linear targets, q_proj and v_proj; v_proj is
    narrower than q_proj under grouped-query attention (2 key/value heads x 8 = 16 outputs vs 32)."""
    base = tiny_llama()
    ours = apply_lora(copy.deepcopy(base), targets=["q_proj", "v_proj"], r=4, alpha=8)
    assert {name.rsplit(".", 1)[-1]: layer.out_features for name, layer in lora_layers(ours).items()} == {
        "q_proj": 32, "v_proj": 16}
    randomise_B(ours)
    twin = peft_twin(base, ours, ["q_proj", "v_proj"], r=4, alpha=8, fan_in_fan_out=False)
    ids = tokens(base)
    with torch.no_grad():
        expected = ours(ids).logits
        assert torch.allclose(expected, twin(ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(expected, base(ids).logits, atol=1e-3), "B != 0 must change the output"
    n_lora = 2 * 4 * ((32 + 32) + (32 + 16))  # layers x r x ((in + out) of q_proj + (in + out) of v_proj)
    n_base = sum(p.numel() for p in base.parameters())
    assert (count_parameters(ours, trainable_only=True), count_parameters(ours)) == (n_lora, n_base + n_lora)
    assert twin.get_nb_trainable_parameters() == (n_lora, n_base + n_lora)
    save_lora(ours, tmp_path / "ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    loaded = load_lora(copy.deepcopy(base), tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.allclose(in_peft(ids).logits, expected, atol=1e-5, rtol=0)
        assert torch.equal(loaded(ids).logits, expected)
        merged = merge_lora(loaded)(ids).logits
    assert torch.allclose(merged, expected, atol=1e-5, rtol=0)


def test_qv_only_matches_peft_equivalent(tiny_gpt2):
    """peft cannot adapt only q and v of GPT-2's fused c_attn (q|k|v in one Conv1D): its LoRA of rank 2r on the
    whole c_attn with A = [A_q; A_v] and B = [[B_q, 0], [0, 0], [0, B_v]] (k rows zero) is the same function, so its
    logits must agree. alpha doubles with r to keep alpha/r (the algebra by hand: test_lora.py)."""
    base, r, alpha = tiny_gpt2(), 4, 8
    ours = apply_lora(copy.deepcopy(base), targets="c_attn", r=r, alpha=alpha, qv_only=True)
    randomise_B(ours)
    twin = peft_twin(base, ours, ["c_attn"], r=2 * r, alpha=2 * alpha, fan_in_fan_out=True)
    ids = tokens(base)
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, twin(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("qv_only", [False, True])
def test_adapters_move_between_minipeft_and_peft(tmp_path, qv_only, tiny_gpt2):
    base = tiny_gpt2()
    targets = ["c_attn"] if qv_only else ALL_GPT2
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=4, alpha=8, qv_only=qv_only)
    randomise_B(ours)
    save_lora(ours, tmp_path / "ours")
    ids = tokens(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
        in_peft.save_pretrained(tmp_path / "peft")
    back = load_lora(copy.deepcopy(base), tmp_path / "peft")  # peft's files, without minipeft_adapter.json
    with torch.no_grad():
        expected = ours(ids).logits
        assert torch.allclose(in_peft(ids).logits, expected, atol=1e-5, rtol=0)
        assert torch.allclose(back(ids).logits, expected, atol=1e-5, rtol=0)


def test_peft_options_we_do_not_implement_are_refused(tmp_path, tiny_gpt2, snapshot):
    base = tiny_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights="olora")
        olora = peft.get_peft_model(copy.deepcopy(base), config)
    olora.save_pretrained(tmp_path)
    fresh = tiny_gpt2()
    before = snapshot(fresh)
    with pytest.raises(ValueError, match="init_lora_weights='olora'.*PeftModel.from_pretrained"):
        load_lora(fresh, tmp_path)
    assert snapshot(fresh) == before


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("option, named", [
    (dict(lora_bias=True), "lora_bias=True"),  # B gets a bias: other logits if it were dropped
    (dict(alora_invocation_tokens=[5, 6]), "alora_invocation_tokens=[5, 6]"),  # activated LoRA: only after these
    (dict(init_lora_weights="olora"), "init_lora_weights='olora'"),  # QR instead of SVD; W0 changed too
    (dict(init_lora_weights="pissa_niter_2"), "init_lora_weights='pissa_niter_2'"),  # randomised SVD
    (dict(rank_pattern={"c_attn": 4, "q_proj": 4}), "rank_pattern="),
    (dict(layers_to_transform=[0]), "layers_to_transform=[0]"),
    (dict(use_dora=True, rank_pattern={"c_attn": 4, "q_proj": 4}), "rank_pattern="),  # DoRA, but not with this
])
def test_peft_adapters_with_options_minipeft_does_not_implement_are_refused(tmp_path, family, option, named, tiny,
                                                                              snapshot):
    targets, fan_in_fan_out = (["c_attn"], True) if family == "gpt2" else (["q_proj", "v_proj"], False)
    with warnings.catch_warnings():  # peft warns about experimental options, and at saving takes lora_B's
        warnings.simplefilter("ignore")  # 1-D bias (lora_bias) for an ungathered ZeRO-3 shard
        theirs = peft.get_peft_model(tiny[family](), peft.LoraConfig(
            r=2, target_modules=targets, fan_in_fan_out=fan_in_fan_out, task_type="CAUSAL_LM", **option))
        theirs.save_pretrained(tmp_path)
    model = tiny[family]()
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"adapter_config.json uses .*{re.escape(named)}.*PeftModel.from_pretrained"):
        load_lora(model, tmp_path)
    assert snapshot(model) == before


# LoRA on a 16-bit base keeps A and B in the base's dtype (as loralib); peft with autocast_adapter_dtype=False does
# the same, and the two compute the same products in the same order, so the logits agree bit for bit on the CPU. The
# tolerance allows another device's order of sums: 4 units in the last place of logits below 1 in size (2**-8 in
# bfloat16, 2**-11 in float16).
LOW_PRECISION = {torch.bfloat16: 4 * 2.0**-8, torch.float16: 4 * 2.0**-11}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_16_bit_base_models_match_peft(family, dtype, tiny):
    base = tiny[family]().to(dtype)
    targets, fan_in_fan_out = (["c_attn"], True) if family == "gpt2" else (["q_proj", "v_proj"], False)
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=4, alpha=8)
    randomise_B(ours)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, fan_in_fan_out=fan_in_fan_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = peft.get_peft_model(copy.deepcopy(base), config, autocast_adapter_dtype=False)
    twin.load_state_dict({f"base_model.model.{n}.lora_{m}.default.weight": getattr(layer, f"lora_{m}")
                          for n, layer in lora_layers(ours).items() for m in "AB"}, strict=False)
    ids = tokens(base)
    with torch.no_grad():
        a, b = ours(ids).logits, twin.eval()(ids).logits
    assert a.dtype == dtype and a.abs().max() < 1 and not torch.equal(a, base(ids).logits)
    torch.testing.assert_close(a, b, atol=LOW_PRECISION[dtype], rtol=LOW_PRECISION[dtype])
