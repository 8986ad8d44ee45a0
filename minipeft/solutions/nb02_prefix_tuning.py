"""Solutions to the exercises of ``02_prefix_tuning.ipynb``."""

from __future__ import annotations

import torch

from ..exercises import solution


@solution("02.1")
def prefix_to_cache(rows: torch.Tensor, n_layer: int, n_head: int,
                    batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[P, n_layer * 2 * n_embd] -> per layer (keys, values), each [batch, n_head, P, head_dim]."""
    P = rows.shape[0]
    head_dim = rows.shape[1] // (n_layer * 2 * n_head)
    kv = rows.view(P, n_layer * 2, n_head, head_dim).permute(1, 2, 0, 3)  # [L*2, H, P, hd]
    kv = kv.unsqueeze(1).expand(n_layer * 2, batch_size, n_head, P, head_dim)  # the same prefix per example
    return [(kv[2 * i], kv[2 * i + 1]) for i in range(n_layer)]


@solution("02.2")
def mlp_prefix_params(n_layer: int, n_embd: int, prefix_len: int, hidden: int) -> int:
    """P' plus Linear(n_embd, hidden) and Linear(hidden, n_layer * 2 * n_embd), biases included."""
    n_out = n_layer * 2 * n_embd
    return prefix_len * n_embd + (n_embd * hidden + hidden) + (hidden * n_out + n_out)


@solution("02.3")
def prefix_from_words(model, ids: torch.Tensor) -> torch.Tensor:
    """The [P, n_layer * 2 * n_embd] prefix rows whose cache is the model's own keys and values for ``ids``."""
    with torch.no_grad():
        cache = model(input_ids=ids[None], use_cache=True).past_key_values
    rows = []
    for layer in cache.layers:  # keys, then values, of each layer: [1, n_head, P, head_dim] -> [P, n_head * head_dim]
        rows += [t[0].transpose(0, 1).reshape(len(ids), -1) for t in (layer.keys, layer.values)]
    return torch.cat(rows, dim=1)


@solution("02.4")
def predict() -> tuple[float, int]:
    """(a) Stored parameters grow with P: 2x. (b) Every layer gets P more keys: 20 - 10 = 10 more."""
    return 2.0, 10
