"""The task data: MR parsing, the offline restaurant set, real E2E from a CSV, and causal-LM batches."""

from pathlib import Path

import pytest
import torch

from minipeft.base_model import gpt2_tokenizer
from minipeft.data import (
    IGNORE_INDEX,
    SLOTS,
    build_restaurant_files,
    format_mr,
    group_by_mr,
    load_e2e_csv,
    load_restaurant,
    make_loader,
    parse_mr,
    prompt_text,
    read_csv,
    write_csv,
)
from minipeft.profiles import PROFILES


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def test_parse_mr_reads_slots_and_round_trips():
    mr = "name[The Eagle], eatType[coffee shop], customer rating[5 out of 5], near[Burger King]"
    slots = parse_mr(mr)
    assert slots == {"name": "The Eagle", "eatType": "coffee shop", "customer rating": "5 out of 5",
                     "near": "Burger King"}
    assert format_mr(slots) == mr


@pytest.mark.parametrize(("mr", "match"), [
    ("name[The Eagle, area[riverside]", "line 7: malformed MR.*unbalanced brackets"),
    ("name[The Eagle]], area[riverside]", "line 7: malformed MR.*unbalanced brackets"),
    ("name[The Eagle], cuisine[French]", "line 7: unknown slot 'cuisine'.*E2E slots are: name, eatType"),
    ("name[The Eagle], riverside", "line 7: malformed MR.*'riverside' is not of the form slot"),
    ("name[A], name[B]", "line 7: slot 'name' appears twice"),
    ("", "line 7: empty MR"),
])
def test_parse_mr_rejects_malformed_mrs_naming_the_line(mr, match):
    with pytest.raises(ValueError, match=match):
        parse_mr(mr, line=7)


def test_bad_mr_in_a_csv_names_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    write_csv([("name[A], area[riverside]", "A is by the river."), ("name[B], area[riverside", "B.")], path)
    with pytest.raises(ValueError, match="line 3: malformed MR"):
        read_csv(path)


def test_empty_dataset_says_what_to_change(tmp_path, tokenizer):
    path = tmp_path / "empty.csv"
    write_csv([], path)
    with pytest.raises(ValueError, match="is empty.*Check the file"):
        read_csv(path)
    with pytest.raises(ValueError, match="is empty"):
        make_loader([], tokenizer, batch_size=2, max_len=64)


@pytest.mark.parametrize("profile", ["ci", "cpu"])
def test_offline_restaurant_splits_have_profile_sizes_and_disjoint_mrs(profile):
    p = PROFILES[profile]
    splits = {s: load_restaurant(s, p) for s in ("train", "validation", "test")}
    assert [len(v) for v in splits.values()] == [p.n_train, p.n_val, p.n_test]
    mrs = {s: set(group_by_mr(v)) for s, v in splits.items()}
    assert not mrs["train"] & mrs["test"] and not mrs["train"] & mrs["validation"]
    groups = group_by_mr(splits["train"])
    assert sum(len(r) > 1 for r in groups.values()) > 0.9 * len(groups)  # several references per MR
    used = {slot for mr in groups for slot in parse_mr(mr)}
    assert used == set(SLOTS)


def test_generator_is_seeded_and_matches_committed_files(tmp_path):
    build_restaurant_files(tmp_path, sizes={"train": 4000, "validation": 400, "test": 200})
    committed = Path(__file__).resolve().parents[1] / "data" / "restaurants"
    for split in ("train", "validation", "test"):
        assert read_csv(tmp_path / f"{split}.csv") == read_csv(committed / f"{split}.csv")


def test_references_mention_their_slot_values():
    for mr, ref in load_restaurant("train", "ci"):
        slots = parse_mr(mr)
        assert slots["name"] in ref
        if "near" in slots:
            assert slots["near"] in ref
        if "customer rating" in slots and "out of" in slots["customer rating"]:
            assert slots["customer rating"] in ref


def test_loader_masks_everything_but_the_text(tokenizer):
    pairs = [("name[A], area[riverside]", "A is by the riverside."),
             ("name[Blue Heron], eatType[pub], food[French], near[the Town Hall]", "Blue Heron is a pub.")]
    loader = make_loader(pairs, tokenizer, batch_size=2, max_len=64, shuffle=False)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for row, (mr, ref) in enumerate(pairs):
        n_prompt = len(tokenizer(prompt_text(mr))["input_ids"])
        length = int(batch["attention_mask"][row].sum())
        assert batch["attention_mask"][row, :length].all() and not batch["attention_mask"][row, length:].any()
        labels = batch["labels"][row]
        assert (labels[:n_prompt] == IGNORE_INDEX).all() and (labels[length:] == IGNORE_INDEX).all()
        text = labels[n_prompt:length]
        assert (text == batch["input_ids"][row, n_prompt:length]).all()
        assert tokenizer.decode(text) == " " + ref + tokenizer.eos_token
    assert batch["attention_mask"][0, -1] == 0  # right padding: the shorter first row ends in padding


def test_loader_is_seeded(tokenizer):
    pairs = load_restaurant("train", "ci")[:32]
    first = [next(iter(make_loader(pairs, tokenizer, 4, 128, seed=s)))["input_ids"] for s in (1, 1, 2)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])


def test_too_long_examples_say_what_to_change(tokenizer):
    pairs = [("name[A], area[riverside]", "A is by the riverside. " * 20)]
    with pytest.raises(ValueError, match=r"Example 0 is .* tokens, longer than max_len=16.*Raise max_len "
                                         r"\(at most the model.s context, `context_length\(model\)`\)"):
        make_loader(pairs, tokenizer, batch_size=1, max_len=16)
    with pytest.raises(ValueError, match="No example fits"):
        make_loader(pairs, tokenizer, batch_size=1, max_len=16, drop_long=True)
    with pytest.raises(ValueError, match="longer than the model's context \\(1024 tokens\\)"):
        make_loader(pairs, tokenizer, batch_size=1, max_len=4096)


def test_real_e2e_devset_loads_and_parses(tokenizer, e2e_devset):
    pairs = load_e2e_csv(e2e_devset)
    groups = group_by_mr(pairs)
    assert len(pairs) == 4672 and len(groups) == 547
    assert all(parse_mr(mr)["name"] for mr in groups)
    loader = make_loader(pairs[:64], tokenizer, batch_size=16, max_len=128)
    assert sum(1 for _ in loader) == 4


def test_the_gpu_profile_scores_every_mr_of_e2e_because_n_test_counts_rows(e2e_devset):
    """E2E lists ~7 references per MR, one per row: n_test = 630 (the number of test MRs) kept only the first ~85 MRs.
    The gpu profile takes every test row (4,693), so all 630 MRs are scored, as in the papers. Shown on the dev set
    (4,672 rows, 547 MRs): as many rows as MRs covers only a sixth of them."""
    from minipeft.data import first_rows

    pairs = load_e2e_csv(e2e_devset)
    n_mrs = len(group_by_mr(pairs))
    assert len(group_by_mr(first_rows(pairs, n_mrs, whole_mrs=True))) < n_mrs / 4
    assert PROFILES["gpu"].n_test >= 4693 > len(pairs)  # E2E's test split has 4,693 rows (load_e2e's docstring)
    assert len(group_by_mr(first_rows(pairs, PROFILES["gpu"].n_test, whole_mrs=True))) == n_mrs


def test_hub_loader_reads_the_parquet_export(tmp_path, monkeypatch):
    """The Hub is unreachable here: stand a local copy of the Parquet export in for it."""
    import datasets

    import minipeft.base_model as base_model
    from minipeft import data

    for split, n in (("train", 3), ("validation", 2), ("test", 2)):
        folder = tmp_path / "default" / split
        folder.mkdir(parents=True)
        rows = {"meaning_representation": [f"name[R{i}], area[riverside]" for i in range(n)],
                "human_reference": [f"R{i} is by the river." for i in range(n)]}
        datasets.Dataset.from_dict(rows).to_parquet(folder / "0000.parquet")
    calls = []
    real = datasets.load_dataset

    def local_hub(path, revision=None, **kwargs):
        calls.append((path, revision))
        return real(str(tmp_path), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", local_hub)
    monkeypatch.setattr(base_model, "hub_offline", lambda: False)
    monkeypatch.setattr(base_model, "hub_reachable", lambda timeout=3.0: True)
    assert data.load_e2e("validation") == [("name[R0], area[riverside]", "R0 is by the river."),
                                           ("name[R1], area[riverside]", "R1 is by the river.")]
    assert len(data.load_e2e("train", n=2)) == 2
    assert calls[0] == (data.E2E_HUB_ID, "refs/convert/parquet")


def test_offline_fallback_says_which_data_it_uses(monkeypatch, capsys, tmp_path):
    import datasets

    import minipeft.base_model as base_model
    from minipeft import data

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path))  # no cached E2E, whatever this machine has
    monkeypatch.setattr(base_model, "hub_offline", lambda: True)
    monkeypatch.delenv("MINIPEFT_E2E_DIR", raising=False)
    with pytest.raises(ConnectionError, match="unreachable.*load_restaurant.*load_e2e_csv"):
        data.load_e2e("test")
    pairs, source = data.load_e2e_or_offline("test", "gpu")
    assert source == "offline" and len(pairs) == 200  # the offline set is capped at its committed size
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "offline restaurant set" in out and "the Hub is unreachable" in out  # one line


def test_gpu_profile_reads_real_e2e_from_a_local_folder_and_keeps_test_mrs_whole(monkeypatch, capsys, tmp_path):
    """MINIPEFT_E2E_DIR (make gpu-dry) puts E2E's own CSV files where the Hub was; a test MR keeps every reference,
    where cutting at n_test rows used to leave the last MR scored against only some of them."""
    from minipeft import data

    rows = [(f"name[R{i}], area[riverside]", f"R{i} is by the river, version {k}.") for i in range(6) for k in range(3)]
    for name in data.E2E_FILES.values():
        write_csv(rows, tmp_path / name)
    monkeypatch.setenv("MINIPEFT_E2E_DIR", str(tmp_path))
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "1")  # n_test = 16 rows: five MRs and one reference of the sixth
    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    pairs, source = data.load_e2e_or_offline("test", "gpu")
    assert source == "E2E" and pairs == rows  # ... so the sixth MR's other two references come too
    assert f"real E2E NLG from {tmp_path / 'testset_w_refs.csv'} (MINIPEFT_E2E_DIR)" in capsys.readouterr().out
    train_pairs, _ = data.load_e2e_or_offline("train", "gpu")
    assert train_pairs == rows  # n_train = 32 rows, more than there are: all 18
    assert data.first_rows(rows, 4) == rows[:4] and data.first_rows(rows, 4, whole_mrs=True) == rows[:6]
    assert data.first_rows(rows, 0, whole_mrs=True) == []
    (tmp_path / "devset.csv").unlink()
    with pytest.raises(FileNotFoundError, match="No E2E CSV at .*devset.csv"):  # never a silent swap
        data.load_e2e_or_offline("validation", "gpu")


def test_cpu_profile_reads_real_e2e_when_it_has_it_and_ci_never_does(monkeypatch, capsys, tmp_path):
    """A learner online gets real E2E in the cpu profile too (here from MINIPEFT_E2E_DIR); ci stays offline."""
    from minipeft import data

    rows = [(f"name[R{i}], area[riverside]", f"R{i} is by the river.") for i in range(4)]
    for name in data.E2E_FILES.values():
        write_csv(rows, tmp_path / name)
    monkeypatch.setenv("MINIPEFT_E2E_DIR", str(tmp_path))
    monkeypatch.delenv("MINIPEFT_BASE_MODEL", raising=False)
    assert data.load_e2e_or_offline("train", "cpu") == (rows, "E2E")
    assert "Data: real E2E NLG from" in capsys.readouterr().out
    pairs, source = data.load_e2e_or_offline("train", "ci")
    assert source == "offline" and pairs == load_restaurant("train", "ci")


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown split 'dev'; choose one of train, validation, test"):
        load_restaurant("dev", "ci")
