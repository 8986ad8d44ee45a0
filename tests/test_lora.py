"""minipeft.lora against the algebra and its own files (against the oracle, peft: test_lora_peft.py)."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from minipeft.lora import LoRALayer, apply_lora, disable_lora, lora_layers, merge_lora, unload_lora, unmerge_lora
from minipeft.lora_files import load_lora, save_lora
from minipeft.params import count_parameters

ALL_GPT2 = ["c_attn", "c_proj", "c_fc"]
ALL_LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # every projection


def tokens(model, batch=2, length=12, seed=1) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def randomise_B(model: nn.Module, seed: int = 2) -> None:
    """Trained adapters have B != 0; a fresh one (B = 0) would hide every mistake in the LoRA path."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(std=0.5)


def test_qv_only_matches_the_algebra(tiny_gpt2):
    """The algebra, by hand: the c_attn output is [q + s B_q A_q x | k | v + s B_v A_v x] with k untouched (peft's
    equivalent is in test_lora_peft.py)."""
    base, r, alpha = tiny_gpt2(), 4, 8
    ours = apply_lora(copy.deepcopy(base), targets="c_attn", r=r, alpha=alpha, qv_only=True)
    randomise_B(ours)
    layer, d = ours.transformer.h[0].attn.c_attn, base.config.n_embd
    assert layer.lora_A.shape == (2 * r, d) and layer.lora_B.shape == (2 * d, r)
    x = torch.randn(3, d)
    A_q, A_v = layer.lora_A[:r], layer.lora_A[r:]
    B_q, B_v = layer.lora_B[:d], layer.lora_B[d:]
    q, k, v = base.transformer.h[0].attn.c_attn(x).split(d, dim=-1)
    by_hand = torch.cat([q + (alpha / r) * x @ A_q.T @ B_q.T, k, v + (alpha / r) * x @ A_v.T @ B_v.T], dim=-1)
    with torch.no_grad():
        assert torch.allclose(layer(x), by_hand, atol=1e-6, rtol=0)
        assert torch.equal(layer(x)[:, d:2 * d], k), "the key projection must stay exactly the base one"

    per_layer = 2 * (r * d + r * d)  # q and v: each A (r x d) and B (d x r)
    assert count_parameters(ours, trainable_only=True) == base.config.n_layer * per_layer


def test_parameter_counts_of_real_gpt2_shapes_on_meta_device():
    """GPT-2 small, full c_attn at r=8: 294,912 trainable (a number peft users know); no weights needed."""
    with torch.device("meta"):
        small, medium = GPT2LMHeadModel(GPT2Config()), GPT2LMHeadModel(GPT2Config(n_embd=1024, n_layer=24, n_head=16))
    assert count_parameters(apply_lora(small, r=8), trainable_only=True) == 294_912
    assert count_parameters(apply_lora(medium, r=4, qv_only=True), trainable_only=True) == 24 * 2 * (4 * 1024 * 2)


# ---- merge, unmerge, disable, fresh adapters ------------------------------------------------------------------

# Merging computes x (W0 + dW) instead of x W0 + x dW: the same sum in another order. In float32 that is rounding
# of about 1e-7 relative per operation, growing with depth: on the 4-layer mini GPT-2 with logits of size ~10 the
# largest difference is ~1e-5 (measured 1.0e-5 to 1.9e-5), so float32 logits are compared to 1e-5 absolute plus
# 1e-5 relative. In float64 the same check holds to 1e-10, which shows the merge itself is exact (a missing
# transpose, the bug loralib once shipped, gives differences of order 1).
MERGE_TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("qv_only", [False, True])
def test_merge_equals_unmerged_and_unmerge_restores_base(gpt2, qv_only):
    targets = ["c_attn"] if qv_only else ALL_GPT2
    model = apply_lora(copy.deepcopy(gpt2), targets=targets, r=4, alpha=16, qv_only=qv_only)
    randomise_B(model)
    base_weights = {n: layer.base.weight.clone() for n, layer in lora_layers(model).items()}
    ids = tokens(gpt2)
    with torch.no_grad():
        unmerged = model(ids).logits
        merge_lora(model)
        assert all(layer.merged for layer in lora_layers(model).values())
        assert torch.allclose(model(ids).logits, unmerged, **MERGE_TOL)
        unmerge_lora(model)
        for name, layer in lora_layers(model).items():
            assert torch.allclose(layer.base.weight, base_weights[name], atol=1e-6, rtol=0)
        assert torch.allclose(model(ids).logits, unmerged, **MERGE_TOL)
        merged_plain = unload_lora(model)  # merged and unwrapped: a plain GPT-2 again
        assert not lora_layers(merged_plain) and isinstance(merged_plain.transformer.h[0].attn.c_attn, Conv1D)
        assert torch.allclose(merged_plain(ids).logits, unmerged, **MERGE_TOL)


@pytest.mark.parametrize("qv_only", [False, True])
def test_merge_is_exact_in_float64(gpt2, qv_only):
    model = apply_lora(copy.deepcopy(gpt2).double(), targets="c_attn" if qv_only else ALL_GPT2, r=4, alpha=16,
                       qv_only=qv_only)
    randomise_B(model)
    ids = tokens(gpt2)
    with torch.no_grad():
        unmerged = model(ids).logits
        assert unmerged.dtype == torch.float64
        assert torch.allclose(merge_lora(model)(ids).logits, unmerged, atol=1e-10, rtol=0)


def test_fresh_adapter_and_disabled_adapter_give_the_base_model_exactly(gpt2):
    ids = tokens(gpt2)
    with torch.no_grad():
        expected = gpt2(ids).logits
        model = apply_lora(copy.deepcopy(gpt2), targets=ALL_GPT2, r=8, alpha=16)
        assert torch.equal(model(ids).logits, expected), "B = 0 at init: step 0 is the base model, bit for bit"
        randomise_B(model)
        adapted = model(ids).logits
        with disable_lora(model):
            assert torch.equal(model(ids).logits, expected)
        assert torch.equal(model(ids).logits, adapted), "the adapters come back after the with-block"
        merge_lora(model)
        with pytest.raises(RuntimeError, match="merged.*unmerge_lora"), disable_lora(model):
            pass


def test_only_lora_parameters_train_and_B_zero_means_only_B_moves_first(tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets=ALL_GPT2, r=4, alpha=8, dropout=0.1).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    ids = tokens(model)
    model(ids, labels=ids).loss.backward()
    for layer in lora_layers(model).values():
        assert layer.base.weight.grad is None
        assert torch.count_nonzero(layer.lora_A.grad) == 0, "dL/dA = B^T (...) = 0 while B = 0"
        assert torch.count_nonzero(layer.lora_B.grad) > 0
    assert model.transformer.wte.weight.grad is None


def test_dropout_acts_on_the_lora_path_in_training_only(tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets="c_attn", r=4, alpha=8, dropout=0.5)
    randomise_B(model)
    ids = tokens(model)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)  # eval: deterministic
        model.train()
        assert not torch.equal(model(ids).logits, model(ids).logits)


# ---- saving and loading ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("qv_only", [False, True])
def test_save_load_round_trip_gives_identical_logits(tmp_path, gpt2, qv_only):
    targets = ["c_attn"] if qv_only else ALL_GPT2
    model = apply_lora(copy.deepcopy(gpt2), targets=targets, r=4, alpha=32, dropout=0.1, qv_only=qv_only)
    randomise_B(model)
    save_lora(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "minipeft_adapter.json"]
    loaded = load_lora(copy.deepcopy(gpt2), tmp_path).eval()
    ids = tokens(gpt2)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert count_parameters(loaded, trainable_only=True) == count_parameters(model, trainable_only=True)
    assert count_parameters(loaded) == count_parameters(model)
    assert all(layer.dropout.p == 0.1 for layer in lora_layers(loaded).values())


@pytest.mark.parametrize("other, shapes_differ", [
    (dict(n_embd=48), True),  # another width
    (dict(n_layer=1), True),  # layer h.1 missing
    (dict(vocab_size=202), False),  # same layer shapes, another base model: only minipeft_adapter.json can tell
])
def test_loading_onto_a_mismatched_model_fails_and_changes_nothing(tmp_path, other, shapes_differ, tiny_gpt2, snapshot):
    model = apply_lora(tiny_gpt2(), targets=ALL_GPT2, r=4, alpha=8)
    randomise_B(model)
    save_lora(model, tmp_path)
    wrong = tiny_gpt2(**other)
    before = snapshot(wrong)
    with pytest.raises(ValueError, match="saved for base model .* Load it onto the base model it was trained on"):
        load_lora(wrong, tmp_path)
    assert snapshot(wrong) == before
    if shapes_differ:
        (tmp_path / "minipeft_adapter.json").unlink()  # a folder written by peft: only the shapes can tell
        with pytest.raises(ValueError, match="Load it onto the base model it was trained on"):
            load_lora(wrong, tmp_path)
        assert snapshot(wrong) == before


def test_loading_onto_another_checkpoint_of_the_same_architecture_fails(tmp_path, tiny_gpt2, snapshot):
    model = apply_lora(tiny_gpt2(seed=0), targets="c_attn", r=4, alpha=8)
    randomise_B(model)
    merge_lora(model)  # saving a merged model records the base weights it started from, not the merged ones
    save_lora(model, tmp_path)
    other = tiny_gpt2(seed=1)  # same configuration, other weights
    before = snapshot(other)
    with pytest.raises(ValueError, match="same architecture, other weights"):
        load_lora(other, tmp_path)
    assert snapshot(other) == before
    assert lora_layers(load_lora(tiny_gpt2(seed=0), tmp_path))


def test_load_needs_the_files_and_a_base_model(tmp_path, tiny_gpt2):
    with pytest.raises(FileNotFoundError, match="save_lora"):
        load_lora(tiny_gpt2(), tmp_path)
    with pytest.raises(ValueError, match="no LoRA layers to save"):
        save_lora(tiny_gpt2(), tmp_path)
    model = apply_lora(tiny_gpt2(), r=2, alpha=4)
    save_lora(model, tmp_path)
    with pytest.raises(ValueError, match="already has LoRA layers.*fresh base model"):
        load_lora(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is True and config["peft_type"] == "LORA"


# ---- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(r=0), ValueError, "rank r must be a positive integer"),
    (dict(r=-2), ValueError, "rank r must be a positive integer"),
    (dict(r=2.5), ValueError, "rank r must be a positive integer"),
    (dict(alpha=0), ValueError, "alpha must be a finite number > 0"),
    (dict(alpha=-8), ValueError, "alpha must be a finite number > 0"),
    (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(targets=["q_proj"]), ValueError, r"No module of the model matches targets \['q_proj'\].*c_attn"),
    (dict(targets=["c_attn", "wte"]), TypeError, "'transformer.wte' is a Embedding.*nn.Linear"),
    (dict(targets=["c_fc"], qv_only=True), ValueError, "no target is named 'c_attn'"),
])
def test_bad_input_is_refused_and_changes_nothing(kwargs, error, match, tiny_gpt2, snapshot):
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises(error, match=match):
        apply_lora(model, **{"r": 4, "alpha": 8, **kwargs})
    assert snapshot(model) == before


def test_layer_checks_its_own_hyperparameters():
    with pytest.raises(ValueError, match="rank r must be a positive integer"):
        LoRALayer(nn.Linear(4, 4), r=0, alpha=1)
    with pytest.raises(ValueError, match="rank r must be a positive integer, got 2.5"):
        LoRALayer(nn.Linear(4, 4), r=2.5, alpha=1)


@pytest.mark.parametrize("chunks, match", [
    ((True, False, True), r"splits the output into 3 equal parts, but this layer has 8 outputs"),
    ((True, False, True, False, True), r"into 5 equal parts, but this layer has 8 outputs"),
    ((False, False), r"at least one True"),
    ((), r"at least one True"),
    ((1, 0), r"must be True/False flags"),
])
def test_layer_refuses_chunks_that_do_not_split_its_output(chunks, match):
    """8 outputs in 3 chunks used to make chunks of 2 and leave the last 2 outputs out of every chunk, silently."""
    layer = nn.Linear(4, 8)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        LoRALayer(layer, r=2, alpha=4, chunks=chunks)
    assert all(torch.equal(v, before[k]) for k, v in layer.state_dict().items()) and layer.weight.requires_grad
    assert LoRALayer(nn.Linear(4, 9), r=2, alpha=4, chunks=(True, False, True)).lora_B.shape == (6, 2)


def test_wrapping_twice_is_refused_and_changes_nothing(tiny_gpt2):
    model = apply_lora(tiny_gpt2(), targets="c_attn", r=4, alpha=8)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="already has LoRA layers.*unload_lora"):
        apply_lora(model, targets="c_proj", r=4, alpha=8)
    assert model.state_dict().keys() == before.keys() and len(lora_layers(model)) == model.config.n_layer
    assert isinstance(model.transformer.h[0].attn.c_proj, Conv1D)
    assert isinstance(model.transformer.h[0].attn.c_attn, LoRALayer)


# ---- refused calls change nothing; hyper-parameters; damaged files; peft options; 16-bit bases ------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(r=True), ValueError, "rank r must be a positive integer, got True"),
    (dict(r="4"), ValueError, "rank r must be a positive integer, got '4'"),
    (dict(alpha=float("inf")), ValueError, "alpha must be a finite number > 0, got inf.*try alpha=2\\*r"),
    (dict(alpha=float("nan")), ValueError, "alpha must be a finite number > 0, got nan"),
    (dict(alpha=True), ValueError, "alpha must be a finite number > 0, got True"),
    (dict(alpha="16"), ValueError, "alpha must be a finite number > 0, got '16'"),
    (dict(dropout=float("nan")), ValueError, r"dropout must be in \[0, 1\), got nan"),
    (dict(dropout=True), ValueError, r"dropout must be in \[0, 1\), got True"),
    (dict(qv_only="yes"), TypeError, "qv_only must be True or False, got 'yes'"),
    (dict(targets=[]), ValueError, "targets must name at least one module"),
    (dict(targets=["c_attn", 3]), TypeError, "targets must be module names .*got 3"),
    (dict(targets=["c_attn", "c_fc"], qv_only=True), ValueError,
     r"qv_only=True adapts q and v inside c_attn only.*\['transformer.h.0.mlp.c_fc'.*save_lora and peft's adapter"),
])
def test_hyperparameters_are_checked_by_type_and_range_and_change_nothing(kwargs, error, match, tiny_gpt2, snapshot):
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises(error, match=match):
        apply_lora(model, **{"r": 4, "alpha": 8, **kwargs})
    assert snapshot(model) == before


def test_every_combination_apply_lora_accepts_saves_and_loads(tmp_path, tiny_gpt2):
    """qv_only with another target is refused above; every target set it accepts round-trips through the files."""
    for i, kwargs in enumerate([dict(targets="c_attn", qv_only=True), dict(targets=ALL_GPT2),
                                dict(targets=["attn.c_proj", "c_fc"])]):
        model = apply_lora(tiny_gpt2(), r=2, alpha=4, **kwargs)
        randomise_B(model)
        save_lora(model, tmp_path / str(i))
        ids = tokens(model)
        with torch.no_grad():
            assert torch.equal(load_lora(tiny_gpt2(), tmp_path / str(i))(ids).logits, model(ids).logits)


DAMAGED = {"weights": "adapter_model.safetensors", "config": "adapter_config.json", "minipeft": "minipeft_adapter.json"}


def damage_adapter(folder, how: str) -> str:
    """Break a saved adapter the way a user's disk or editor might; returns the file the error must name."""
    weights, config, ours = (folder / n for n in DAMAGED.values())
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "weights not safetensors":
        weights.write_text("{}")
    elif how == "no weights":
        weights.unlink()
    elif how == "malformed config":
        config.write_text(config.read_text()[:-10])
    elif how == "config not a LoRA config":
        config.write_text("[1, 2]")
    elif how == "malformed minipeft file":
        ours.write_text("{'r': 4}")
    return DAMAGED[next(part for part in DAMAGED if part in how)]


@pytest.mark.parametrize("how", ["truncated weights", "weights not safetensors", "no weights", "malformed config",
                                 "config not a LoRA config", "malformed minipeft file"])
def test_a_damaged_adapter_is_refused_in_one_line_naming_the_file(tmp_path, how, tiny_gpt2, snapshot):
    save_lora(apply_lora(tiny_gpt2(), r=2, alpha=4), tmp_path)
    named = damage_adapter(tmp_path, how)
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_lora(model, tmp_path)
    message = str(err.value)
    assert type(err.value) in (ValueError, FileNotFoundError)  # not json's or safetensors' own error
    assert named in message and "\n" not in message and "save" in message.lower()
    assert err.value.__context__ is None or err.value.__suppress_context__  # no parser traceback above it
    assert snapshot(model) == before


@pytest.mark.parametrize("r", [2.5, 0, True, "2"])
def test_a_saved_rank_that_is_not_a_positive_integer_is_refused(tmp_path, r, tiny_gpt2, snapshot):
    save_lora(apply_lora(tiny_gpt2(), r=2, alpha=4), tmp_path)
    ours = json.loads((tmp_path / "minipeft_adapter.json").read_text())
    (tmp_path / "minipeft_adapter.json").write_text(json.dumps({**ours, "r": r}))
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        load_lora(model, tmp_path)
    assert str(err.value) == (f"The rank r of the adapter in {tmp_path} must be a positive integer, got {r!r}. "
                              f"Save the adapter again with save_lora(model, folder).")
    assert snapshot(model) == before


@pytest.mark.parametrize("stop", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_save_that_fails_half_way_leaves_the_previous_adapter_intact(tmp_path, stop, tiny_gpt2, monkeypatch):
    """The files are written beside the folder and renamed into place: a full disk half-way through the weights,
    or Ctrl-C, leaves the previous adapter byte for byte, and no temporary folder beside it."""
    from minipeft import lora_files

    folder = tmp_path / "adapter"
    save_lora(apply_lora(tiny_gpt2(), r=2, alpha=4), folder)
    before = {f.name: f.read_bytes() for f in folder.iterdir()}

    def stopped_half_way(tensors, filename, *args, **kwargs):
        save_file(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as file:
            file.truncate(file.seek(0, 2) // 2)
        raise stop

    newer = apply_lora(tiny_gpt2(seed=1), r=4, alpha=8)
    monkeypatch.setattr(lora_files, "save_file", stopped_half_way)
    with pytest.raises(type(stop)):
        save_lora(newer, folder)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir()] == ["adapter"]
    monkeypatch.undo()
    save_lora(newer, folder)  # a save that completes replaces the previous one, and leaves nothing beside it
    assert [f.name for f in tmp_path.iterdir()] == ["adapter"]
    assert json.loads((folder / "minipeft_adapter.json").read_text())["r"] == 4


def test_a_save_into_a_folder_holding_other_files_is_refused_and_touches_nothing(tmp_path, tiny_gpt2):
    """A save replaces the whole folder, so it refuses one that holds anything else (a user's notes, a checkpoint)."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds \['notes.txt'\], not only the files this save writes"):
        save_lora(apply_lora(tiny_gpt2(), r=2, alpha=4), tmp_path)
    assert [f.name for f in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_loading_from_a_folder_with_no_adapter_names_what_to_do(tmp_path, tiny_gpt2):
    with pytest.raises(FileNotFoundError, match=r"adapter_config.json does not exist.*save_lora\(model, folder\)"):
        load_lora(tiny_gpt2(), tmp_path / "nowhere")


def test_an_adapter_file_with_tensors_minipeft_does_not_implement_is_refused(tmp_path, tiny_gpt2, snapshot):
    """Even when the config looks plain: a lora_B bias (lora_bias) in the weights is never dropped silently."""
    save_lora(apply_lora(tiny_gpt2(), r=2, alpha=4), tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    weights["base_model.model.transformer.h.0.attn.c_attn.lora_B.bias"] = torch.ones(96)
    save_file(weights, tmp_path / "adapter_model.safetensors")
    model = tiny_gpt2()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'transformer.h.0.attn.c_attn.lora_B.bias'.*does not implement"):
        load_lora(model, tmp_path)
    assert snapshot(model) == before


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_base_models_keep_their_dtype_and_round_trip(tmp_path, family, dtype, tiny):
    """LoRA on a 16-bit base keeps A and B in the base's dtype (as loralib); peft's logits: test_lora_peft.py."""
    base = tiny[family]().to(dtype)
    targets = ["c_attn"] if family == "gpt2" else ["q_proj", "v_proj"]
    ours = apply_lora(copy.deepcopy(base), targets=targets, r=4, alpha=8)
    randomise_B(ours)
    assert {p.dtype for p in ours.parameters()} == {dtype}
    ids = tokens(base)
    with torch.no_grad():
        a = ours(ids).logits
    assert a.dtype == dtype and not torch.equal(a, base(ids).logits)
    save_lora(ours, tmp_path)
    with torch.no_grad():
        assert torch.equal(load_lora(copy.deepcopy(base), tmp_path)(ids).logits, a)
