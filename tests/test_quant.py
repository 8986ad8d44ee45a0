"""minipeft.quant: NF4 against QLoRA's table, a hand-computed block and bitsandbytes; the 4-bit linear; QLoRA."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from minipeft.lora import apply_lora, lora_layers, merge_lora, unload_lora
from minipeft.quant import (
    NF4_LEVELS,
    Linear4bit,
    block_scales,
    dequantize_nf4,
    measure_nf4,
    nf4_levels,
    quantize_model,
    quantize_nf4,
    storage_bytes,
)

# QLoRA (Dettmers et al., 2023), Appendix E, "NormalFloat 4-bit data type": the 16 values as the paper prints them
# (float32 values written out; bitsandbytes 0.50.2 ships the same 16 numbers as its CPU table, checked below).
QLORA_NF4_TABLE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def test_nf4_levels_are_the_qlora_table():
    """Derived from the normal quantiles in code, the levels are the paper's table to the last float32 bit."""
    levels = nf4_levels()
    assert torch.equal(levels, torch.tensor(QLORA_NF4_TABLE))
    assert (levels < 0).sum() == 7 and levels[7] == 0 and (levels > 0).sum() == 8, "7 negative, exact zero, 8 positive"
    assert torch.allclose(nf4_levels().double(), torch.tensor(QLORA_NF4_TABLE, dtype=torch.float64), atol=1e-7)
    assert not torch.allclose(nf4_levels(offset=0.99), levels, atol=1e-3), "the offset really places the levels"


def test_a_hand_computed_block_round_trips():
    """Block 1: absmax 2, so 2.0 -> 1 (code 15), -1.0 -> -0.5 -> nearest -0.5251 (code 2), 0.3 -> 0.15 -> 0.1609
    (code 9), 0 -> 0 (code 7); codes pack high nibble first: 0xF2, 0x97. Block 2: all zeros -> code 7, no NaN."""
    block = torch.tensor([2.0, -1.0, 0.3, 0.0]).repeat(16)
    q = quantize_nf4(torch.cat([block, torch.zeros(64)]).view(2, 64))
    assert q.codes.dtype == torch.uint8 and q.codes.numel() == 64, "128 weights, two 4-bit codes per byte"
    assert q.codes[:32].tolist() == [0xF2, 0x97] * 16 and q.codes[32:].tolist() == [0x77] * 32
    assert q.absmax.tolist() == [2.0, 0.0]
    expected = torch.tensor([2 * 1.0, 2 * -0.5250730514526367, 2 * 0.16093020141124725, 0.0]).repeat(16)
    assert torch.equal(dequantize_nf4(q), torch.cat([expected, torch.zeros(64)]).view(2, 64))


@pytest.mark.parametrize("shape", [(64, 96), (5, 7), (3, 64, 2)])
def test_round_trip_error_is_at_most_half_a_level_gap(shape):
    """Every value comes back within half the widest gap between levels times its block's absmax, in its shape
    (shapes that are not a multiple of 64 are zero-padded to whole blocks)."""
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    q = quantize_nf4(w)
    back = dequantize_nf4(q)
    assert back.shape == w.shape
    half_gap = (NF4_LEVELS.diff().max() / 2).item()  # between 0.7230 and 1
    flat = F.pad(w.reshape(-1), (0, -w.numel() % 64)).view(-1, 64)
    bound = (flat.abs().amax(1, keepdim=True) * half_gap).expand(-1, 64).reshape(-1)[:w.numel()].view(shape)
    assert ((back - w).abs() <= bound + 1e-6).all()
    assert torch.equal(quantize_nf4(back).codes, q.codes), "quantising the dequantised weights gives the same codes"


def test_bits_per_weight_measured_from_storage():
    """4 + 32/64 = 4.5 bits; double quantisation: 4 + 8/64 + 32/(64*256) + one 32-bit mean over the tensor."""
    w = torch.randn(256, 256)
    single, double = quantize_nf4(w), quantize_nf4(w, double_quant=True)
    assert 8 * storage_bytes(list(single.tensors().values())) / w.numel() == 4.5
    bits = 8 * storage_bytes(list(double.tensors().values())) / w.numel()
    assert bits == 4 + 8 / 64 + 32 / (64 * 256) + 32 / w.numel()  # 4.1274...
    assert double.absmax.dtype == torch.int8 and torch.equal(double.codes, single.codes)
    scale_error = (block_scales(double) - single.absmax).abs()
    assert (scale_error <= double.absmax_scale.repeat_interleave(256)[:1024] / 254 + 1e-7).all(), "half an 8-bit step"


def test_against_bitsandbytes():
    """Where bitsandbytes imports (it is not a dependency of the course), its CPU NF4 and ours agree exactly: the
    levels, every 4-bit code, every absmax and every dequantised value. Double quantisation: the 4-bit codes agree;
    the 8-bit scales differ (bitsandbytes uses its dynamic 8-bit map, we use a linear one), so only closeness."""
    bnb = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is not installed (optional check)")
    w = torch.randn(128, 192, generator=torch.Generator().manual_seed(3))
    assert torch.equal(NF4_LEVELS, bnb.get_4bit_type("nf4", device="cpu"))
    ours = quantize_nf4(w)
    packed, state = bnb.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.equal(packed.view(-1), ours.codes) and torch.equal(state.absmax, ours.absmax)
    assert torch.equal(dequantize_nf4(ours), bnb.dequantize_4bit(packed, state))
    ours2 = quantize_nf4(w, double_quant=True)
    packed2, state2 = bnb.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert torch.equal(packed2.view(-1), ours2.codes)
    theirs_scales = bnb.dequantize_blockwise(state2.absmax, state2.state2) + state2.offset
    assert (block_scales(ours2) - ours.absmax).abs().max() <= (theirs_scales - ours.absmax).abs().max()


def test_linear4bit_computes_with_the_dequantised_weight(tiny_gpt2):
    """nn.Linear and GPT-2's Conv1D (weight stored (in, out), transposed on the way in): same outputs as the layer
    with its weight replaced by the dequantised one, bias kept in fp32; buffers only, no trainable parameter."""
    torch.manual_seed(0)
    linear, conv = nn.Linear(64, 48), tiny_gpt2().transformer.h[0].attn.c_attn
    inputs = torch.randn(3, 64)
    for layer, x in ((linear, inputs), (conv, inputs[:, :32])):
        q = Linear4bit.from_layer(layer)
        w = dequantize_nf4(q.quantised())
        expected = F.linear(x, w, layer.bias)
        assert q.weight.shape == (q.out_features, q.in_features) and torch.equal(q(x), expected)
        reference = layer.weight.T if isinstance(layer, Conv1D) else layer.weight
        assert (w - reference).abs().max() < 0.2 * reference.abs().max(), "close to the fp32 weight"
        assert not any(p.requires_grad for p in q.parameters()) and q.codes.dtype == torch.uint8


def test_quantize_model_replaces_every_linear_but_lm_head(tiny):
    for family, make in tiny.items():
        base = make()
        ids = torch.randint(0, 101, (2, 10), generator=torch.Generator().manual_seed(0))
        model = quantize_model(copy.deepcopy(base))
        assert not any(isinstance(m, nn.Linear | Conv1D) for n, m in model.named_modules() if n != "lm_head")
        assert isinstance(model.lm_head, nn.Linear), family
        n_linear = sum(isinstance(m, nn.Linear | Conv1D) for m in base.modules()) - 1
        assert sum(isinstance(m, Linear4bit) for m in model.modules()) == n_linear
        with torch.no_grad():
            diff = (model(ids).logits - base(ids).logits).abs().max()
        assert 0 < diff < 0.5, f"{family}: 4-bit logits close to, not equal to, fp32 ({diff:.3g})"


def test_quantize_model_refusals_leave_the_model_unchanged(tiny_llama):
    no_linear = nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8))
    before = copy.deepcopy(no_linear.state_dict())
    with pytest.raises(ValueError, match="No layer to quantise.*none"):
        quantize_model(no_linear)
    assert all(torch.equal(before[k], v) for k, v in no_linear.state_dict().items())
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"outside skip=.*linear layers found: \['down_proj'"):
        quantize_model(model, skip=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                    "lm_head"])
    with_lora = apply_lora(model, targets=["q_proj"], r=2)
    with pytest.raises(ValueError, match="quantise the base first, then call apply_lora"):
        quantize_model(with_lora)
    assert not any(isinstance(m, Linear4bit) for m in with_lora.modules())


def test_lora_on_the_4bit_base_trains_only_A_and_B(tiny_llama):
    """QLoRA: gradients reach lora_A and lora_B only, equal to LoRA's on an fp32 copy of the dequantised weights;
    after AdamW steps the 4-bit codes and scales are bit-for-bit the same and the loss fell."""
    qlora = apply_lora(quantize_model(tiny_llama(), double_quant=True), targets=["q_proj", "v_proj"], r=4, alpha=8)
    reference = tiny_llama()  # the same architecture with the dequantised weights in fp32
    with torch.no_grad():
        for name, m in qlora.named_modules():
            if isinstance(m, Linear4bit):
                reference.get_submodule(name.replace(".base", "")).weight.copy_(m.weight)
    reference = apply_lora(reference, targets=["q_proj", "v_proj"], r=4, alpha=8)
    reference.load_state_dict({k: v for k, v in qlora.state_dict().items() if "lora_" in k}, strict=False)
    with torch.no_grad():
        for layer in lora_layers(qlora).values():
            layer.lora_B.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        for name, layer in lora_layers(reference).items():
            layer.lora_B.copy_(lora_layers(qlora)[name].lora_B)
    ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(2))
    stored = {k: v.clone() for k, v in qlora.named_buffers()}
    for model in (qlora, reference):
        model(input_ids=ids, labels=ids).loss.backward()
    with_grad = {n for n, p in qlora.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, p in qlora.named_parameters() if "lora_" in n} and with_grad
    ref_grads = dict(reference.named_parameters())
    for name, p in qlora.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, ref_grads[name].grad, rtol=1e-5, atol=1e-7), name
    optimizer = torch.optim.AdamW([p for p in qlora.parameters() if p.requires_grad], lr=1e-2)
    first = qlora(input_ids=ids, labels=ids).loss.item()
    for _ in range(5):
        optimizer.zero_grad()
        qlora(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    assert qlora(input_ids=ids, labels=ids).loss.item() < first
    assert all(torch.equal(v, stored[k]) for k, v in qlora.named_buffers()), "the 4-bit weights never change"


def test_merging_into_4bit_is_refused_and_changes_nothing(tiny_gpt2):
    model = apply_lora(quantize_model(tiny_gpt2()), targets="c_attn", r=2, qv_only=True)
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer.base, Linear4bit) and layer.lora_A.shape == (2 * 2, 32), "q-and-v LoRA on 4-bit c_attn"
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    for merge in (merge_lora, lambda m: unload_lora(m, merge=True)):
        with pytest.raises(RuntimeError, match="cannot be written.*Keep the adapter unmerged"):
            merge(model)
        assert not layer.merged and all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="cannot be written"):
        layer.base.weight = torch.zeros(96, 32)


def test_merging_a_model_half_on_4bit_is_refused_before_any_layer_merges(tiny_gpt2):
    """LoRA on fp32 c_attn (met first) and on 4-bit c_fc: merge_lora and unload_lora(merge=True) check every layer
    before merging one, so the fp32 layers stay unmerged too."""
    model = quantize_model(tiny_gpt2(), skip=["lm_head", "c_attn", "c_proj"])
    model = apply_lora(model, targets=["c_attn", "c_fc"], r=2)
    layers = lora_layers(model)
    assert isinstance(next(iter(layers.values())).base, Conv1D), "an fp32 layer comes first"
    assert any(isinstance(layer.base, Linear4bit) for layer in layers.values())
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B.normal_(generator=torch.Generator().manual_seed(0))
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    for merge in (merge_lora, lambda m: unload_lora(m, merge=True)):
        with pytest.raises(RuntimeError, match=r"2 LoRA layer\(s\), e.g. 'transformer.h.0.mlp.c_fc'.*cannot be "
                                               r"written.*nothing was merged"):
            merge(model)
        assert not any(layer.merged for layer in layers.values())
        assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
        assert lora_layers(model).keys() == layers.keys()


def test_a_lora_adapter_loads_onto_the_4bit_base_and_back(tiny_llama, tmp_path, snapshot):
    """An adapter trained in fp32 loads onto the quantised base (its base-weight check compares the dequantised
    weights, within NF4's 1%) and computes what the same A and B compute there; one saved from the 4-bit model
    loads onto 4-bit and fp32 bases. Another checkpoint, or a DoRA adapter (no DoRA on 4-bit), is refused, the
    model left as it was."""
    from minipeft.lora_files import load_lora, save_lora

    ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(2))
    trained = apply_lora(tiny_llama(), targets=["q_proj", "v_proj"], r=4, alpha=8)
    with torch.no_grad():
        for layer in lora_layers(trained).values():
            layer.lora_B.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    save_lora(trained, tmp_path / "fp32")
    loaded = load_lora(quantize_model(tiny_llama()), tmp_path / "fp32")
    by_hand = apply_lora(quantize_model(tiny_llama()), targets=["q_proj", "v_proj"], r=4, alpha=8)
    by_hand.load_state_dict({k: v for k, v in trained.state_dict().items() if "lora_" in k}, strict=False)
    assert all(isinstance(layer.base, Linear4bit) for layer in lora_layers(loaded).values())
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, by_hand(ids).logits)
    save_lora(loaded, tmp_path / "nf4")
    for base in (quantize_model(tiny_llama()), tiny_llama()):
        back = load_lora(base, tmp_path / "nf4")
        assert all(torch.equal(back.state_dict()[k], v) for k, v in loaded.state_dict().items() if "lora_" in k)
    with torch.no_grad():
        assert torch.equal(back(ids).logits, trained(ids).logits), "back on the fp32 base: the fp32 model's logits"

    other = tiny_llama()  # another checkpoint: q and v moved 5% (two random inits have near-equal norms)
    with torch.no_grad():
        for name, module in other.named_modules():
            if name.endswith(("q_proj", "v_proj")):
                module.weight.mul_(1.05)
    other = quantize_model(other)
    before = snapshot(other)
    with pytest.raises(ValueError, match=r"within 1%, as one side is 4-bit NF4.*another checkpoint"):
        load_lora(other, tmp_path / "fp32")
    assert snapshot(other) == before and not lora_layers(other)
    save_lora(apply_lora(tiny_llama(), targets=["q_proj", "v_proj"], r=4, use_dora=True), tmp_path / "dora")
    model = quantize_model(tiny_llama())
    before = snapshot(model)
    with pytest.raises(TypeError, match="use_dora=True needs W0 as a dense nn.Linear.*Linear4bit"):
        load_lora(model, tmp_path / "dora")
    assert snapshot(model) == before and not lora_layers(model)


def test_the_4bit_layer_keeps_no_float_weight_for_the_backward_pass(tiny_llama):
    """Autograd saves nothing of a Linear4bit (the weight is dequantised again for the input's gradient), where
    F.linear on the dequantised weight saves a float32 copy of it; the input's gradient is the same."""
    q = Linear4bit.from_layer(nn.Linear(64, 48))
    x = torch.randn(3, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = q(x)
        reference = F.linear(x, q.weight, q.bias)
    assert sum(saved) == 64 * 48, "only the reference's F.linear saved the float weight"
    grad = torch.randn(3, 48)
    (ours,) = torch.autograd.grad(y, x, grad)
    (theirs,) = torch.autograd.grad(reference, x, grad)
    assert torch.allclose(ours, theirs, atol=1e-6) and torch.equal(y, reference)


def test_measure_nf4_on_a_tiny_llama(tiny_llama):
    """Memory from the storages (fp32: 4 bytes a weight; NF4: 4.5 bits), logit and cross-entropy change; the
    measured model itself stays fp32."""
    model = tiny_llama()
    ids = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(0))
    m = measure_nf4(model, ids)
    weights = sum(mod.weight.numel() for n, mod in model.named_modules() if isinstance(mod, nn.Linear)
                  and n != "lm_head")
    assert m.layers == 2 * 7 and m.weights == weights and m.fp32_bytes == 4 * weights
    assert m.bits_per_weight == 4.5 and m.tokens == 32
    assert 0 < m.mean_logit_diff <= m.max_logit_diff and abs(m.nf4_nats - m.fp32_nats) < 0.1
    assert not any(isinstance(mod, Linear4bit) for mod in model.modules())
    assert "4.500 bits per weight" in str(m)
