"""minipeft.checks, the one place that says what a count, a finite number and a probability are, and every
argument of the package that goes through it: 2.5, True and "3" are refused everywhere (several used to pass)."""

import math

import numpy as np
import pytest
from torch import nn

from minipeft import params
from minipeft.checks import finite_float, flag, positive_int, probability
from minipeft.lora import LoRALayer, apply_lora
from minipeft.prefix import PrefixTuningModel, PromptTuningModel


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_counts_and_returns_a_plain_int(value):
    assert positive_int(value, "n") == value and type(positive_int(value, "n")) is int


@pytest.mark.parametrize("value", [0, -2, 2.5, 5.0, True, False, "3", None, np.float64(2.0), [3]])
def test_positive_int_refuses_in_one_line_naming_the_argument_the_value_and_the_fix(value):
    with pytest.raises(ValueError) as err:
        positive_int(value, "prefix_len", "Try 10.")
    assert str(err.value) == f"prefix_len must be a positive integer, got {value!r}. Try 10."


def test_positive_int_may_allow_none_and_says_so():
    assert positive_int(None, "mlp_hidden", allow_none=True) is None
    with pytest.raises(ValueError, match=r"^mlp_hidden must be a positive integer or None, got 0\.$"):
        positive_int(0, "mlp_hidden", allow_none=True)


def test_finite_float():
    assert finite_float(3, "alpha") == 3.0 and finite_float(-1.5, "x") == -1.5 and finite_float(0.5, "x", positive=True)
    for bad in (math.inf, -math.inf, math.nan, True, "1", None):
        with pytest.raises(ValueError, match=rf"^alpha must be a finite number, got {bad!r}\. Try 16\.$"):
            finite_float(bad, "alpha", "Try 16.")
    for bad in (0, -1e-9):
        with pytest.raises(ValueError, match=r"^lr_scale must be a finite number > 0, got"):
            finite_float(bad, "lr_scale", positive=True)


def test_probability():
    assert probability(0, "p") == 0.0 and probability(1, "p") == 1.0 and probability(0.1, "dropout", below_one=True)
    for bad, below_one in ((1, True), (1.01, False), (-0.1, False), (math.nan, False), (True, False), ("0.1", True)):
        with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1[\])], got .*\. Use 0\.1\.$"):
            probability(bad, "dropout", "Use 0.1.", below_one=below_one)


def test_flag():
    assert flag(True, "use_dora") is True and flag(False, "use_dora") is False
    for bad in (1, 0, "yes", None, np.bool_(True)):
        with pytest.raises(TypeError, match=rf"^use_dora must be True or False, got {bad!r}\. Try True\.$"):
            flag(bad, "use_dora", "Try True.")


GPT2 = params.gpt2_config("gpt2")
GPT2_SMALL = params.model_sizes()["GPT-2 small"]
COUNT_ARGUMENTS = {  # every count argument of the package, by the call that takes it, with its name in the error
    "apply_lora r": (lambda n, tiny: apply_lora(tiny["gpt2"](), r=n, alpha=8), "LoRA rank r"),
    "LoRALayer r": (lambda n, tiny: LoRALayer(nn.Linear(4, 4), r=n, alpha=8), "LoRA rank r"),
    "PrefixTuningModel prefix_len": (lambda n, tiny: PrefixTuningModel(tiny["llama"](), n), "prefix_len"),
    "PrefixTuningModel mlp_hidden": (lambda n, tiny: PrefixTuningModel(tiny["gpt2"](), 4, mlp_hidden=n),
                                     "mlp_hidden"),
    "PromptTuningModel prompt_len": (lambda n, tiny: PromptTuningModel(tiny["gpt2"](), n), "prompt_len"),
    # these took 2.5 and returned a fractional parameter count:
    "lora_parameter_count r": (lambda n, tiny: params.lora_parameter_count(GPT2, n), "LoRA rank r"),
    "prefix_parameter_count length": (lambda n, tiny: params.prefix_parameter_count(GPT2, n), "Prefix length"),
    "prefix_parameter_count mlp_hidden": (lambda n, tiny: params.prefix_parameter_count(GPT2, 10, n), "mlp_hidden"),
    "prompt_parameter_count length": (lambda n, tiny: params.prompt_parameter_count(GPT2, n), "Prompt length"),
    "ModelSize.lora_params r": (lambda n, tiny: GPT2_SMALL.lora_params(n), "LoRA rank r"),
    "ModelSize.prefix_params length": (lambda n, tiny: GPT2_SMALL.prefix_params(n), "Prefix length"),
    "lora_matrix_count r": (lambda n, tiny: params.lora_matrix_count(n, [(4, 4)]), "LoRA rank r"),
    "prefix_kv_count length": (lambda n, tiny: params.prefix_kv_count(2, n, 8), "Prefix length"),
}


@pytest.mark.parametrize("value", [2.5, True, "3", 0])
@pytest.mark.parametrize("call", COUNT_ARGUMENTS)
def test_every_count_argument_refuses_what_is_not_a_positive_integer(call, value, tiny):
    make, name = COUNT_ARGUMENTS[call]
    with pytest.raises(ValueError, match=rf"^{name} must be a positive integer( or None)?, got {value!r}\. \S"):
        make(value, tiny)
    make(2, tiny)  # and a count goes through
