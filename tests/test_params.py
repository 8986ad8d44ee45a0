"""minipeft.params: the parameter counter, and every formula against the model transformers (or peft) builds."""

import ast
from pathlib import Path

import pytest
from transformers import GPT2Config, GPT2LMHeadModel, T5Config

from minipeft.params import (
    GPT2_SHAPES,
    ModelSize,
    count_parameters,
    flan_t5_xxl_config,
    gpt2_config,
    gpt2_parameter_count,
    lora_matrix_count,
    lora_parameter_count,
    meta_parameter_count,
    model_sizes,
    prefix_kv_count,
    prefix_parameter_count,
    prompt_parameter_count,
    t5_parameter_count,
)

TINY = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)


def test_gpt2_small_has_124_439_808_parameters_with_tied_embeddings():
    cfg = gpt2_config("gpt2")
    assert gpt2_parameter_count(cfg) == 124_439_808
    assert meta_parameter_count(cfg) == 124_439_808


@pytest.mark.parametrize("name", list(GPT2_SHAPES))
def test_gpt2_formula_matches_the_model_transformers_builds(name):
    cfg = gpt2_config(name)
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head) == GPT2_SHAPES[name]
    assert (cfg.vocab_size, cfg.n_positions) == (50257, 1024)
    assert gpt2_parameter_count(cfg) == meta_parameter_count(cfg)


def test_gpt2_formula_on_an_odd_config_with_n_inner():
    cfg = GPT2Config(n_layer=3, n_embd=48, n_head=4, n_inner=100, vocab_size=77, n_positions=33)
    assert gpt2_parameter_count(cfg) == count_parameters(GPT2LMHeadModel(cfg))


def test_flan_t5_xxl_is_11_1_billion_and_its_formula_matches_transformers():
    cfg = flan_t5_xxl_config()
    # transformers 5 always ties T5's lm_head to the embedding; the released checkpoint has its own head
    assert t5_parameter_count(cfg, tied_head=True) == meta_parameter_count(cfg)
    untied = t5_parameter_count(cfg)
    assert untied - meta_parameter_count(cfg) == cfg.vocab_size * cfg.d_model
    assert 11.1e9 < untied < 11.2e9


def test_t5_formula_on_an_ungated_small_config():
    cfg = T5Config(d_model=32, d_ff=48, d_kv=8, num_heads=3, num_layers=2, num_decoder_layers=3, vocab_size=50)
    assert t5_parameter_count(cfg, tied_head=True) == meta_parameter_count(cfg)



def test_lora_counts():
    assert lora_parameter_count(gpt2_config("gpt2"), 8, ("c_attn",)) == 294_912  # see anchors.md
    medium = gpt2_config("gpt2-medium")
    assert lora_parameter_count(medium, 4, ("q", "v")) == 24 * 2 * 4 * (1024 + 1024)
    small = gpt2_config("gpt2")
    both = lora_parameter_count(small, 2, ("attn.c_proj", "mlp.c_proj"))
    assert lora_parameter_count(small, 2, ("c_proj",)) == both


@pytest.mark.parametrize("targets", [["c_attn"], ["c_proj"], ["c_fc"], ["c_attn", "c_proj", "c_fc"]])
def test_lora_counts_match_peft(targets):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(GPT2LMHeadModel(TINY), LoraConfig(r=4, target_modules=targets, fan_in_fan_out=True))
    assert count_parameters(model, trainable_only=True) == lora_parameter_count(TINY, 4, tuple(targets))


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_counts_match_peft(projection):
    from peft import PrefixTuningConfig, get_peft_model

    cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prefix_projection=projection,
                             encoder_hidden_size=24)
    model = get_peft_model(GPT2LMHeadModel(TINY), cfg)
    expected = prefix_parameter_count(TINY, 5, mlp_hidden=24 if projection else None)
    assert count_parameters(model, trainable_only=True) == expected
    assert prefix_parameter_count(TINY, 5) == 2 * TINY.n_layer * 5 * TINY.n_embd


def test_prompt_counts_match_peft():
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(GPT2LMHeadModel(TINY), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=7))
    assert count_parameters(model, trainable_only=True) == prompt_parameter_count(TINY, 7)


def test_model_sizes_agree_with_the_gpt2_functions():
    sizes = model_sizes()
    for hub_id in GPT2_SHAPES:
        cfg = gpt2_config(hub_id)
        size = next(s for s in sizes.values() if s.source.endswith(hub_id))
        assert size.n_params == gpt2_parameter_count(cfg)
        assert size.lora_params(4) == lora_parameter_count(cfg, 4, ("q", "v"))
        assert size.prefix_params(10) == prefix_parameter_count(cfg, 10)
    assert sizes["flan-t5-xxl (11B)"].n_params == t5_parameter_count(flan_t5_xxl_config())




def test_model_size_counts_t5_lora_on_every_attention_and_a_prefix_on_every_self_attention():
    t5 = model_sizes()["flan-t5-xxl (11B)"]
    assert t5.lora_params(4) == (24 + 2 * 24) * 2 * 4 * (4096 + 4096)  # encoder self, decoder self and cross
    assert t5.prefix_params(10) == 2 * (24 + 24) * 10 * 4096


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="rank r must be a positive"):
        lora_parameter_count(TINY, 0)
    with pytest.raises(ValueError, match="rank r must be a positive"):
        ModelSize("m", 10, 4, 1, 1, "test").lora_params(-1)
    with pytest.raises(ValueError, match="Unknown LoRA target.*Valid: q, k, v"):
        lora_parameter_count(TINY, 4, ("query",))
    with pytest.raises(ValueError, match="Unknown GPT-2 size 'gpt3'"):
        gpt2_config("gpt3")
    with pytest.raises(ValueError, match="Prefix length must be a positive"):
        prefix_parameter_count(TINY, 0)
    with pytest.raises(ValueError, match="Prefix length must be a positive"):
        ModelSize("m", 10, 4, 1, 1, "test").prefix_params(0)
    with pytest.raises(ValueError, match="Prompt length must be a positive"):
        prompt_parameter_count(TINY, -1)
    assert lora_matrix_count(2, [(3, 5), (7, 11)]) == 2 * (3 + 5) + 2 * (7 + 11)
    assert prefix_kv_count(3, 4, 5) == 2 * 3 * 4 * 5


def _package_imports(module: str) -> set[str]:
    """The ``minipeft`` modules that ``minipeft/<module>.py`` imports."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "minipeft" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minipeft"):
            found.add(node.module.removeprefix("minipeft").lstrip(".") or "minipeft")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("minipeft.") for a in node.names if a.name.startswith("minipeft")}
    return found


def test_the_arithmetic_imports_no_experiment():
    """params stands on the ground floor's argument checks alone, memory on params alone: neither knows a notebook's
    run plan."""
    assert _package_imports("checks") == set()
    assert _package_imports("params") == {"checks"}
    assert _package_imports("memory") == {"params"}
