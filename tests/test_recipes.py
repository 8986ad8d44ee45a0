"""The recipe table and its one method factory, ``minipeft.recipes.build``."""

import pytest
import torch
from conftest import make_tiny_gpt2

from minipeft.dora import DoRALayer
from minipeft.lora import apply_lora, lora_layers
from minipeft.pissa import is_pissa
from minipeft.prefix import PrefixTuningModel, PromptTuningModel
from minipeft.quant import Linear4bit, quantize_model
from minipeft.recipes import FAMILY, METHODS, PAPER_SCHEDULES, RECIPES, SHORT_NAMES, build, method_name, recipe_for

GPT2_RECIPE = RECIPES["gpt2"]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_build_makes_what_the_hand_built_models_were(tiny, family):
    """Same layers, same trainable tensors, drawn in the same order from the same seed, as the builders it replaced."""
    recipe = recipe_for(tiny[family]())
    torch.manual_seed(3)
    by_hand = apply_lora(tiny[family](), **recipe.lora)
    lora_hand = _state(by_hand)
    torch.manual_seed(3)
    built = build("LoRA", tiny[family]())
    assert lora_layers(built).keys() == lora_layers(by_hand).keys() and _same(_state(built), lora_hand)

    torch.manual_seed(3)
    prefix_hand = _state(PrefixTuningModel(tiny[family](), recipe.prefix_len, mlp_hidden=recipe.mlp_hidden))
    torch.manual_seed(3)
    assert _same(_state(build("prefix-tuning", tiny[family]())), prefix_hand)

    frozen = tiny[family]().requires_grad_(False)
    full = build("full", frozen)
    assert full is frozen and all(p.requires_grad for p in full.parameters())


def test_build_overrides_what_experiments_vary(tiny_gpt2):
    model = build("lora", tiny_gpt2(), GPT2_RECIPE, r=8, alpha=16, targets="all")
    layers = lora_layers(model)
    assert {name.rsplit(".", 1)[-1] for name in layers} == {"c_attn", "c_proj", "c_fc"}
    assert all(layer.r == 8 and layer.scaling == 2 and layer.chunks is None for layer in layers.values())
    qv = lora_layers(build("lora", tiny_gpt2(), GPT2_RECIPE, targets="qv"))
    assert all(name.endswith("c_attn") and layer.chunks == (True, False, True) and layer.r == 4
               for name, layer in qv.items())
    listed = lora_layers(build("lora", tiny_gpt2(), GPT2_RECIPE, targets=["c_fc"]))
    assert all(name.endswith("c_fc") and layer.chunks is None for name, layer in listed.items())
    prefix = build("prefix", tiny_gpt2(), GPT2_RECIPE, prefix_len=3, mlp_hidden=7)
    assert prefix.prefix_len == 3 and prefix.key_values(1)[0][0].shape[2] == 3


def test_build_refuses_an_unknown_method_and_leaves_the_model_alone(tiny_gpt2, snapshot):
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises(ValueError, match="Unknown method 'adapter': use one of full fine-tuning, prefix-tuning, LoRA"):
        build("adapter", model)
    assert snapshot(model) == before
    assert method_name("lora") == "LoRA" and method_name("prefix-tuning") == "prefix-tuning"


def test_lesson_rates_fall_back_to_notebook_05s():
    mini = RECIPES["mini-gpt2"]
    assert mini.rate("full fine-tuning", notebook="01") == 1e-3  # notebook 01's own rate for its short run
    assert RECIPES["smollm2-135m"].rate("full fine-tuning", notebook="01") == RECIPES["smollm2-135m"].lr[
        "full fine-tuning"] == 1.5e-4
    assert GPT2_RECIPE.rate("LoRA", notebook="03") == 2e-4 != GPT2_RECIPE.rate("LoRA") == 5e-4
    assert mini.rate("prompt-tuning", notebook="02") == 1e-1
    assert RECIPES["smollm2-135m"].rate("prompt-tuning", notebook="02") == 1e-1  # notebook 02 trains it on SmolLM2
    assert RECIPES["smollm2-135m"].rate("prefix-tuning", notebook="02") == RECIPES["smollm2-135m"].lr["prefix-tuning"]
    with pytest.raises(ValueError, match="No learning rate for 'prompt-tuning' in this recipe.*rate check"):
        mini.rate("prompt-tuning")  # a method build knows, but no lesson and no recipe says its rate


def test_the_papers_recipe_and_schedules():
    paper = RECIPES["papers-gpt2-medium"]
    assert paper.lr == {"full fine-tuning": 5e-5, "prefix-tuning": 5e-5, "LoRA": 2e-4}
    assert paper.lora == {"targets": ["c_attn"], "r": 4, "alpha": 32, "qv_only": True, "dropout": 0.1}
    assert (paper.prefix_len, paper.mlp_hidden) == (10, 512)
    lora, prefix = PAPER_SCHEDULES["LoRA"], PAPER_SCHEDULES["prefix-tuning"]
    assert (lora.batch_size, lora.epochs, lora.warmup_steps, lora.weight_decay, lora.label_smoothing,
            lora.num_beams) == (8, 5, 500, 0.01, 0.1, 10)
    assert (prefix.batch_size, prefix.epochs, prefix.num_beams, prefix.label_smoothing) == (5, 10, 5, 0.0)


def test_a_gpt2_medium_model_gets_its_familys_lessons_not_the_papers_recipe(tiny_gpt2):
    # MINIPEFT_GPT2_MODEL=gpt2-medium: notebooks 02-04 must keep their lesson rates (the papers' recipe has none)
    model = tiny_gpt2()
    model.name_or_path = "gpt2-medium"
    assert recipe_for(model) is RECIPES["gpt2"]
    assert recipe_for(model).rate("prompt-tuning", notebook="02") == 1e-1


FAMILY_BY_HAND = {  # each family method as notebook 08 builds it by hand, with the recipe's LoRA settings
    "rsLoRA": lambda model, lora, recipe: apply_lora(model, **lora, use_rslora=True),
    "DoRA": lambda model, lora, recipe: apply_lora(model, **lora, use_dora=True),
    "PiSSA": lambda model, lora, recipe: apply_lora(model, **lora, init_lora_weights="pissa"),
    "QLoRA": lambda model, lora, recipe: apply_lora(quantize_model(model), **lora),
    "prompt-tuning": lambda model, lora, recipe: PromptTuningModel(model, recipe.prompt_len),
}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", FAMILY)
def test_build_makes_the_lora_family_and_prompt_tuning_as_by_hand(tiny, family, method):
    recipe = recipe_for(tiny[family]())
    torch.manual_seed(3)
    by_hand = FAMILY_BY_HAND[method](tiny[family](), dict(recipe.lora), recipe)
    torch.manual_seed(3)
    short = next(k for k, v in SHORT_NAMES.items() if v == method)
    built = build(short, tiny[family]())
    assert type(built) is type(by_hand) and _same(_state(built), _state(by_hand))
    assert built.state_dict().keys() == by_hand.state_dict().keys()
    assert all(torch.equal(v, by_hand.state_dict()[k]) for k, v in built.state_dict().items())
    layers = lora_layers(built).values()
    if method == "prompt-tuning":
        assert not layers and built.prompt_len == recipe.prompt_len == 10
        assert _state(built).keys() == {"prompt"}
        return
    assert layers and all(layer.use_rslora == (method == "rsLoRA") and isinstance(layer, DoRALayer) == (
        method == "DoRA") and is_pissa(layer) == (method == "PiSSA") and isinstance(layer.base, Linear4bit) == (
        method == "QLoRA") for layer in layers)


def test_every_method_has_one_name_and_its_short_name():
    assert set(SHORT_NAMES.values()) == set(METHODS + FAMILY)
    assert all(method_name(short) == name and method_name(name) == name for short, name in SHORT_NAMES.items())
    assert build("prompt", make_tiny_gpt2(), prompt_len=3).prompt_len == 3


def test_qlora_with_targets_the_model_lacks_is_refused_before_quantising(tiny_llama, snapshot):
    model = tiny_llama()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"No module of the model matches targets \['c_attn'\]"):
        build("qlora", model, targets=["c_attn"])
    with pytest.raises(ValueError, match="LoRA rank r"):
        build("qlora", model, r=0)
    assert snapshot(model) == before and not any(isinstance(m, Linear4bit) for m in model.modules())
