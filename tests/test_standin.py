"""The stand-in for the Hub's GPT-2 (GPT-2's exact shapes and real tokenizer, random weights) and the gpu profile's
dry run on it: what `make gpu-dry` runs for every notebook, checked here on the cheapest one."""

import importlib
import json
from pathlib import Path

import nbformat
import pytest
from transformers import GPT2Config

from minipeft import standin
from minipeft.base_model import STANDIN_FILE, load_base_model
from minipeft.params import gpt2_parameter_count, meta_parameter_count
from minipeft.recipes import RECIPES, recipe_for

ROOT = Path(__file__).resolve().parents[1]


def tiny_gpt2_config(hub_id: str) -> GPT2Config:
    """GPT-2's vocabulary (its real tokenizer comes with the stand-in) on a model small enough to write at once."""
    return GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50257, n_positions=64)


@pytest.fixture
def tiny_standin(monkeypatch, tmp_path) -> Path:
    monkeypatch.setattr(standin, "gpt2_config", tiny_gpt2_config)
    return standin.write_standin("gpt2", tmp_path / "standin" / "gpt2")


def test_the_standin_has_the_released_checkpoints_exact_shapes():
    for hub_id, n in (("gpt2", 124_439_808), ("gpt2-medium", 354_823_168)):
        config = standin.gpt2_config(hub_id)
        assert gpt2_parameter_count(config) == meta_parameter_count(config) == n
        assert (config.vocab_size, config.n_positions, config.eos_token_id) == (50257, 1024, 50256)


def test_a_standin_loads_through_the_override_and_says_its_weights_are_random(tiny_standin, monkeypatch, capsys):
    files = {p.name for p in tiny_standin.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", STANDIN_FILE} <= files
    assert [p.name for p in tiny_standin.parent.iterdir()] == ["gpt2"]  # the temporary folder was renamed into place
    assert json.loads((tiny_standin / STANDIN_FILE).read_text())["standin_for"] == "gpt2"
    monkeypatch.delenv("MINIPEFT_DRY_RUN", raising=False)
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", str(tiny_standin))
    model, tokenizer = load_base_model("gpu", device="cpu")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and f"a STAND-IN for gpt2 in {tiny_standin}" in line and "RANDOM weights" in line
    assert len(tokenizer) == 50257 and tokenizer("Hello world")["input_ids"] == [15496, 995]  # GPT-2's own BPE
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    # recipes by family, not by name: a folder's path is in no table, yet it gets GPT-2's rates and targets
    assert recipe_for(model) is RECIPES["gpt2"]
    assert recipe_for(model).rate("lora") == RECIPES["gpt2"].lr["LoRA"]


def test_writing_is_atomic_and_never_overwrites(tiny_standin, monkeypatch, tmp_path):
    before = (tiny_standin / "model.safetensors").stat().st_mtime_ns
    assert standin.write_standin("gpt2", tiny_standin) == tiny_standin  # already a stand-in: kept as it is
    assert (tiny_standin / "model.safetensors").stat().st_mtime_ns == before
    other = tmp_path / "mine"
    other.mkdir()
    with pytest.raises(FileExistsError, match="is not a stand-in"):
        standin.write_standin("gpt2", other)

    def crash(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(standin.GPT2LMHeadModel, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        standin.write_standin("gpt2", tmp_path / "broken" / "gpt2")
    assert list((tmp_path / "broken").iterdir()) == []  # neither a half-written model nor its temporary folder


def _run_notebooks():
    return importlib.import_module("minipeft.tools.run_notebooks")


@pytest.mark.gpu_dry
def test_notebook_00_runs_in_the_gpu_profiles_dry_run_on_the_standin(tmp_path_factory, monkeypatch):
    """CI's guard on `make gpu-dry`: the cheapest notebook in the gpu profile, dry run, on a full-size stand-in
    (GPT-2's 124M shapes and 50,257-token tokenizer). Reuses the stand-in `make gpu-dry` writes, if it is there."""
    folder = standin.STANDIN_DIR / "gpt2"
    if not standin.is_standin(folder):
        folder = standin.write_standin("gpt2", tmp_path_factory.mktemp("standin") / "gpt2")
    for name, value in {"MINIPEFT_PROFILE": "gpu", "MINIPEFT_DRY_RUN": "1", "MINIPEFT_BASE_MODEL": str(folder),
                        "MINIPEFT_GPT2_MODEL": str(folder), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}.items():
        monkeypatch.setenv(name, value)
    executed = tmp_path_factory.mktemp("executed") / "00_start_here.ipynb"
    *_, error = _run_notebooks().run_notebook(ROOT / "notebooks" / "00_start_here.ipynb", 300, save_to=executed)
    assert error is None, error
    printed = "".join(out.get("text", "") for cell in nbformat.read(executed, as_version=4).cells
                      for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert "minipeft profile: gpu (DRY RUN (MINIPEFT_DRY_RUN=1)" in printed
    assert f"a STAND-IN for gpt2 in {folder}" in printed and "RANDOM weights" in printed
    assert "124,439,808 parameters: 12 layers, width 768, 12 heads, vocabulary 50,257, context 1024" in printed


def test_no_cell_gives_a_verdict_from_a_dry_runs_numbers():
    """A dry run trains 2 steps on random weights: a cell that prints a verdict (02's on prompts, 04's findings, 05's,
    06's on the article's forgetting claim, 07's table) must say "none (dry run)" there instead of judging on those
    numbers (02: the stand-in's prompts)."""
    judging = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "print" in source and "verdict" in source.lower():
                judging.append(path.name)
                assert "profile.dry_run" in source, f"{path.name}: prints a verdict without checking for a dry run"
    assert sorted(set(judging)) == ["02_prefix_tuning.ipynb", "04_rank_visualizations.ipynb", "05_gpt2_finetune.ipynb",
                                    "06_forgetting.ipynb", "07_comparison.ipynb"]
