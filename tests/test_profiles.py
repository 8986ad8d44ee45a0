from pathlib import Path

import pytest
import torch

from minipeft.profiles import PROFILES, Profile, default_profile_name, get_device, get_profile


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("MINIPEFT_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"Unknown minipeft profile 'laptop'.*ci, cpu, gpu"):
        get_profile()


@pytest.mark.parametrize("name", [3, 0, False, b"ci", ["ci"], 2.5])
def test_a_profile_name_that_is_not_a_string_is_refused_like_an_unknown_one(name, monkeypatch):
    """0 and False used to fall through to MINIPEFT_PROFILE, 3 and b"ci" to an AttributeError on .strip()."""
    monkeypatch.setenv("MINIPEFT_PROFILE", "ci")
    with pytest.raises(ValueError) as err:
        get_profile(name)
    assert str(err.value) == (f"Unknown minipeft profile {name!r}. Valid profiles: ci, cpu, gpu. Set MINIPEFT_PROFILE "
                              f"to one of them (or unset it to choose from the hardware).")


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
    # notebook 04 trains only the mini GPT-2: its line does not describe the profile's SmolLM2 runs
    only_gpt2 = describe(cpu, torch.device("cpu"), gpt2=True)
    assert "| base model: mini-gpt2 |" in only_gpt2 and "SmolLM2" not in only_gpt2
    assert f"({cpu.gpt2_steps}-step training runs of mini-gpt2 only; the profile's smollm2-135m is not used here)" \
        in only_gpt2
    # notebooks 02 and 03 build on the mini GPT-2 and train on SmolLM2: the line names both, the trained one last
    both = describe(cpu, torch.device("cpu"), gpt2=True, trains_base=True)
    assert "| built on: mini-gpt2 | base model: smollm2-135m |" in both and f"({cpu.description})" in both
    for name in ("ci", "gpu"):  # one model builds and trains: named once
        line = describe(get_profile(name), torch.device("cpu"), gpt2=True, trains_base=True)
        assert "built on" not in line and f"| base model: {PROFILES[name].base_model} |" in line


@pytest.mark.parametrize("name", list(PROFILES))
def test_dry_run_keeps_the_shapes_and_cuts_the_counts(monkeypatch, name):
    from minipeft.notebook import describe

    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    monkeypatch.delenv("MINIPEFT_GPT2_MODEL", raising=False)
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "1")
    full, dry = PROFILES[name], get_profile(name)
    kept = ("name", "base_model", "gpt2_model", "seq_len", "batch_size")
    assert [getattr(dry, f) for f in kept] == [getattr(full, f) for f in kept] and dry.dry_run and not full.dry_run
    assert (dry.train_steps, dry.gpt2_steps, dry.sweep_steps, dry.eval_batches, dry.n_seeds) == (2, 2, 2, 1, 1)
    assert dry.n_train >= 2 * dry.batch_size and dry.n_val >= dry.batch_size  # a batch still fills
    assert dry.max_new_tokens < full.max_new_tokens and dry.n_test < full.n_test
    assert get_profile(dry) == dry  # applying it twice changes nothing
    assert "DRY RUN" in describe(dry, torch.device("cpu")) and "no number it prints is a result" in dry.description
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "0")
    assert get_profile(name) == full


def test_model_overrides_reach_the_profile_and_refuse_what_they_cannot_load(monkeypatch, tmp_path):
    from transformers import BertConfig, GPT2Config, LlamaConfig

    monkeypatch.delenv("MINIPEFT_DRY_RUN", raising=False)
    gpt2, llama, bert = tmp_path / "gpt2", tmp_path / "llama", tmp_path / "bert"
    GPT2Config(n_layer=1).save_pretrained(gpt2)
    LlamaConfig(num_hidden_layers=1).save_pretrained(llama)
    BertConfig(num_hidden_layers=1).save_pretrained(bert)
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(llama))
    monkeypatch.setenv("MINIPEFT_GPT2_MODEL", str(gpt2))
    profile = get_profile("gpu")
    assert (profile.base_model, profile.gpt2_model) == (str(llama), str(gpt2))
    cases = [("MINIPEFT_BASE_MODEL", tmp_path / "missing", "no such directory"),
             ("MINIPEFT_BASE_MODEL", bert, "the model in this directory is a 'bert' model, but minipeft's methods"),
             ("MINIPEFT_GPT2_MODEL", llama, "holds a 'llama' model, not a GPT-2"),
             ("MINIPEFT_GPT2_MODEL", "smollm2-135m", "SmolLM2 is a Llama-family model")]
    for env, value, says in cases:
        with monkeypatch.context() as patch:
            patch.setenv(env, str(value))
            with pytest.raises(ValueError, match=rf"^{env}={value}: .*{says}") as err:
                get_profile("gpu")
            assert "\n" not in str(err.value)
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "data/mini-gpt2")  # set at the repository root, read in notebooks/
    monkeypatch.chdir(tmp_path)
    assert get_profile("ci").base_model == str(Path(__file__).resolve().parents[1] / "data" / "mini-gpt2")
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "gpt2-medium")  # a Hub id is left to the loader
    assert get_profile("cpu").base_model == "gpt2-medium"
