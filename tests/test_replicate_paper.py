"""The paper-replication script runs end to end on the mini GPT-2 with a tiny budget."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from minipeft.data import group_by_mr, load_restaurant
from minipeft.metrics import e2e_scores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("replicate_paper", ROOT / "scripts" / "replicate_paper.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["replicate_paper"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_recipes_are_the_papers(script):
    lora, prefix = script.RECIPES["lora"], script.RECIPES["prefix"]
    assert (lora.lr, lora.batch_size, lora.epochs, lora.warmup_steps, lora.label_smoothing, lora.num_beams) == (
        2e-4, 8, 5, 500, 0.1, 10)
    assert (prefix.lr, prefix.batch_size, prefix.epochs, prefix.num_beams) == (5e-5, 5, 10, 5)
    assert script.PAPER["lora"]["BLEU"] == 70.4 and script.PAPER["prefix"]["BLEU"] == 69.7


def test_label_smoothing_wrapper_matches_the_model_loss_without_smoothing(script):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
    ids = torch.randint(0, 50, (2, 7))
    labels = ids.clone()
    labels[:, :3] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    plain = model(**batch).loss
    assert script.LabelSmoothed(model, 0.0)(**batch).loss.item() == pytest.approx(plain.item(), rel=1e-5)
    logp = model(**batch).logits[:, :-1].log_softmax(-1)[labels[:, 1:] != -100]  # the 2 x 3 predicted tokens
    nll = -logp.gather(1, labels[:, 1:][labels[:, 1:] != -100].unsqueeze(1)).mean()
    by_hand = 0.9 * nll - 0.1 * logp.mean(1).mean()  # (1 - eps) NLL + eps x cross-entropy with uniform
    assert script.LabelSmoothed(model, 0.1)(**batch).loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_smoke_run_prints_the_table_beside_the_paper(script, tmp_path, capsys):
    out = tmp_path / "results.json"
    torch.set_num_threads(1)
    results = script.main(["--model", "mini-gpt2", "--data", "offline", "--methods", "lora", "prefix",
                           "--max-steps", "2", "--n-train", "32", "--n-test", "2", "--num-beams", "2",
                           "--max-new-tokens", "8", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "LoRA paper Table 3" in printed and "70.4" in printed and "69.7" in printed
    assert [r["method"] for r in results] == ["lora", "prefix"]
    lora, prefix = results
    assert lora["params"] == 4 * 2 * 4 * (128 + 128)  # 4 layers x (q, v) x r(d_in + d_out) at r=4
    assert prefix["params"] == 10 * 4 * 2 * 128 < prefix["trained_params"]  # the MLP is not stored
    assert all(r["steps"] == 2 for r in results)
    references = group_by_mr(load_restaurant("test", "cpu"))
    for r in results:  # both test MRs are in the samples: their scores, recomputed against their own references
        outputs = dict(r["samples"])
        assert len(outputs) == 2 and all(outputs.values())
        expected = e2e_scores(outputs, {mr: references[mr] for mr in outputs})
        assert {k: r[k] for k in expected} == pytest.approx(expected) and r["ROUGE-L"] > 0
    assert lora["checkpoint_bytes"] < 200_000
    assert json.loads(out.read_text())[0]["method"] == "lora"


def test_the_script_loads_a_local_folder_and_says_when_its_weights_are_random(script, tmp_path, monkeypatch, capsys):
    """`make gpu-dry` points --model at a stand-in for GPT-2 Medium; a mistyped folder fails, never a Hub swap."""
    from transformers import GPT2Config

    from minipeft import standin

    monkeypatch.setattr(standin, "gpt2_config", lambda hub_id: GPT2Config(n_layer=1, n_embd=8, n_head=2))
    folder = standin.write_standin("gpt2-medium", tmp_path / "gpt2-medium")
    model, tokenizer = script.load_model(str(folder))
    assert f"a STAND-IN for gpt2-medium in {folder}" in capsys.readouterr().out and len(tokenizer) == 50257
    with pytest.raises(ValueError, match="no such directory"):
        script.load_model(str(tmp_path / "gpt2-large"))
