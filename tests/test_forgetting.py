"""Forgetting measurements, result files and adapter swapping, on tiny random GPT-2s and the mini tokenizer."""

import copy
import math
import statistics

import matplotlib
import matplotlib.pyplot
import pytest
import torch
from conftest import make_tiny_gpt2
from transformers import GPT2LMHeadModel

from minipeft.base_model import load_mini_gpt2
from minipeft.data import load_restaurant, make_loader
from minipeft.forgetting import general_perplexity, probe_texts, text_blocks
from minipeft.forgetting.lab import LabRun
from minipeft.lora import apply_lora, disable_lora
from minipeft.lora_files import save_lora
from minipeft.multitask import AdapterBank
from minipeft.recipes import RECIPES, build, recipe_for
from minipeft.results import load_results, save_results
from minipeft.train import train

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_mini_gpt2()[1]


def tiny_model(vocab_size: int, seed: int = 0) -> GPT2LMHeadModel:
    return make_tiny_gpt2(seed, vocab_size=vocab_size, n_positions=256)


@pytest.fixture(scope="module")
def loaders(tokenizer):
    train_pairs, val = load_restaurant("train", "ci")[:48], load_restaurant("validation", "ci")[:16]
    return (make_loader(train_pairs, tokenizer, batch_size=8, max_len=200),
            make_loader(val, tokenizer, batch_size=8, max_len=200, shuffle=False))


TEXT = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(200))


def test_text_blocks_are_even_windows_of_the_text(tokenizer):
    ids = tokenizer(TEXT)["input_ids"]
    blocks = text_blocks(TEXT, tokenizer, block_len=16, n_blocks=5)
    assert blocks.shape == (5, 16)
    assert blocks[0].tolist() == ids[:16]  # the first window starts at the text's start
    last = (len(ids) // 16 - 1) * 16
    assert blocks[-1].tolist() == ids[last:last + 16]  # and the last one is the last full window
    with pytest.raises(ValueError, match="only .* blocks"):
        text_blocks(TEXT, tokenizer, block_len=16, n_blocks=10_000)
    with pytest.raises(ValueError, match="block_len must be at least 2"):
        text_blocks(TEXT, tokenizer, block_len=1, n_blocks=1)
    for bad in (2.5, True, 0):  # 2.5 used to pass the check
        with pytest.raises(ValueError, match=f"block_len must be a positive integer, got {bad!r}"):
            text_blocks(TEXT, tokenizer, block_len=bad, n_blocks=1)
        with pytest.raises(ValueError, match=f"n_blocks must be a positive integer, got {bad!r}"):
            text_blocks(TEXT, tokenizer, block_len=16, n_blocks=bad)


def test_perplexity_of_a_model_that_knows_nothing_is_the_vocabulary_size(tokenizer):
    model = tiny_model(len(tokenizer))
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied head: every logit is 0, so every token has probability 1/V
    blocks = text_blocks(TEXT, tokenizer, block_len=16, n_blocks=4)
    assert general_perplexity(model, blocks, batch_size=3) == pytest.approx(len(tokenizer), rel=1e-5)


def test_perplexity_matches_the_mean_loss_by_hand(tokenizer):
    model = tiny_model(len(tokenizer))
    blocks = text_blocks(TEXT, tokenizer, block_len=16, n_blocks=4)
    with torch.no_grad():
        losses = [model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks]
    by_hand = math.exp(statistics.fmean(losses))  # equal-length blocks: the mean of means is the mean
    assert general_perplexity(model, blocks, batch_size=3) == pytest.approx(by_hand, rel=1e-5)


def test_fresh_adapters_leave_perplexity_and_probes_unchanged(tokenizer):
    base = tiny_model(len(tokenizer))
    blocks = text_blocks(TEXT, tokenizer, block_len=16, n_blocks=4)
    lora = LabRun("lora", 1e-2, 0, r=4, targets="qv").build(base)  # B = 0: exactly the base model
    assert general_perplexity(lora, blocks) == general_perplexity(base, blocks)
    assert probe_texts(lora, tokenizer, max_new_tokens=5) == probe_texts(base, tokenizer, max_new_tokens=5)
    assert len(probe_texts(base, tokenizer, ["a", "b c"], max_new_tokens=3)) == 2


def test_rates_by_short_name_are_the_recipes_of_notebook_05():
    for recipe in RECIPES.values():
        assert [recipe.rate(m) for m in ("full", "lora", "prefix")] == [
            recipe.lr[m] for m in ("full fine-tuning", "LoRA", "prefix-tuning")]


def test_learning_rates_follow_the_model_loaded_not_the_profiles_name(tiny):
    """Notebooks 06 and 07 passed `profile.base_model`, which names what was asked for, not what was loaded: a
    folder's path (a stand-in) is in no table. The loaded model finds its recipe by name, else by family."""
    smollm2 = tiny["llama"]()
    smollm2.name_or_path = "smollm2-135m"
    standin = tiny["gpt2"]()
    standin.name_or_path = "/data/cache/standin/gpt2"
    for model, recipe in ((smollm2, RECIPES["smollm2-135m"]), (standin, RECIPES["gpt2"])):
        assert [recipe_for(model).rate(m) for m in ("full", "lora", "prefix")] == [
            recipe.lr[m] for m in ("full fine-tuning", "LoRA", "prefix-tuning")]


def test_switching_adapters_off_restores_the_base_bit_for_bit(tokenizer, loaders):
    train_loader, _ = loaders
    base = tiny_model(len(tokenizer))
    ids = next(iter(train_loader))["input_ids"]
    with torch.no_grad():
        reference = base(ids).logits
        lora = build("lora", copy.deepcopy(base), r=2, alpha=32.0, targets="qv")
        prefix = build("prefix", copy.deepcopy(base), prefix_len=3, mlp_hidden=None)
    train(lora, train_loader, steps=3, lr=1e-2, progress=False)
    train(prefix, train_loader, steps=3, lr=1e-2, progress=False)
    with torch.no_grad():
        assert (lora(ids).logits - reference).abs().max() > 0  # trained: the adapter changes the outputs
        with disable_lora(lora):
            assert (lora(ids).logits - reference).abs().max().item() == 0.0
        assert (prefix.base(ids).logits - reference).abs().max().item() == 0.0  # prefix removed


def test_results_round_trip_and_refuse_another_profile(tmp_path, capsys):
    path = save_results("06_forgetting", {"rows": [1, 2]}, "ci", results_dir=tmp_path)
    assert path == tmp_path / "06_forgetting.json"
    assert load_results("06_forgetting", "ci", results_dir=tmp_path) == {"rows": [1, 2]}
    assert load_results("06_forgetting", "cpu", results_dir=tmp_path) is None
    assert "measured with profile 'ci', not 'cpu'" in capsys.readouterr().out
    assert load_results("07_comparison", "ci", results_dir=tmp_path) is None
    assert "No saved results 07_comparison.json" in capsys.readouterr().out


def test_a_dry_runs_results_are_never_read_as_a_real_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "1")
    save_results("06_forgetting", {"rows": [1]}, "ci", results_dir=tmp_path)
    assert load_results("06_forgetting", "ci", results_dir=tmp_path) == {"rows": [1]}  # dry run reads dry run
    monkeypatch.delenv("MINIPEFT_DRY_RUN")
    assert load_results("06_forgetting", "ci", results_dir=tmp_path) is None
    assert "comes from a dry run and this is a real run" in capsys.readouterr().out
    save_results("06_forgetting", {"rows": [2]}, "ci", results_dir=tmp_path)
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "smollm2-135m")  # another base model: not its results either
    assert load_results("06_forgetting", "ci", results_dir=tmp_path) is None
    assert "was measured on mini-gpt2, not smollm2-135m" in capsys.readouterr().out


def slot_list_pairs(pairs):
    """A second task on the same inputs: list the MR's values."""
    return [(mr, " / ".join(v.split("]")[0] for v in mr.split("[")[1:])) for mr, _ in pairs]


def test_adapter_bank_swaps_tasks_and_reproduces_each_adapter_exactly(tokenizer, loaders, tmp_path):
    pairs = load_restaurant("train", "ci")[:32]
    loaders_by_task = {"restaurants": loaders[0],
                       "slots": make_loader(slot_list_pairs(pairs), tokenizer, batch_size=8, max_len=200)}
    base = tiny_model(len(tokenizer))
    ids = next(iter(loaders[1]))["input_ids"]
    expected = {}
    for i, (task, loader) in enumerate(loaders_by_task.items()):
        model = apply_lora(copy.deepcopy(base), r=2, alpha=4, qv_only=True)
        train(model, loader, steps=4, lr=1e-2, seed=i, progress=False)
        save_lora(model, tmp_path / task)
        with torch.no_grad():
            expected[task] = model(ids).logits
    assert not torch.equal(expected["restaurants"], expected["slots"])
    served = apply_lora(copy.deepcopy(base), r=2, alpha=4, qv_only=True)
    bank = AdapterBank(served)
    for task in loaders_by_task:
        bank.add(task, tmp_path / task)
    for task in ("slots", "restaurants", "slots"):
        bank.use(task)
        with torch.no_grad():
            assert torch.equal(served(ids).logits, expected[task]), task
    assert bank.active == "slots" and bank.nbytes("slots") > 0
    with pytest.raises(KeyError, match="No adapter 'poems'"):
        bank.use("poems")
    other = apply_lora(copy.deepcopy(base), r=3, alpha=4, qv_only=True)
    with pytest.raises(ValueError, match="other LoRA layers or ranks"):
        bank.add("wrong", other)
    with pytest.raises(ValueError, match="needs a model with LoRA layers"):
        AdapterBank(base)
