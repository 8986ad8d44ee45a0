"""Prefix-tuning (Li & Liang, 2021) and prompt tuning on Hugging Face's GPT-2, written from scratch.

**Prefix-tuning** learns, for every layer, P key vectors and P value vectors. They are handed to GPT-2
as if they were the attention cache of P earlier tokens, so every real token attends to them in every
layer, while all of GPT-2's weights stay frozen::

    model = PrefixTuningModel(base, prefix_len=10, mlp_hidden=512)   # P = MLP(P') while training
    loss = model(**batch).loss                                        # only the prefix gets gradients
    model.fold()                                                      # drop the MLP: plain tensors
    model.save("prefix/")                                             # safetensors + JSON
    model.generate(input_ids, attention_mask=mask, max_new_tokens=20) # the prefix is there too

**Prompt tuning** (:class:`PromptTuningModel`) learns only P input embeddings (a "soft prompt"): the
weaker cousin the paper compares against ("embedding-only").

The same code wraps Llama-family models (SmolLM2, the course's offline ``cpu`` base). Two things differ:
the cache holds ``num_key_value_heads`` heads per layer, fewer than the query heads (grouped-query
attention), so the prefix is ``[batch, n_kv_head, P, head_dim]`` per layer; and the prefix keys enter as
cache entries, i.e. already rotated (RoPE is applied to new tokens only), exactly as peft does it.

Three traps of ``transformers`` 5.x that this module handles (and the tests pin down):
the attention mask must be prefixed with P ones (a mask of the T real tokens only is silently padded
with zeros at the end), GPT-2 numbers the real tokens from P on by itself (so no position ids are
passed), and the cache grows in place on every call (so each call builds a fresh one).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from .checks import positive_int
from .families import model_family
from .prefix_files import read_prefix, write_prefix


def _token_ids(ids, length: int, base: nn.Module, name: str) -> torch.Tensor:
    """The first ``length`` of ``ids`` (on the base's device), checked to be ids of the model's vocabulary."""
    ids = torch.as_tensor(ids).flatten()
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"init_ids must be integer token ids, e.g. tokenizer(text, return_tensors='pt')"
                        f".input_ids[0]; got {ids.dtype}.")
    if ids.numel() < length:
        raise ValueError(f"init_ids has {ids.numel()} tokens; it needs at least {name}={length}.")
    embeddings = base.get_input_embeddings().weight
    vocab = embeddings.shape[0]
    ids = ids[:length]
    bad = ids[(ids < 0) | (ids >= vocab)]
    if bad.numel():
        raise ValueError(f"init_ids holds token id {bad[0].item()}, outside this model's vocabulary (0 to "
                         f"{vocab - 1}). Encode the text with this model's tokenizer.")
    return ids.to(embeddings.device)


def _param_dtype(base: nn.Module) -> torch.dtype:
    """float32 for a 16-bit base (as peft): AdamW's small updates survive there; the base's dtype if wider."""
    return torch.promote_types(base.get_input_embeddings().weight.dtype, torch.float32)


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head_dim) of the attention cache: GPT-2 has as many kv heads as query heads."""
    n_head = config.num_attention_heads  # GPT2Config maps these standard names to n_layer, n_head, n_embd
    n_kv_head = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return config.num_hidden_layers, n_kv_head, head_dim


def _refuse_checkpointing(base: PreTrainedModel, what: str) -> None:
    new_name = hasattr(type(base), "is_activation_checkpointing")  # transformers' name since 5.2x
    if getattr(base, "is_activation_checkpointing" if new_name else "is_gradient_checkpointing", False):
        raise RuntimeError(
            f"{what} cannot be combined with gradient checkpointing: GPT-2 drops the attention cache while "
            "checkpointing, and the prefix lives in that cache. Switch it off with "
            "base_model.activation_checkpointing_disable() (gradient_checkpointing_disable() in older transformers)."
        )


def _freeze(base: nn.Module) -> None:
    for p in base.parameters():
        p.requires_grad_(False)


class VirtualTokens(nn.Module):
    """What prefix-tuning and prompt tuning share: a frozen base model behind ``n_virtual`` learned positions.

    They take ``n_virtual`` of the model's positions and need as many ones in front of every attention mask.
    Checks the base model and the length (``length_name`` in messages); subclasses freeze the base last.
    """

    length_name = "prefix_len"

    def __init__(self, base: PreTrainedModel, n_virtual: int) -> None:
        super().__init__()
        positive_int(n_virtual, self.length_name, "Try 10 (the paper's).")
        model_family(base, f"{type(self).__name__}'s base model")
        _refuse_checkpointing(base, type(self).__name__)
        self.base, self.n_virtual = base, n_virtual

    def extend_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, P + T]: P ones in front, so every token may attend to the learned positions."""
        ones = attention_mask.new_ones(attention_mask.shape[0], self.n_virtual)
        return torch.cat([ones, attention_mask], dim=1)

    def check_length(self, total: int) -> None:
        """Refuse ``total`` real tokens (input and new ones) that do not fit behind the learned positions."""
        n_positions = self.base.config.max_position_embeddings  # GPT-2's n_positions
        if self.n_virtual + total > n_positions:
            raise ValueError(
                f"{self.length_name} + sequence length = {self.n_virtual} + {total} > n_positions = {n_positions}: "
                f"the model numbers real tokens from P on and has only {n_positions} positions. Use shorter inputs "
                f"(or fewer new tokens) or a shorter {self.length_name.removesuffix('_len')}."
            )


class PrefixTuningModel(VirtualTokens):
    """A frozen GPT-2 (or Llama-family model) with a learned key/value prefix of length ``prefix_len`` in every layer.

    ``mlp_hidden`` (e.g. the paper's 512) trains the prefix through ``P = MLP(P')`` (more stable);
    :meth:`fold` then replaces the MLP by the plain tensors it computes. ``init_ids`` (a 1-D tensor of at
    least ``prefix_len`` token ids, e.g. a task description) starts the prefix from the keys and values
    GPT-2 computes for those real words (plain prefix only). Otherwise the prefix starts random.
    """

    def __init__(self, base: PreTrainedModel, prefix_len: int, mlp_hidden: int | None = None,
                 init_ids: torch.Tensor | None = None) -> None:
        super().__init__(base, prefix_len)
        positive_int(mlp_hidden, "mlp_hidden", "Try 512 (the paper's), or None for a plain prefix.", allow_none=True)
        if mlp_hidden is not None and init_ids is not None:
            raise ValueError("PrefixTuningModel: init_ids sets the prefix directly, so it needs mlp_hidden=None "
                             "(an MLP's output cannot be set to given activations).")
        ids = None if init_ids is None else _token_ids(init_ids, prefix_len, base, "prefix_len")
        self.n_layer, self.n_kv_head, self.head_dim = kv_shape(base.config)
        self.kv_dim = self.n_kv_head * self.head_dim  # GPT-2: n_embd; with grouped-query attention, less
        kw = {"device": base.get_input_embeddings().weight.device, "dtype": _param_dtype(base)}
        n_out = self.n_layer * 2 * self.kv_dim  # one key and one value vector per layer, per prefix position
        if mlp_hidden is None:
            start = torch.randn(prefix_len, n_out, **kw) * base.config.initializer_range
            self.prefix = nn.Parameter(start if ids is None else self.activations_of(ids).to(**kw))
            self.prefix_input, self.mlp = None, None
        else:  # P = MLP(P'): a small input P' of shape [P, kv_dim], widened to every layer's keys and values
            self.prefix = None
            self.prefix_input = nn.Parameter(torch.randn(prefix_len, self.kv_dim, **kw))
            self.mlp = nn.Sequential(nn.Linear(self.kv_dim, mlp_hidden), nn.Tanh(),
                                     nn.Linear(mlp_hidden, n_out)).to(**kw)
        _freeze(base)  # last: a refused call above leaves the user's model as it was

    @property
    def prefix_len(self) -> int:
        """P, the number of prefix positions."""
        return self.n_virtual

    @torch.no_grad()
    def activations_of(self, ids: torch.Tensor) -> torch.Tensor:
        """The model's keys and values for the first ``prefix_len`` tokens of ``ids``: [P, n_layer*2*kv_dim]."""
        ids = _token_ids(ids, self.prefix_len, self.base, "prefix_len").unsqueeze(0)
        cache = self.base(input_ids=ids, use_cache=True).past_key_values
        rows = []
        for layer in cache.layers[: self.n_layer]:  # each [1, H_kv, P, hd] -> [P, kv_dim]
            rows += [t[0].transpose(0, 1).reshape(self.prefix_len, self.kv_dim) for t in (layer.keys, layer.values)]
        return torch.cat(rows, dim=-1)

    def prefix_rows(self) -> torch.Tensor:
        """The prefix as one [P, n_layer * 2 * kv_dim] matrix (computed by the MLP when there is one)."""
        return self.prefix if self.mlp is None else self.mlp(self.prefix_input)

    def key_values(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the (key, value) prefix, each of shape [batch, n_kv_head, P, head_dim]."""
        P, L, H, hd = self.prefix_len, self.n_layer, self.n_kv_head, self.head_dim
        rows = self.prefix_rows().to(self.base.get_input_embeddings().weight.dtype)  # float32 meets a 16-bit base
        kv = rows.view(P, L * 2, H, hd).permute(1, 2, 0, 3)  # [L*2, H, P, hd]
        kv = kv.unsqueeze(1).expand(L * 2, batch_size, H, P, hd)  # the same prefix for every example
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(L)]

    def fresh_cache(self, batch_size: int) -> DynamicCache:
        """A new cache holding only the prefix; GPT-2 appends to it in place, so build one per call."""
        return DynamicCache(self.key_values(batch_size), config=self.base.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs):
        """The output for ``input_ids`` behind the prefix: logits over the T real tokens, ``.loss`` with labels."""
        _refuse_checkpointing(self.base, "PrefixTuningModel")
        if "position_ids" in kwargs:
            raise ValueError("Do not pass position_ids: the model numbers the real tokens from P on by itself.")
        batch, length = input_ids.shape
        self.check_length(length)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.base(input_ids=input_ids, attention_mask=self.extend_mask(attention_mask), labels=labels,
                         past_key_values=self.fresh_cache(batch), **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``base.generate`` with the prefix in the cache (use left padding for batches).

        Returns the prompt followed by the new tokens, like ``base.generate``. Beam search and
        ``num_return_sequences`` work: the prefix is expanded to every beam / returned sequence.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        config = kwargs.get("generation_config") or self.base.generation_config
        new = kwargs.get("max_new_tokens") or config.max_new_tokens
        if new is None:
            raise ValueError("PrefixTuningModel.generate needs max_new_tokens (e.g. max_new_tokens=20).")
        self.check_length(input_ids.shape[1] + new)
        copies = max(kwargs.get(k) or getattr(config, k, None) or 1 for k in ("num_beams", "num_return_sequences"))
        return self.base.generate(input_ids=input_ids, attention_mask=self.extend_mask(attention_mask),
                                  past_key_values=self.fresh_cache(input_ids.shape[0] * copies), **kwargs)

    @torch.no_grad()
    def fold(self) -> PrefixTuningModel:
        """Replace ``P = MLP(P')`` by the plain prefix it computes (outputs unchanged); returns ``self``."""
        if self.mlp is not None:
            self.prefix = nn.Parameter(self.prefix_rows().detach().clone())
            self.prefix_input, self.mlp = None, None
        return self

    def prefix_config(self) -> dict[str, int]:
        """What a saved prefix records about the model it was trained for."""
        return {"prefix_len": self.prefix_len, "n_layer": self.n_layer, "n_kv_head": self.n_kv_head,
                "head_dim": self.head_dim}

    def save(self, folder: str | Path) -> Path:
        """Save the folded prefix in ``folder`` (:mod:`minipeft.prefix_files`), replacing a previous save at once."""
        if self.mlp is not None:
            raise ValueError("Fold the prefix before saving (model.fold()): only the computed prefix is stored.")
        return write_prefix(folder, self.prefix, self.prefix_config())

    @classmethod
    def load(cls, base: PreTrainedModel, folder: str | Path) -> PrefixTuningModel:
        """A :class:`PrefixTuningModel` on ``base`` with the prefix in ``folder``, checked before ``base`` changes."""
        prefix_len, prefix = read_prefix(folder, kv_shape(base.config))
        model = cls(base, prefix_len)
        model.prefix.data.copy_(prefix)
        return model


class PromptTuningModel(VirtualTokens):
    """A frozen GPT-2 (or Llama-family model) behind ``prompt_len`` learned input embeddings (a soft prompt).

    ``init_ids`` starts the soft prompt from the embeddings of real tokens (at least ``prompt_len``).
    """

    length_name = "prompt_len"

    def __init__(self, base: PreTrainedModel, prompt_len: int, init_ids: torch.Tensor | None = None) -> None:
        super().__init__(base, prompt_len)
        ids = None if init_ids is None else _token_ids(init_ids, prompt_len, base, "prompt_len")
        embeddings = base.get_input_embeddings().weight
        kw = {"device": embeddings.device, "dtype": _param_dtype(base)}
        start = torch.randn(prompt_len, embeddings.shape[1], **kw) * base.config.initializer_range
        self.prompt = nn.Parameter(start if ids is None else embeddings[ids].detach().to(**kw))
        _freeze(base)  # last: a refused call above leaves the user's model as it was

    @property
    def prompt_len(self) -> int:
        """P, the number of soft-prompt positions."""
        return self.n_virtual

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              new_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with the soft prompt in front ([B, P + T, d]) and the mask extended by P ones."""
        batch, length = input_ids.shape
        self.check_length(length + new_tokens)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self.base.get_input_embeddings()(input_ids)
        prompt = self.prompt.to(tokens.dtype)  # float32 meets a 16-bit base
        embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), tokens], dim=1)
        return embeds, self.extend_mask(attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs):
        """The model's output behind the soft prompt: logits over the T real tokens, ``.loss`` with labels."""
        _refuse_checkpointing(self.base, "PromptTuningModel")
        embeds, mask = self.embed(input_ids, attention_mask)
        if labels is not None:  # no loss on the prompt positions
            labels = torch.cat([labels.new_full((labels.shape[0], self.prompt_len), -100), labels], dim=1)
        out = self.base(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        out.logits = out.logits[:, self.prompt_len:]
        return out

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``base.generate`` from the prompted embeddings; returns the prompt ids followed by the new tokens."""
        embeds, mask = self.embed(input_ids, attention_mask, new_tokens=kwargs.get("max_new_tokens") or 0)
        new = self.base.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        copies = new.shape[0] // input_ids.shape[0]
        return torch.cat([input_ids.repeat_interleave(copies, dim=0), new], dim=1)
