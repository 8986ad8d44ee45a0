import json
import math
import re
import shutil
import time

import pytest
import torch

from minipeft import base_model
from minipeft.base_model import MiniModelMissingError, gpt2_tokenizer, load_base_model, load_mini_gpt2
from minipeft.corpus import heldout_text
from minipeft.paths import MINI_GPT2_DIR
from minipeft.profiles import get_profile


def test_mini_model_loads_fast_and_writes_english():
    start = time.perf_counter()
    model, tokenizer = load_base_model("ci")
    assert time.perf_counter() - start < 5.0
    assert type(model).__name__ == "GPT2LMHeadModel" and tokenizer.pad_token == tokenizer.eos_token
    inputs = tokenizer("KING. My lord, I pray you", return_tensors="pt")
    english = set(re.findall(r"[a-z]+", heldout_text().lower()))
    words, texts = [], []
    for seed in range(5):  # five samples, judged together: one short sample must not decide
        torch.manual_seed(seed)
        out = model.generate(**inputs, max_new_tokens=60, do_sample=True, top_k=40)
        texts.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))
        words += re.findall(r"[a-z]+", texts[-1].lower())
    assert len(words) >= 100
    assert sum(w in english for w in words) / len(words) > 0.85, texts  # real words, not byte soup


def test_heldout_perplexity_far_below_unigram():
    log = json.loads((MINI_GPT2_DIR / "pretrain_log.json").read_text())
    model, tokenizer = load_mini_gpt2()
    ids = torch.tensor(tokenizer(heldout_text()[:40_000])["input_ids"])
    windows = ids[: len(ids) // 128 * 128].view(-1, 128)
    with torch.no_grad():
        loss = model(windows, labels=windows).loss.item()
    assert math.exp(loss) < 0.4 * log["unigram_perplexity"]
    assert log["heldout_perplexity"] < 0.4 * log["unigram_perplexity"]


def test_missing_model_says_how_to_rebuild(tmp_path):
    with pytest.raises(MiniModelMissingError, match=r"missing .*model\.safetensors.*python -m minipeft\.pretrain"):
        load_mini_gpt2(tmp_path)


def test_corrupt_model_says_how_to_rebuild(tmp_path):
    broken = tmp_path / "mini-gpt2"
    shutil.copytree(MINI_GPT2_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MiniModelMissingError, match=r"could not be read.*python -m minipeft\.pretrain"):
        load_mini_gpt2(broken)


def test_a_hub_model_that_cannot_be_fetched_fails_in_one_line_and_nothing_else_is_loaded(monkeypatch, capsys):
    """The gpu profile names GPT-2: without the Hub or a cached copy it stops, where it used to train SmolLM2."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(base_model, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-minipeft-cache")  # no cached gpt2 either
    monkeypatch.setattr(base_model, "load_offline_smollm2", lambda: pytest.fail("loaded SmolLM2 in GPT-2's place"))
    with pytest.raises(base_model.HubModelUnavailableError) as err:
        load_base_model("gpu", device="cpu")
    message = str(err.value)
    assert message.startswith("'gpt2' is not in the local Hugging Face cache and the Hugging Face Hub is unreachable")
    assert "make cache" in message and "MINIPEFT_PROFILE=cpu" in message and "\n" not in message
    assert err.value.__suppress_context__  # no transformers traceback above the line
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(base_model.HubModelUnavailableError, match=r"^'gpt2' is not in .* and HF_HUB_OFFLINE is set"):
        load_base_model("gpu", device="cpu")


def test_a_model_id_the_hub_does_not_know_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(base_model, "hub_offline", lambda: False)
    monkeypatch.setattr(base_model, "hub_reachable", lambda timeout=3.0: True)

    def not_on_the_hub(name, local_files_only):
        raise OSError(f"{name} is not a local folder and is not a valid model identifier listed on "
                      f"'https://huggingface.co/models'\nIf this is a private repository, ...")

    monkeypatch.setattr(base_model, "load_hub_model", not_on_the_hub)
    with pytest.raises(base_model.HubModelUnavailableError) as err:
        load_base_model("gpu", name="gtp2", device="cpu")
    assert str(err.value) == (
        "'gtp2' could not be loaded from the Hugging Face Hub (gtp2 is not a local folder and is not a valid model "
        "identifier listed on 'https://huggingface.co/models'). Check the model id (e.g. gpt2, gpt2-medium), or set "
        "MINIPEFT_BASE_MODEL to a local folder or to smollm2-135m (offline).")


def test_hub_models_load_through_auto_model_for_causal_lm_and_other_families_are_refused(tmp_path, tiny_llama):
    """A Llama-family id loads as what it is (GPT2LMHeadModel used to be forced on every id); BERT is refused from its
    configuration, before any weights are fetched (this folder has none)."""
    llama = tmp_path / "llama"
    tiny_llama().save_pretrained(llama)
    gpt2_tokenizer().save_pretrained(llama)
    model, tokenizer = base_model.load_hub_model(str(llama), local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.pad_token == tokenizer.eos_token
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, is_decoder=True).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match=r"^'.*bert' is a 'bert' model, but minipeft's methods .* Name a GPT-2"):
        base_model.load_hub_model(str(tmp_path / "bert"), local_files_only=True)


def test_each_profile_names_its_base_model_and_the_override_wins(monkeypatch):
    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    assert [get_profile(p).base_model for p in ("ci", "cpu", "gpu")] == ["mini-gpt2", "smollm2-135m", "gpt2"]
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "mini-gpt2")
    assert get_profile("cpu").base_model == "mini-gpt2"
    assert load_base_model("cpu")[0].name_or_path == "mini-gpt2"


def test_base_model_directory_that_holds_no_model_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(tmp_path))
    with pytest.raises(ValueError, match=rf"MINIPEFT_BASE_MODEL={tmp_path}: this directory holds no causal LM"):
        load_base_model("cpu")
    saved = tmp_path / "mini"
    shutil.copytree(MINI_GPT2_DIR, saved)
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(saved))
    model, tokenizer = load_base_model("ci")
    assert model.name_or_path == str(saved) and tokenizer.pad_token == tokenizer.eos_token


def test_real_gpt2_tokenizer_offline():
    tokenizer = gpt2_tokenizer()
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert len(tokenizer) == 50257


def test_every_position_is_trained_and_the_log_says_so():
    """Phase 2 trains positions 128-255: full-context windows score as well as the 128-token ones."""
    log = json.loads((MINI_GPT2_DIR / "pretrain_log.json").read_text())
    phase2 = log["phase2"]
    model, tokenizer = load_mini_gpt2()
    assert phase2["seq_len"] == model.config.n_positions == 256
    assert phase2["full_context_perplexity_after"] < phase2["full_context_perplexity_before"]
    ids = torch.tensor(tokenizer(heldout_text()[:60_000])["input_ids"])
    with torch.no_grad():
        short, full = (model(w, labels=w).loss.item() for w in (ids[:2048].view(-1, 128), ids[:2048].view(-1, 256)))
    assert math.exp(full) < 1.05 * math.exp(short)  # untrained positions would make the long windows worse


def test_base_model_directory_missing_or_not_a_course_model_fails_in_one_line(monkeypatch, tmp_path):
    """A stand-in's path mistyped, or a folder of another kind of model (BERT), fails at once in one line, where
    a mistyped path used to be tried as a Hub id and quietly replaced by SmolLM2."""
    from transformers import BertConfig

    bert = tmp_path / "bert"
    BertConfig(num_hidden_layers=1).save_pretrained(bert)  # transformers would load it as a BertLMHeadModel
    for folder, says in ((tmp_path / "standin" / "gpt2", "no such directory"), (bert, "is a 'bert' model")):
        monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(folder))
        with pytest.raises(ValueError, match=rf"^MINIPEFT_BASE_MODEL={folder}: .*{says}") as err:
            load_base_model("gpu")
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"no such directory"):  # a path given directly, not through the variable
        base_model.load_local_model(tmp_path / "nowhere")
