"""The paper-replication script runs end to end on the mini GPT-2 with a tiny budget."""

import json

import pytest
import torch

from minipeft.data import group_by_mr, load_restaurant
from minipeft.metrics import e2e_scores
from minipeft.tools import replicate_paper


@pytest.fixture(scope="module")
def script():
    return replicate_paper


def test_recipes_are_the_papers(script):
    """The rates and schedules are the recipe table's (tests/test_recipes.py checks them against the papers)."""
    from minipeft.recipes import PAPER_SCHEDULES, RECIPES

    assert script.RECIPE is RECIPES["papers-gpt2-medium"] and script.RECIPE.rate("lora") == 2e-4
    assert PAPER_SCHEDULES["LoRA"].label_smoothing == 0.1
    assert script.PAPER["lora"]["BLEU"] == 70.4 and script.PAPER["prefix"]["BLEU"] == 69.7


def test_train_label_smooths_the_loss_as_the_lora_paper_when_asked():
    """The recipe's label smoothing 0.1 is minipeft.train's option: (1 - eps) NLL + eps x cross-entropy with the
    uniform distribution, over the labelled next tokens only."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from minipeft.train import train, training_loss

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50, (2, 7))
    labels = ids.clone()
    labels[:, :3] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        plain = model(**batch).loss
        assert training_loss(model, batch, 1e-9).item() == pytest.approx(plain.item(), rel=1e-5)  # same tokens
        logp = model(**batch).logits[:, :-1].log_softmax(-1)[labels[:, 1:] != -100]  # the 2 x 3 predicted tokens
        nll = -logp.gather(1, labels[:, 1:][labels[:, 1:] != -100].unsqueeze(1)).mean()
        by_hand = 0.9 * nll - 0.1 * logp.mean(1).mean()
        assert training_loss(model, batch, 0.1).item() == pytest.approx(by_hand.item(), rel=1e-5)
    history = train(model, [batch], steps=1, lr=1e-3, label_smoothing=0.1, progress=False)
    assert history.train_loss[0] == pytest.approx(by_hand.item(), rel=1e-5) and abs(by_hand - plain).item() > 1e-3
    with pytest.raises(ValueError, match="label_smoothing"):
        train(model, [batch], steps=1, lr=1e-3, label_smoothing=1.0, progress=False)


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
    model, tokenizer = script.load_base_model(name=str(folder), device="cpu")
    assert f"a STAND-IN for gpt2-medium in {folder}" in capsys.readouterr().out and len(tokenizer) == 50257
    with pytest.raises(ValueError, match="no such directory"):
        script.main(["--model", str(tmp_path / "gpt2-large"), "--data", "offline", "--max-steps", "1", "--quiet"])


def test_a_llama_model_replicates_too(tmp_path, capsys):
    """A Llama config has no ``n_positions`` and names its projections q_proj, v_proj: every method still runs."""
    from conftest import make_tiny_llama

    from minipeft.base_model import gpt2_tokenizer
    from minipeft.params import count_parameters

    folder = tmp_path / "tiny-llama"
    make_tiny_llama(vocab_size=50257, max_position_embeddings=256, bos_token_id=50256, eos_token_id=50256,
                    pad_token_id=50256).save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    torch.set_num_threads(1)
    results = replicate_paper.main(["--model", str(folder), "--data", "offline", "--methods", "lora", "prefix", "full",
                                    "--max-steps", "1", "--n-train", "16", "--n-test", "2", "--num-beams", "2",
                                    "--max-new-tokens", "4", "--quiet"])
    lora, prefix, full = results
    assert "llama" in capsys.readouterr().out
    assert lora["params"] == 2 * 4 * ((32 + 32) + (32 + 16))  # 2 layers x r=4 x (q: 32 -> 32, v: 32 -> 16 in GQA)
    assert prefix["params"] == 10 * 2 * 2 * 2 * 8  # P x layers x (k, v) x 2 key/value heads x width 8
    assert full["params"] == count_parameters(make_tiny_llama(vocab_size=50257))
    assert all(r["steps"] == 1 and r["final_train_loss"] > 0 for r in results)
