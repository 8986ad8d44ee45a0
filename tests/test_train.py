"""The shared training loop: it learns, it trains only what requires grad, and it measures honestly."""

import math
import re
import resource
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch
from conftest import make_tiny_gpt2
from transformers import GPT2LMHeadModel

from minipeft.data import load_restaurant, make_loader
from minipeft.decode import generate_texts
from minipeft.params import count_parameters
from minipeft.pretrain import copy_loss, heldout_perplexity
from minipeft.train import History, autocast_dtype, evaluate_loss, evaluating, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    """A 600-token byte-level BPE trained on the task in a second: keeps the tiny models' logits small."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    texts = [f"{mr} || {ref}" for mr, ref in load_restaurant("train", "ci")]
    bpe.train_from_iterator(texts, vocab_size=600, special_tokens=["<|endoftext|>"], show_progress=False)
    eos = "<|endoftext|>"
    return GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=eos, bos_token=eos, unk_token=eos,
                             pad_token=eos, model_max_length=128)


@pytest.fixture(scope="module")
def loaders(tokenizer):
    pairs = load_restaurant("train", "ci")[:64]
    val = load_restaurant("validation", "ci")[:16]
    return (make_loader(pairs, tokenizer, batch_size=8, max_len=128),
            make_loader(val, tokenizer, batch_size=8, max_len=128, shuffle=False))


def tiny_model(vocab_size: int, seed: int = 0) -> GPT2LMHeadModel:
    return make_tiny_gpt2(seed, vocab_size=vocab_size, n_positions=128)


def peak_resident_bytes() -> int:
    """The most resident memory this process has held so far, from the kernel (Linux gives kilobytes, macOS bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def test_full_finetune_lowers_the_loss(tokenizer, loaders):
    train_loader, val_loader = loaders
    model = tiny_model(len(tokenizer))
    before = evaluate_loss(model, val_loader)
    hist = train(model, train_loader, steps=30, lr=3e-3, val_loader=val_loader, eval_every=10,
                 warmup_steps=5, progress=False)
    assert isinstance(hist, History) and hist.steps == 30
    assert hist.val_steps == [10, 20, 30] and len(hist.val_loss) == 3
    assert hist.val_loss[-1] < before - 1.0
    assert hist.val_loss[-1] == pytest.approx(evaluate_loss(model, val_loader))
    assert not model.training
    n_all = sum(p.numel() for p in model.parameters())
    assert hist.trainable_params == count_parameters(model, trainable_only=True) == n_all
    assert psutil.Process().memory_info().rss / 1.25 < hist.peak_memory_bytes <= peak_resident_bytes()  # the RSS
    assert len(hist.seconds_per_step) == 30 and all(t > 0 for t in hist.seconds_per_step)


def test_warmup_then_linear_decay(tokenizer, loaders):
    model = tiny_model(len(tokenizer))
    hist = train(model, loaders[0], steps=10, lr=1e-3, warmup_steps=4, progress=False)
    assert hist.lr[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert hist.lr[4:] == pytest.approx([1e-3 * (10 - s) / 6 for s in range(4, 10)])


def test_frozen_parameters_stay_put(tokenizer, loaders):
    model = tiny_model(len(tokenizer))
    for name, p in model.named_parameters():
        p.requires_grad = "ln_f" in name
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    hist = train(model, loaders[0], steps=3, lr=1e-2, progress=False)
    assert hist.trainable_params == 2 * 32
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(not torch.equal(p, trained[n]) for n, p in model.named_parameters() if n in trained)


def test_runs_are_seeded(tokenizer, loaders):
    runs = [train(tiny_model(len(tokenizer)), loaders[0], steps=4, lr=1e-3, progress=False).train_loss
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_wrapper_module_trains_through_the_same_loop(tokenizer, loaders):
    class Wrapper(torch.nn.Module):  # like a prefix-tuning wrapper: frozen base, its own parameters
        def __init__(self, base):
            super().__init__()
            self.base = base.requires_grad_(False)
            self.bias = torch.nn.Parameter(torch.zeros(base.config.vocab_size))

        def forward(self, input_ids, attention_mask, labels):
            logits = self.base(input_ids=input_ids, attention_mask=attention_mask).logits + self.bias
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
            return type("Out", (), {"loss": loss})()

    model = Wrapper(tiny_model(len(tokenizer)))
    hist = train(model, loaders[0], steps=5, lr=1e-2, progress=False)
    assert hist.trainable_params == len(tokenizer) and hist.train_loss[-1] < hist.train_loss[0]


def test_clear_errors(tokenizer, loaders):
    model = tiny_model(len(tokenizer)).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, loaders[0], steps=1, lr=1e-3, progress=False)
    for steps in (0, 2.5, "10"):  # 2.5 used to pass the check
        with pytest.raises(ValueError, match=f"steps must be a positive integer, got {steps!r}"):
            train(model, loaders[0], steps=steps, lr=1e-3, progress=False)
    for lr in (0, -1e-3, float("nan"), "1e-3"):  # none was checked
        with pytest.raises(ValueError, match=f"lr must be a finite number > 0, got {lr!r}"):
            train(model, loaders[0], steps=1, lr=lr, progress=False)


def test_history_plot(tokenizer, loaders):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = History(train_loss=[3.0, 2.0, 1.5, 1.0], val_steps=[2, 4], val_loss=[2.5, 1.2])
    plt.figure()  # a fresh current figure: plot() draws on plt.gca() when no axes are given
    ax = hist.plot(label="full", smooth=2)
    assert ax.get_xlabel() == "training step" and len(ax.lines) == 2
    train_line, val_line = ax.lines  # the mean of the 2 losses up to each step, at that step
    assert train_line.get_xydata().tolist() == [[2, 2.5], [3, 1.75], [4, 1.25]]
    assert val_line.get_xydata().tolist() == [[2, 2.5], [4, 1.2]]
    assert (train_line.get_label(), val_line.get_label()) == ("full (train)", "full (val)")
    plt.close("all")


@pytest.fixture(scope="module")
def trained(tokenizer, loaders):
    model = tiny_model(len(tokenizer))
    train(model, loaders[0], steps=40, lr=3e-3, warmup_steps=5, progress=False)
    return model


def test_generation_does_not_depend_on_batching(tokenizer, trained):
    mrs = [mr for mr, _ in load_restaurant("test", "ci")][::4]
    one_by_one = generate_texts(trained, tokenizer, mrs, max_new_tokens=12, batch_size=1, progress=False)
    batched = generate_texts(trained, tokenizer, mrs, max_new_tokens=12, batch_size=len(mrs), progress=False)
    assert len(batched) == len(mrs) and all(isinstance(t, str) and t for t in batched)
    assert batched == one_by_one  # left padding: padded rows generate exactly what they generate alone
    assert tokenizer.padding_side == "right" and not trained.training  # nothing left changed


def test_lora_and_prefix_train_through_the_same_loop(tokenizer, loaders):
    from minipeft.lora import apply_lora
    from minipeft.prefix import PrefixTuningModel

    lora = apply_lora(tiny_model(len(tokenizer)), targets=["c_attn"], r=4, alpha=8, qv_only=True)
    prefix = PrefixTuningModel(tiny_model(len(tokenizer)), prefix_len=5, mlp_hidden=16)
    for model in (lora, prefix):
        frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
        hist = train(model, loaders[0], steps=12, lr=1e-2, val_loader=loaders[1], progress=False)
        n_all = sum(p.numel() for p in model.parameters())
        assert hist.trainable_params == count_parameters(model, trainable_only=True) < n_all / 5
        assert hist.val_loss[-1] < evaluate_loss(tiny_model(len(tokenizer)), loaders[1])
        assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
        texts = generate_texts(model, tokenizer, ["name[Juniper], food[French]"], max_new_tokens=5, progress=False)
        assert len(texts) == 1


def test_mini_gpt2_trains_on_real_e2e_and_is_scored_on_human_references(e2e_devset):
    from minipeft.base_model import load_mini_gpt2
    from minipeft.data import group_by_mr, load_e2e_csv
    from minipeft.lora import apply_lora
    from minipeft.metrics import e2e_scores

    groups = group_by_mr(load_e2e_csv(e2e_devset))
    mrs = list(groups)
    train_pairs = [(mr, ref) for mr in mrs[:40] for ref in groups[mr]]  # MR-disjoint from the scored ones
    held_out = {mr: groups[mr] for mr in mrs[-4:]}
    model, tokenizer = load_mini_gpt2()
    apply_lora(model, targets=["c_attn"], r=4, alpha=32, qv_only=True)
    loader = make_loader(train_pairs, tokenizer, batch_size=4, max_len=model.config.n_positions)
    unseen = make_loader([(mr, ref) for mr, refs in held_out.items() for ref in refs], tokenizer, batch_size=8,
                         max_len=model.config.n_positions, shuffle=False)
    before = evaluate_loss(model, unseen)
    hist = train(model, loader, steps=4, lr=1e-2, progress=False)
    assert all(math.isfinite(x) for x in hist.train_loss)
    assert evaluate_loss(model, unseen) < before - 0.2  # measured 6.74 -> 6.28 on the 4 unseen MRs' references
    texts = generate_texts(model, tokenizer, list(held_out), max_new_tokens=16, progress=False)
    scores = e2e_scores(dict(zip(held_out, texts)), held_out)
    # the yardstick: one person's sentence scored against the other people's (measured BLEU 58.5, SER 1/24)
    human = e2e_scores({mr: refs[0] for mr, refs in held_out.items()}, {mr: refs[1:] for mr, refs in held_out.items()})
    assert human["BLEU"] > 50 and human["ROUGE-L"] > 60 and human["SER"] < 0.25
    assert scores["BLEU"] < human["BLEU"] / 4 and scores["SER"] > human["SER"]  # 4 steps from Shakespeare: far off


@pytest.mark.parametrize(("major", "expected"), [(7, torch.float16), (8, torch.bfloat16), (9, torch.bfloat16)])
def test_autocast_uses_bf16_only_where_the_gpu_has_it(monkeypatch, major, expected):
    """A T4 (compute capability 7.5) emulates bf16, so torch.cuda.is_bf16_supported() says True there by default;
    the loop must pick fp16 with loss scaling on it, and bf16 from Ampere (8.x) on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(major=major, minor=5))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulation works
    assert torch.cuda.is_bf16_supported()  # the trap: True through emulation, whatever the capability
    assert autocast_dtype(torch.device("cuda")) == expected
    assert autocast_dtype(torch.device("cpu")) is None


def test_no_code_asks_whether_bf16_works_the_way_a_t4_answers_yes():
    """Everything that names or picks a precision asks autocast_dtype (or passes including_emulation=False):
    notebook 00's environment check said "bf16 supported" on a T4, where train() uses fp16."""
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("minipeft/**/*.py"), *root.glob("scripts/*.py"), *root.glob("notebooks/*.ipynb")]
    for path in files:
        for call in re.findall(r"(?<!`)torch\.cuda\.is_bf16_supported\((.*?)\)", path.read_text()):  # not ``quoted``
            assert "including_emulation=False" in call, f"{path.name}: is_bf16_supported({call}) is True on a T4"


def test_training_frees_its_gradients(tokenizer, loaders):
    """A model kept after training (notebook 06 keeps one per setting on the GPU) holds no gradients: for full
    fine-tuning they were as large as the weights."""
    model = tiny_model(len(tokenizer))
    train(model, loaders[0], steps=2, lr=1e-3, progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_one_evaluation_helper_restores_the_mode_everywhere(tokenizer, loaders):
    """evaluate_loss, the held-out perplexity of pretraining and the copy loss all evaluate through evaluating()."""
    model = tiny_model(len(tokenizer)).train()
    with evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training
    evaluate_loss(model, loaders[1])
    ids = torch.randint(1, len(tokenizer), (100,), generator=torch.Generator().manual_seed(0))
    ppl = heldout_perplexity(model, ids, seq_len=16, batch=4)  # 6 windows: a batch of 4, then one of 2
    copy_loss(model, len(tokenizer))
    assert model.training
    with torch.no_grad():
        model.eval()
        losses = [model(w[None], labels=w[None]).loss.item() for w in ids[:96].view(6, 16)]
    assert ppl == pytest.approx(math.exp(sum(losses) / 6), rel=1e-5)  # every predicted token weighs the same
