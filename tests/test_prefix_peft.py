"""Prefix-tuning and prompt tuning against the oracle, peft: the same prefix gives the same logits and loss.

Only these tests need peft; the rest of the prefix tests (tests/test_prefix.py) run without it.
"""

import pytest
import torch
from test_prefix import FAMILIES, LOW_PRECISION, P, padded_batch, trainable

from minipeft.prefix import PrefixTuningModel, PromptTuningModel

peft = pytest.importorskip("peft")


@pytest.fixture(params=["tiny", "mini", "llama"])
def any_base(request, tiny):
    """The tiny GPT-2, the course's mini GPT-2 and the tiny Llama."""
    if request.param == "mini":
        return request.getfixturevalue("mini_gpt2")
    return tiny["gpt2" if request.param == "tiny" else "llama"]()


def peft_copy(base: torch.nn.Module, config) -> torch.nn.Module:
    """peft's model around an exact copy of ``base`` (peft edits the model it wraps)."""
    twin = type(base)(base.config).to(base.dtype).eval()
    twin.load_state_dict(base.state_dict())
    return peft.get_peft_model(twin, config).eval()


def copy_prefix_into_peft(ours: PrefixTuningModel, theirs) -> None:
    encoder = theirs.prompt_encoder["default"]
    with torch.no_grad():
        if ours.mlp is None:  # peft's layout is ours: one [P, n_layer * 2 * n_embd] matrix
            encoder.embedding.weight.copy_(ours.prefix)
        else:
            encoder.embedding.weight.copy_(ours.prefix_input)
            for i in (0, 2):
                encoder.transform[i].weight.copy_(ours.mlp[i].weight)
                encoder.transform[i].bias.copy_(ours.mlp[i].bias)


@pytest.mark.parametrize("mlp_hidden", [None, 24])
def test_prefix_logits_equal_peft(any_base, mlp_hidden):
    base = any_base
    torch.manual_seed(2)
    ours = PrefixTuningModel(base, P, mlp_hidden=mlp_hidden)
    theirs = peft_copy(base, peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, prefix_projection=mlp_hidden is not None,
        encoder_hidden_size=mlp_hidden or base.config.hidden_size))
    copy_prefix_into_peft(ours, theirs)
    ids, mask = padded_batch(base.config.vocab_size)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask, labels=labels), theirs(input_ids=ids, attention_mask=mask, labels=labels)
    assert a.logits.shape == b.logits.shape == (*ids.shape, base.config.vocab_size)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    assert trainable(ours) == trainable(theirs)
    # and the silent bug is real: a mask of the T real tokens only gives other logits without any error
    with torch.no_grad():
        short_mask = base(input_ids=ids, attention_mask=mask, past_key_values=ours.fresh_cache(3)).logits
    assert (short_mask - a.logits).abs().max() > 1e-3


def test_prompt_tuning_logits_equal_peft(any_base):
    base = any_base
    torch.manual_seed(3)
    ours = PromptTuningModel(base, P)
    theirs = peft_copy(base, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
    with torch.no_grad():
        theirs.prompt_encoder["default"].embedding.weight.copy_(ours.prompt)
    ids, mask = padded_batch(base.config.vocab_size)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask, labels=labels), theirs(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a.logits, b.logits[:, P:], atol=1e-5, rtol=0)  # peft also returns the P prompt rows
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    assert trainable(ours) == trainable(theirs) == P * base.config.hidden_size


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("kind", ["prefix", "prefix+mlp", "prompt"])
def test_16_bit_base_models_agree_with_peft(family, dtype, kind, tiny):
    base = tiny[family]().to(dtype)
    torch.manual_seed(9)
    if kind == "prompt":
        ours = PromptTuningModel(base, P)
        theirs = peft_copy(base, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
        with torch.no_grad():
            theirs.prompt_encoder["default"].embedding.weight.copy_(ours.prompt)
    else:
        mlp_hidden = 24 if kind == "prefix+mlp" else None
        ours = PrefixTuningModel(base, P, mlp_hidden=mlp_hidden)
        theirs = peft_copy(base, peft.PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=P, prefix_projection=mlp_hidden is not None,
            encoder_hidden_size=mlp_hidden or base.config.hidden_size))
        copy_prefix_into_peft(ours, theirs)
    assert {p.dtype for p in ours.parameters() if p.requires_grad} == {torch.float32}  # as peft's
    ids, mask = padded_batch(base.config.vocab_size)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask, labels=labels), theirs(input_ids=ids, attention_mask=mask, labels=labels)
    b_logits = b.logits[:, P:] if kind == "prompt" else b.logits
    assert a.logits.dtype == dtype and a.logits.abs().max() < 1
    tol = LOW_PRECISION[dtype]
    torch.testing.assert_close(a.logits, b_logits, atol=tol, rtol=tol)
    torch.testing.assert_close(a.loss.float(), b.loss.float(), atol=tol, rtol=tol)
