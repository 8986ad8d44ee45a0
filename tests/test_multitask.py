"""minipeft.multitask's AdapterBank with LoRA's descendants: DoRA's magnitudes travel with A and B; PiSSA is refused."""

import copy

import pytest
import torch

from minipeft.lora import apply_lora, lora_layers
from minipeft.lora_files import save_lora
from minipeft.multitask import AdapterBank, lora_state


def _dora(base: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A DoRA adapter as if trained, the same for the same seed: B drawn, every magnitude moved from ||W0||."""
    torch.manual_seed(seed)  # A's Kaiming draw
    model = apply_lora(copy.deepcopy(base), targets=["c_attn", "c_fc"], r=2, alpha=4, use_dora=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(std=0.1, generator=generator)
            layer.lora_magnitude.mul_(1 + 0.5 * torch.rand(layer.lora_magnitude.shape, generator=generator))
    return model


def test_a_bank_of_dora_adapters_swaps_their_magnitudes_too(tiny_gpt2, tmp_path):
    base = tiny_gpt2()
    ids = torch.randint(0, 101, (2, 10), generator=torch.Generator().manual_seed(0))
    expected = {}
    for seed, task in enumerate(("restaurants", "slots")):
        model = _dora(base, seed)
        save_lora(model, tmp_path / task)
        with torch.no_grad():
            expected[task] = model(ids).logits
    served = apply_lora(copy.deepcopy(base), targets=["c_attn", "c_fc"], r=2, alpha=4, use_dora=True)
    bank = AdapterBank(served)
    bank.add("restaurants", tmp_path / "restaurants")  # from a folder
    bank.add("slots", _dora(base, 1))  # from a model
    assert any(".lora_magnitude" in key for key in bank.adapters["slots"])
    for task in ("slots", "restaurants", "slots"):
        bank.use(task)
        with torch.no_grad():
            assert torch.equal(served(ids).logits, expected[task]), task
    plain = apply_lora(copy.deepcopy(base), targets=["c_attn", "c_fc"], r=2, alpha=4)
    with pytest.raises(ValueError, match="is DoRA where the model is not, or the reverse"):
        bank.add("plain", plain)
    with pytest.raises(ValueError, match="is DoRA where the model is not, or the reverse"):
        AdapterBank(plain).add("dora", _dora(base, 2))


def test_a_pissa_model_is_refused_by_name(tiny_gpt2):
    pissa = apply_lora(tiny_gpt2(), targets=["c_fc"], r=2, init_lora_weights="pissa")
    with pytest.raises(ValueError, match="initialised by PiSSA.*convert_pissa=True"):
        AdapterBank(pissa)
    bank = AdapterBank(apply_lora(tiny_gpt2(), targets=["c_fc"], r=2))
    with pytest.raises(ValueError, match="initialised by PiSSA"):
        bank.add("pissa", pissa)
    assert not bank.adapters
    with pytest.raises(ValueError, match="initialised by PiSSA"):
        lora_state(pissa)
