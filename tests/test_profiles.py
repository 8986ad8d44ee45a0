import pytest
import torch

from minipeft.profiles import PROFILES, Profile, default_profile_name, get_device, get_profile


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("MINIPEFT_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"Unknown minipeft profile 'laptop'.*ci, cpu, gpu"):
        get_profile()


def test_env_var_picks_profile(monkeypatch):
    monkeypatch.setenv("MINIPEFT_PROFILE", "CPU")
    assert get_profile().name == "cpu"
    assert get_profile("ci").name == "ci"  # an explicit name wins over the variable


def test_default_follows_hardware(monkeypatch):
    monkeypatch.delenv("MINIPEFT_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_profile_name() == "gpu" and get_profile().name == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "cpu"
    assert get_device(get_profile("gpu")).type == "cpu"  # no CUDA: even gpu sizes run on the CPU


def test_profiles_scale_up():
    ci, cpu, gpu = (PROFILES[n] for n in ("ci", "cpu", "gpu"))
    assert all(isinstance(p, Profile) for p in PROFILES.values())
    for field in ("train_steps", "gpt2_steps", "sweep_steps", "n_train", "n_val", "eval_batches", "n_seeds"):
        assert getattr(ci, field) <= getattr(cpu, field) <= getattr(gpu, field), field
    assert all(p.sweep_steps <= p.train_steps for p in (ci, cpu, gpu))
    # three tiers of base model: the fast mini GPT-2, a real pretrained LM offline, real GPT-2 on a GPU
    assert (ci.base_model, cpu.base_model, gpu.base_model) == ("mini-gpt2", "smollm2-135m", "gpt2")
    # the build notebooks (02-04) stay on GPT-2: the mini one offline, the real one on a GPU
    assert (ci.gpt2_model, cpu.gpt2_model, gpu.gpt2_model) == ("mini-gpt2", "mini-gpt2", "gpt2")
    # sequence length follows the tokenizer, not the hardware: the mini model's Shakespeare BPE needs more
    # tokens for a restaurant sentence than GPT-2's, yet must leave room in its 256 positions for a prefix
    assert ci.seq_len <= cpu.seq_len <= 256 - 32 and gpu.seq_len <= 1024 - 32


def test_setup_line_names_the_model_the_notebook_builds_on(monkeypatch):
    import torch

    from minipeft.notebook import describe
    from minipeft.profiles import get_profile

    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    cpu = get_profile("cpu")
    assert "| base model: smollm2-135m |" in describe(cpu, torch.device("cpu"))
    assert "| base model: mini-gpt2 |" in describe(cpu, torch.device("cpu"), gpt2=True)  # notebooks 02-04
