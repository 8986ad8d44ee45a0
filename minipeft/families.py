"""The model families the course's methods and recipes are written and tested for, and which one a model is.

``gpt2``: GPT-2 (``Conv1D`` layers, a fused ``c_attn`` for q|k|v, one key/value head per query head).
``llama``: Llama-family models such as SmolLM2 (``nn.Linear`` layers, grouped-query attention, rotary positions).
"""

from __future__ import annotations

FAMILIES = ("gpt2", "llama")
LOAD_ONE = "Load one of those, e.g. with minipeft.load_base_model()."


def model_family(model_or_config: object, subject: str = "The model", fix: str = LOAD_ONE) -> str:
    """``gpt2`` or ``llama``: the ``model_type`` of a model, its configuration, or a ``config.json`` read as a dict.

    Anything else raises a one-line ``ValueError`` that starts with ``subject`` and ends with ``fix``.
    """
    config = getattr(model_or_config, "config", model_or_config)
    kind = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    if kind not in FAMILIES:
        named = f"a {kind!r}" if kind else "not a transformers"  # no config.model_type: e.g. a bare nn.Module
        raise ValueError(f"{subject} is {named} model, but minipeft's methods and recipes are written and tested for "
                         f"GPT-2 ('gpt2') and Llama-family models ('llama', e.g. SmolLM2) only. {fix}")
    return kind
