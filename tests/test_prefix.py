"""Prefix-tuning and prompt tuning from scratch, checked against the model itself (against peft: test_prefix_peft.py).

Every check runs on GPT-2 and on a Llama-family model with grouped-query attention (SmolLM2's family: fewer
key/value heads than query heads, rotary positions), the course's two kinds of base model.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from minipeft import prefix_files
from minipeft.prefix import PrefixTuningModel, PromptTuningModel

P = 5
FAMILIES = ["gpt2", "llama"]


def padded_batch(vocab_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded sequences of 9, 6 and 7 real tokens (pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 7:] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_llama_prefix_has_the_kv_heads_shape(tiny_llama):
    """With grouped-query attention the cache holds the 2 key/value heads, not the 4 query heads."""
    model = PrefixTuningModel(tiny_llama(), P, mlp_hidden=24)
    keys, values = model.key_values(batch_size=3)[0]
    assert keys.shape == values.shape == (3, 2, P, 8)
    assert model.prefix_rows().shape == (P, 2 * 2 * 2 * 8)  # [P, n_layer * 2 * n_kv_head * head_dim]
    assert model.prefix_input.shape == (P, 16)  # P' is as wide as one layer's keys (peft's token_dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_of_real_words_equals_those_words_in_the_input(family, tiny):
    """Independent of peft: a prefix made of the model's own keys/values for words w must act like w typed in front.

    This fails if the mask covers only the real tokens, or if the real tokens are numbered from 0.
    """
    base = tiny[family]()
    words = torch.randint(1, 101, (P,), generator=torch.Generator().manual_seed(4))
    model = PrefixTuningModel(base, P, init_ids=words)
    ids, mask = padded_batch(101)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        full = torch.cat([words.expand(3, P), ids], 1)
        typed = base(input_ids=full, attention_mask=model.extend_mask(mask)).logits[:, P:]
    real = mask.bool()
    torch.testing.assert_close(ours[real], typed[real], atol=1e-5, rtol=0)

    model.extend_mask = lambda m: m  # the silent bug: mask of the T real tokens only, and no error raised
    with torch.no_grad():
        buggy = model(ids, attention_mask=mask).logits
    assert (buggy[real] - typed[real]).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_fold_changes_no_output_and_keeps_counts(family, tiny):
    base = tiny[family]()
    torch.manual_seed(5)
    model = PrefixTuningModel(base, P, mlp_hidden=24)
    n_mlp = trainable(model)
    ids, mask = padded_batch(101)
    with torch.no_grad():
        before = model(ids, attention_mask=mask).logits
        after = model.fold()(ids, attention_mask=mask).logits
    torch.testing.assert_close(before, after, atol=1e-6, rtol=0)
    kv_dim = {"gpt2": 32, "llama": 16}[family]  # key/value width per layer: n_kv_head * head_dim
    assert model.mlp is None and trainable(model) == P * 2 * 2 * kv_dim < n_mlp


def test_fresh_cache_every_call(tiny_gpt2):
    model = PrefixTuningModel(tiny_gpt2(), P)
    ids, mask = padded_batch(101)
    with torch.no_grad():
        first, second = (model(ids, attention_mask=mask).logits for _ in range(2))
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert model.fresh_cache(3).get_seq_length() == P


def greedy_by_hand(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        with torch.no_grad():
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_generate_matches_greedy_loop_over_forward(kind, family, tiny):
    base = tiny[family]()
    torch.manual_seed(6)
    model = PrefixTuningModel(base, P) if kind == "prefix" else PromptTuningModel(base, P)
    with torch.no_grad():  # a larger prefix, so that it visibly steers the output
        (model.prefix if kind == "prefix" else model.prompt).mul_(50)
    prompts = torch.randint(1, 101, (2, 4), generator=torch.Generator().manual_seed(7))
    generated = model.generate(prompts, max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, greedy_by_hand(model, prompts, 6))
    plain = base.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=6, do_sample=False)
    assert not torch.equal(generated, plain)  # the prefix is really there while generating


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_batched_left_padding_equals_one_by_one(family, tiny):
    model = PrefixTuningModel(tiny[family](), P)
    with torch.no_grad():
        model.prefix.mul_(50)
    short, long = torch.tensor([[5, 17]]), torch.tensor([[8, 9, 40, 3]])
    batch = torch.cat([torch.cat([torch.zeros(1, 2, dtype=torch.long), short], 1), long])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    together = model.generate(batch, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(together[0, 2:], model.generate(short, max_new_tokens=5, do_sample=False)[0])
    assert torch.equal(together[1], model.generate(long, max_new_tokens=5, do_sample=False)[0])


def test_beam_search_and_several_sequences_carry_the_prefix(tiny_gpt2):
    model = PrefixTuningModel(tiny_gpt2(), P)
    with torch.no_grad():
        model.prefix.mul_(50)
    prompts = torch.tensor([[5, 17, 3], [8, 9, 40]])
    out = model.generate(prompts, max_new_tokens=1, num_beams=3, num_return_sequences=3, do_sample=False)
    with torch.no_grad():
        top3 = model(prompts).logits[:, -1].topk(3).indices  # one step of beam search = the 3 likeliest tokens
    assert out.shape == (6, 4) and torch.equal(out[:, -1].view(2, 3), top3)
    torch.manual_seed(0)
    sampled = model.generate(prompts, max_new_tokens=4, do_sample=True, num_return_sequences=2)
    assert sampled.shape == (4, 7) and torch.equal(sampled[::2, :3], prompts)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(tmp_path, family, tiny):
    base = tiny[family]()
    model = PrefixTuningModel(base, P, mlp_hidden=24)
    with pytest.raises(ValueError, match=r"Fold the prefix before saving"):
        model.save(tmp_path)
    model.fold().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefix.safetensors", "prefix_config.json"]
    loaded = PrefixTuningModel.load(tiny[family](), tmp_path)
    ids, mask = padded_batch(101)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits,
                                   atol=0, rtol=0)


def test_a_save_that_fails_half_way_leaves_the_previous_prefix_intact(tmp_path, tiny_gpt2, monkeypatch):
    """The files are written beside the folder and renamed into place: a disk that fills up half-way through the
    weights (or a kill) leaves the previous save byte for byte, and no temporary folder."""
    folder = tmp_path / "prefix"
    PrefixTuningModel(tiny_gpt2(), P).save(folder)
    before = {f.name: f.read_bytes() for f in folder.iterdir()}

    def disk_full_half_way(tensors, filename, *args, **kwargs):
        save_file(tensors, filename, *args, **kwargs)
        Path(filename).write_bytes(Path(filename).read_bytes()[: Path(filename).stat().st_size // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prefix_files, "save_file", disk_full_half_way)
    with pytest.raises(OSError, match="No space left"):
        PrefixTuningModel(tiny_gpt2(seed=1), P).save(folder)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir()] == ["prefix"]
    monkeypatch.undo()
    newer = PrefixTuningModel(tiny_gpt2(seed=1), P)
    newer.save(folder)  # a save that completes replaces the previous one, and leaves nothing beside it
    assert [f.name for f in tmp_path.iterdir()] == ["prefix"]
    assert torch.equal(PrefixTuningModel.load(tiny_gpt2(), folder).prefix, newer.prefix)


@pytest.mark.parametrize(("other", "named"), [("gpt2", "n_layer: saved 2, model 3"),
                                              ("gpt2", "n_kv_head: saved 4, model 2"),
                                              ("llama", "n_kv_head: saved 4, model 2")])
def test_load_into_other_shape_fails_clearly(tmp_path, tiny, other, named):
    PrefixTuningModel(tiny["gpt2"](), P).save(tmp_path)
    shape = dict(n_layer=3) if "n_layer" in named else dict(n_head=2) if other == "gpt2" else {}
    with pytest.raises(ValueError, match=rf"saved for another model shape \(.*{named}"):
        PrefixTuningModel.load(tiny[other](**shape), tmp_path)


def test_generic_training_step_moves_only_the_prefix(tiny_gpt2):
    base = tiny_gpt2()
    model = PrefixTuningModel(base, P, mlp_hidden=24)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids, mask = padded_batch(101)
    batch = dict(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in frozen.items())


def test_bad_inputs_fail_clearly(tiny_gpt2):
    base = tiny_gpt2()
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"prefix_len must be a positive integer"):
            PrefixTuningModel(base, bad)
    with pytest.raises(ValueError, match=r"prompt_len must be a positive integer"):
        PromptTuningModel(base, 0)
    neo = GPTNeoForCausalLM(GPTNeoConfig(num_layers=2, hidden_size=32, num_heads=4, attention_types=[[["global"], 2]],
                                         vocab_size=101))
    with pytest.raises(ValueError, match=r"PrefixTuningModel's base model is a 'gpt_neo' model, but .* GPT-2"):
        PrefixTuningModel(neo, P)
    model = PrefixTuningModel(base, P)
    with pytest.raises(ValueError, match=r"5 \+ 60 > n_positions = 64"):
        model(torch.ones(1, 60, dtype=torch.long))
    with pytest.raises(ValueError, match=r"5 \+ 60 > n_positions = 64"):
        model.generate(torch.ones(1, 50, dtype=torch.long), max_new_tokens=10)
    with pytest.raises(ValueError, match=r"prompt_len \+ sequence length = 5 \+ 62 > n_positions = 64"):
        PromptTuningModel(base, P).generate(torch.ones(1, 50, dtype=torch.long), max_new_tokens=12)
    with pytest.raises(ValueError, match=r"Do not pass position_ids"):
        model(torch.ones(1, 4, dtype=torch.long), position_ids=torch.arange(4)[None])
    with pytest.raises(ValueError, match=r"init_ids has 3 tokens; it needs at least prefix_len=5"):
        PrefixTuningModel(base, P, init_ids=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"needs mlp_hidden=None"):
        PrefixTuningModel(base, P, mlp_hidden=8, init_ids=torch.arange(1, 9))
    (getattr(base, "activation_checkpointing_enable", None) or base.gradient_checkpointing_enable)()  # 5.2x rename
    with pytest.raises(RuntimeError, match=r"gradient checkpointing.*activation_checkpointing_disable\(\)"):
        PrefixTuningModel(base, P)
    with pytest.raises(RuntimeError, match=r"gradient checkpointing"):
        model(torch.ones(1, 4, dtype=torch.long))  # switched on after wrapping: refused at the next forward


# ---- refused calls change nothing; hyper-parameters; damaged files; 16-bit base models -------------------------

BAD_CALLS = [  # (keyword arguments, error, message): each refused before the base model is touched
    (dict(prefix_len=True), ValueError, r"(prefix|prompt)_len must be a positive integer, got True"),
    (dict(prefix_len=5.0), ValueError, r"(prefix|prompt)_len must be a positive integer, got 5.0"),
    (dict(prefix_len="5"), ValueError, r"(prefix|prompt)_len must be a positive integer, got '5'"),
    (dict(init_ids=torch.tensor([1, 2, 3])), ValueError, r"init_ids has 3 tokens; it needs at least \w+_len=5"),
    (dict(init_ids=torch.tensor([1, 2, 3, 4, 101])), ValueError,
     r"init_ids holds token id 101, outside this model's vocabulary \(0 to 100\).*this model's tokenizer"),
    (dict(init_ids=torch.tensor([1, 2, -1, 4, 5])), ValueError, r"init_ids holds token id -1"),
    (dict(init_ids=torch.rand(5)), TypeError, r"init_ids must be integer token ids.*got torch.float32"),
]
BAD_MLP = [
    (dict(mlp_hidden=0), ValueError, r"mlp_hidden must be a positive integer or None, got 0\. Try 512"),
    (dict(mlp_hidden=-4), ValueError, r"mlp_hidden must be a positive integer or None, got -4"),
    (dict(mlp_hidden=True), ValueError, r"mlp_hidden must be a positive integer or None, got True"),
    (dict(mlp_hidden=8.5), ValueError, r"mlp_hidden must be a positive integer or None, got 8.5"),
    (dict(mlp_hidden=8, init_ids=torch.arange(1, 9)), ValueError, r"needs mlp_hidden=None"),
]


def wrap(kind: str, base, kwargs: dict):
    length = kwargs.pop("prefix_len", P)
    return PrefixTuningModel(base, length, **kwargs) if kind == "prefix" else PromptTuningModel(base, length, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("kind", "kwargs", "error", "match"),
                         [("prefix", *bad) for bad in BAD_CALLS + BAD_MLP] + [("prompt", *bad) for bad in BAD_CALLS])
def test_refused_construction_leaves_the_base_model_as_it_was(family, kind, kwargs, error, match, tiny, snapshot):
    base = tiny[family]()
    before = snapshot(base)
    with pytest.raises(error, match=match):
        wrap(kind, base, dict(kwargs))
    assert snapshot(base) == before


def damage(folder, how: str) -> str:
    """Break a saved prefix the way a user's disk or editor might; returns the file the error must name."""
    weights, config = folder / "prefix.safetensors", folder / "prefix_config.json"
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:40])
    elif how == "weights not safetensors":
        weights.write_text("not a tensor file")
    elif how == "no weights":
        weights.unlink()
    elif how == "malformed config":
        config.write_text('{"prefix_len": 5,')
    elif how == "config of something else":
        config.write_text('{"r": 8}')
    elif how == "prefix of another length":
        config.write_text(config.read_text().replace('"prefix_len": 5', '"prefix_len": 4'))
    return (config if "config" in how or "length" in how else weights).name


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["truncated weights", "weights not safetensors", "no weights", "malformed config",
                                 "config of something else", "prefix of another length"])
def test_a_damaged_saved_prefix_is_refused_in_one_line_naming_the_file(tmp_path, family, how, tiny, snapshot):
    PrefixTuningModel(tiny[family](), P).save(tmp_path)
    named = damage(tmp_path, how)
    base = tiny[family]()
    before = snapshot(base)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        PrefixTuningModel.load(base, tmp_path)
    message = str(err.value)
    assert type(err.value) in (ValueError, FileNotFoundError)  # not json's or safetensors' own error
    assert named in message and "\n" not in message and "save" in message
    assert err.value.__context__ is None or err.value.__suppress_context__  # no parser traceback above it
    assert snapshot(base) == before


def test_loading_from_a_folder_with_no_prefix_names_what_to_do(tmp_path, tiny_gpt2, snapshot):
    base = tiny_gpt2()
    before = snapshot(base)
    with pytest.raises(FileNotFoundError, match=r"prefix_config.json does not exist.*model.fold\(\).save"):
        PrefixTuningModel.load(base, tmp_path / "nowhere")
    assert snapshot(base) == before


# 16-bit bases. Like peft, the trainable prefix (and soft prompt) stays in float32, where AdamW's small updates are
# not rounded away, and is cast to the base's dtype where it meets the base (the cache, the input embeddings). Both
# libraries then run the same 16-bit base on the same 16-bit prefix: on the CPU the logits agree bit for bit (measured
# on 60 random configurations). Another device may sum the MLP's float32 products in another order, which can move a
# prefix entry by one 16-bit step and the logits by a few units in their last place. These logits are below 1 in size,
# where one unit in the last place is 2**-8 in bfloat16 (8 significant bits) and 2**-11 in float16 (11): the
# tolerance is 4 such units, absolute and relative.
LOW_PRECISION = {torch.bfloat16: 4 * 2.0**-8, torch.float16: 4 * 2.0**-11}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("kind", ["prefix", "prefix+mlp", "prompt"])
def test_16_bit_base_models_work(family, dtype, kind, tiny):
    """The prefix stays in float32 and meets the base in its dtype (peft's logits: test_prefix_peft.py)."""
    base = tiny[family]().to(dtype)
    torch.manual_seed(9)
    ours = PromptTuningModel(base, P) if kind == "prompt" else PrefixTuningModel(
        base, P, mlp_hidden=24 if kind == "prefix+mlp" else None)
    assert {p.dtype for p in ours.parameters() if p.requires_grad} == {torch.float32}  # as peft's
    ids, mask = padded_batch(base.config.vocab_size)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, labels=labels)
    assert a.logits.dtype == dtype and a.logits.abs().max() < 1 and torch.isfinite(a.loss)

    ours.train()  # and it trains: gradients reach the float32 parameters, and a step moves them
    ours(ids, attention_mask=mask, labels=labels).loss.backward()
    trained = [p for p in ours.parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0 for p in trained)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_16_bit_prefix_from_real_words_generates_and_round_trips(tmp_path, family, dtype, tiny):
    base = tiny[family]().to(dtype)
    model = PrefixTuningModel(base, P, init_ids=torch.arange(1, P + 1))
    prompt = PromptTuningModel(tiny[family]().to(dtype), P, init_ids=torch.arange(1, P + 1))
    ids = torch.tensor([[5, 17, 3]])
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, 6)
    assert prompt.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, 6)
    model.save(tmp_path)
    loaded = PrefixTuningModel.load(tiny[family]().to(dtype), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
