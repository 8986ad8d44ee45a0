"""Notebook 05's recipes on real E2E (minipeft.real_e2e): the split by MR on the real dev set, and a ci-scale run on
the mini GPT-2 from a small CSV (every line runs in seconds; no number is a result)."""

import json

import pytest

from minipeft import real_e2e
from minipeft.data import group_by_mr, load_e2e_csv, load_restaurant, write_csv


def _mrs(pairs):
    return set(group_by_mr(pairs))


def test_the_split_keeps_every_mr_whole_and_in_one_split():
    pairs = [(f"name[R{i}], area[riverside]", f"R{i} by the river, take {k}.") for i in range(20) for k in range(3)]
    splits = real_e2e.split_by_mr(pairs)
    assert [len(_mrs(splits[s])) for s in ("train", "validation", "test")] == [16, 2, 2]
    assert sorted(p for part in splits.values() for p in part) == sorted(pairs), "every pair once"
    train, val, test = (_mrs(splits[s]) for s in ("train", "validation", "test"))
    assert not (train & test) and not (val & test) and not (train & val)
    assert splits == real_e2e.split_by_mr(pairs), "seeded: the same split every time"
    assert splits != real_e2e.split_by_mr(pairs, seed=1)


def test_the_real_dev_set_splits_into_438_55_and_54_mrs(e2e_devset):
    splits = real_e2e.split_by_mr(load_e2e_csv(e2e_devset))
    assert [len(_mrs(splits[s])) for s in ("train", "validation", "test")] == [438, 55, 54]
    assert sum(map(len, splits.values())) == 4672


def test_a_ci_scale_run_writes_the_untuned_model_and_each_method_and_reads_back(mini_gpt2, tmp_path, one_thread):
    from minipeft.base_model import load_mini_gpt2

    devset = tmp_path / "devset.csv"
    write_csv(load_restaurant("train", "ci")[:120], devset)
    out = tmp_path / "results"
    written = real_e2e.run_real_e2e("ci", devset, out, base=mini_gpt2, tokenizer=load_mini_gpt2()[1])
    assert len(written) == 4 and written[0].name == "untuned.json"
    assert {json.loads(p.read_text())["method"] for p in written} == {"untuned", "full", "prefix", "lora"}
    record = json.loads((out / "runs" / next(p.name for p in written if p.name.startswith("lora"))).read_text())
    assert record["steps"] == 40 and record["seed"] == 0 and record["provenance"]["commit"]  # ci: train_steps, 1 seed
    assert real_e2e.run_real_e2e("ci", devset, out, base=mini_gpt2, tokenizer=load_mini_gpt2()[1]) == [], "resumes"
    offline = {"untuned": {"SER": 0.5, "BLEU": 10.0}, "LoRA": {"SER": 0.1, "BLEU": 60.0},
               "prompt tuning": {"SER": 0.2, "BLEU": 40.0}}
    table = real_e2e.side_by_side(offline, out)
    lines = table.splitlines()
    assert "real E2E SER % [95%]" in lines[0] and "not run" in lines[-1]  # prompt tuning: no real run
    assert "offline SER %" in lines[0]
    assert "this run (E2E) SER %" in real_e2e.side_by_side(offline, out, source="E2E").splitlines()[0]
    assert "offline SER" not in real_e2e.side_by_side(offline, out, source="E2E"), "an online run is not offline"
    two = {**offline, "full fine-tuning": {"SER": 0.05, "BLEU": 70.0}}
    assert "One seed per method: no intervals" in real_e2e.read_side_by_side(two, out)
    assert "not run" not in next(line for line in lines if line.startswith("LoRA")), "LoRA's row has its runs"
    assert "Real E2E: mini-gpt2" in real_e2e.provenance_line(out)


def test_without_runs_the_notebook_says_how_to_make_them(tmp_path):
    from minipeft.paths import REPO_ROOT

    empty = REPO_ROOT / "results" / "real-e2e-missing-for-test"
    assert "`make real-e2e` makes them" in real_e2e.provenance_line(empty)
    with pytest.raises(FileNotFoundError, match="No E2E dev set at .*MINIPEFT_E2E_DEVSET"):
        real_e2e.run_real_e2e("ci", tmp_path / "absent.csv", tmp_path)


def _record(method: str, seed: int, ser: float, bleu: float) -> dict:
    return {"method": method, "lr": 1e-3, "seed": seed, "ser": ser, "bleu": bleu, "task_loss": 1.0,
            "median_step_seconds": 1.0, "trainable_params": 10, "stored_params": 10, "weight_bytes": 40,
            "memory_bytes": 0}


def test_the_reading_is_computed_from_the_runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    sers = {"full": (0.10, 0.12, 0.11), "lora": (0.30, 0.31, 0.32), "prefix": (0.20, 0.35, 0.25)}
    for method, values in sers.items():
        for seed, ser in enumerate(values):
            (runs / f"{method}-seed{seed}.json").write_text(json.dumps(_record(method, seed, ser, 50.0)))
    (tmp_path / "untuned.json").write_text(json.dumps({"ser": 0.9, "bleu": 1.0}))
    offline = {"untuned": {"SER": 0.8, "BLEU": 2.0}, "full fine-tuning": {"SER": 0.05, "BLEU": 80.0},
               "LoRA": {"SER": 0.1, "BLEU": 70.0}, "prefix-tuning": {"SER": 0.15, "BLEU": 60.0}}
    text = real_e2e.read_side_by_side(offline, tmp_path)
    assert "full fine-tuning: real E2E / offline: SER 5.0% -> 11.0% (2.2x), BLEU 80.0 -> 50.0 (0.62x)" in text
    assert "offline: full fine-tuning < LoRA < prefix-tuning; real E2E (means): full fine-tuning < prefix-tuning" \
           " < LoRA: different." in text
    assert "separate for full fine-tuning < LoRA; the others overlap." in text
    assert "seed 1: full fine-tuning 12.0% < LoRA 31.0% < prefix-tuning 35.0%" in text
    assert "the order changes between seeds." in text and "untuned: one run" in text
    zero = real_e2e.read_side_by_side({"LoRA": {"SER": 0.0, "BLEU": 0.0}}, tmp_path)  # a smoke run may score 0
    assert "LoRA: real E2E / offline: SER 0.0% -> 31.0% (from 0), BLEU 0.0 -> 50.0 (from 0)" in zero
    assert "One method: nothing to order." in zero and "overlap" not in zero
