"""The fine-tuning task: restaurant meaning representations (MRs) to sentences, as in E2E NLG.

An E2E example pairs an MR such as ``name[The Eagle], eatType[pub], area[riverside]`` with a human
sentence ("The Eagle is a pub by the riverside."). Three sources give the same ``(mr, ref)`` pairs:

- ``load_restaurant(split)``: the course's own offline set, made by :func:`generate_restaurants`
  (seeded, same eight slots, committed under ``data/restaurants``; rebuild with ``python -m minipeft.data``);
- ``load_e2e(split)``: the real E2E NLG data from the Hugging Face Hub (or, offline, from the cache that
  ``make cache`` filled);
- ``load_e2e_csv(path)``: a local copy of E2E in its original ``mr,ref`` CSV format.

In the ``gpu`` profile, ``load_e2e_or_offline`` reads real E2E from the Hub, or from the CSVs in the folder
``MINIPEFT_E2E_DIR`` names (E2E's own file names, :data:`E2E_FILES`), e.g. in ``make gpu-dry``.

``make_loader`` turns pairs into batches for a causal LM: ``MR || text<eos>``, with labels -100 on the
MR, the separator and the padding, so the loss is computed on the text tokens only.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .paths import DATA_DIR
from .profiles import Profile, get_profile

SLOTS = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")
SEP = " ||"  # MR and text are joined as "MR || text", the format of the LoRA and prefix-tuning papers' E2E code
IGNORE_INDEX = -100  # label value that PyTorch's cross-entropy skips
RESTAURANTS_DIR = DATA_DIR / "restaurants"
SPLITS = ("train", "validation", "test")
E2E_HUB_ID = "tuetschek/e2e_nlg"  # the E2E NLG dataset on the Hugging Face Hub
E2E_HUB_REVISION = "refs/convert/parquet"  # its Parquet export: no loading script, so `datasets` 4+ reads it
E2E_FILES = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}  # as released
E2E_DIR_ENV = "MINIPEFT_E2E_DIR"  # a folder holding E2E_FILES: the gpu profile reads real E2E from it, not the Hub
Pair = tuple[str, str]

_SLOT_RE = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*")


# ----------------------------------------------------------------------------- meaning representations
def parse_mr(mr: str, line: int | None = None) -> dict[str, str]:
    """``"name[The Eagle], area[riverside]"`` -> ``{"name": "The Eagle", "area": "riverside"}``.

    Raises ``ValueError`` naming the line for unbalanced brackets, an unknown or repeated slot, or text
    outside ``slot[value]`` items.
    """
    where = f"line {line}: " if line is not None else ""
    depth = 0
    for ch in mr:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth not in (0, 1):
            break
    if depth != 0:
        raise ValueError(f"{where}malformed MR {mr!r}: unbalanced brackets (write each slot as slot[value])")
    slots: dict[str, str] = {}
    for item in _split_items(mr):
        match = _SLOT_RE.fullmatch(item)
        if match is None:
            raise ValueError(f"{where}malformed MR {mr!r}: {item.strip()!r} is not of the form slot[value]")
        slot, value = match.group(1), match.group(2).strip()
        if slot not in SLOTS:
            raise ValueError(f"{where}unknown slot {slot!r} in MR {mr!r}; E2E slots are: {', '.join(SLOTS)}")
        if slot in slots:
            raise ValueError(f"{where}slot {slot!r} appears twice in MR {mr!r}")
        slots[slot] = value
    if not slots:
        raise ValueError(f"{where}empty MR {mr!r}: expected items such as name[The Eagle]")
    return slots


def _split_items(mr: str) -> list[str]:
    """Split on the commas between ``slot[value]`` items (not on commas inside a value)."""
    items, current, depth = [], "", 0
    for ch in mr:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [item for item in [*items, current] if item.strip()]


def format_mr(slots: dict[str, str]) -> str:
    """The inverse of :func:`parse_mr`, in E2E's slot order."""
    return ", ".join(f"{slot}[{slots[slot]}]" for slot in SLOTS if slot in slots)


def check_pairs(pairs: Sequence[Pair], source: str = "dataset") -> list[Pair]:
    """Validate every MR (errors name the CSV line) and refuse an empty dataset."""
    if len(pairs) == 0:
        raise ValueError(f"The {source} is empty: no (mr, ref) pairs. Check the file or split name, "
                         f"or raise the profile's n_train / n_val / n_test.")
    for i, (mr, _) in enumerate(pairs):
        parse_mr(mr, line=i + 2)  # +2: CSV line numbers count the header and start at 1
    return list(pairs)


# ----------------------------------------------------------------------------- files
def read_csv(path: str | Path) -> list[Pair]:
    """Read an E2E-style CSV with columns ``mr,ref``; every MR is parsed, so errors name their line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No E2E CSV at {path}. Give the path of a file with columns mr,ref.")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"mr", "ref"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header with columns mr,ref, got {reader.fieldnames}")
        pairs = [(row["mr"], row["ref"]) for row in reader]
    return check_pairs(pairs, source=str(path))


def write_csv(pairs: Sequence[Pair], path: str | Path) -> None:
    """Write ``(mr, ref)`` pairs in E2E's CSV format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mr", "ref"])
        writer.writerows(pairs)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _split_size(split: str, profile: Profile) -> int:
    _check_split(split)
    return {"train": profile.n_train, "validation": profile.n_val, "test": profile.n_test}[split]


def load_restaurant(split: str, profile: str | Profile | None = None) -> list[Pair]:
    """The offline restaurant set: the first ``n_train`` / ``n_val`` / ``n_test`` pairs of ``split``."""
    profile = get_profile(profile)
    n = _split_size(split, profile)
    path = RESTAURANTS_DIR / f"{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. Rebuild the offline set with `python -m minipeft.data`.")
    pairs = read_csv(path)
    return check_pairs(pairs[:n], source=f"restaurant {split} split")


def load_e2e_csv(path: str | Path, n: int | None = None) -> list[Pair]:
    """Real E2E data from a local CSV in the original ``mr,ref`` format (e.g. ``devset.csv``)."""
    pairs = read_csv(path)
    return check_pairs(pairs[:n] if n else pairs, source=str(path))


def load_e2e(split: str, n: int | None = None, cache_dir: str | Path | None = None) -> list[Pair]:
    """Real E2E NLG from the Hugging Face Hub, as ``(mr, ref)`` pairs (42,061 / 4,672 / 4,693 rows).

    The Hub copy (``tuetschek/e2e_nlg``) keeps an old loading script on its main branch, which
    ``datasets`` 4+ no longer runs; its Parquet export (revision ``refs/convert/parquet``) loads as plain
    files. Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) it reads the copy that ``make cache`` left in
    the ``datasets`` cache (``cache_dir``, default ``$HF_DATASETS_CACHE``, i.e. ``~/.cache/huggingface/datasets``);
    with no such copy it raises ``ConnectionError`` naming the offline alternatives.
    """
    from .base_model import hub_offline, hub_reachable

    _check_split(split)
    if hub_offline() or not hub_reachable():
        pairs = _cached_e2e(split, cache_dir)
        if pairs is None:
            raise ConnectionError(
                f"The Hugging Face Hub is unreachable and the datasets cache ({_e2e_cache_root(cache_dir)}) has no "
                f"copy of the real E2E data ({E2E_HUB_ID}), so it cannot be loaded. Run `make cache` where there is "
                "internet (and copy the Hugging Face cache here), or use the offline set (`load_restaurant(split)`) "
                "or a local copy (`load_e2e_csv(path)`)."
            )
        return check_pairs(pairs[:n] if n else pairs, source=f"cached E2E {split} split")
    from datasets import load_dataset

    rows = load_dataset(E2E_HUB_ID, revision=E2E_HUB_REVISION, split=split,
                        data_files={s: f"default/{s}/*.parquet" for s in SPLITS},
                        cache_dir=str(cache_dir) if cache_dir else None)
    pairs = list(zip(rows["meaning_representation"], rows["human_reference"]))
    return check_pairs(pairs[:n] if n else pairs, source=f"E2E {split} split")


def _e2e_cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where ``datasets`` keeps E2E once downloaded: ``<cache>/tuetschek___e2e_nlg``."""
    import datasets

    return Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser() / E2E_HUB_ID.replace("/", "___")


def _cached_e2e(split: str, cache_dir: str | Path | None = None) -> list[Pair] | None:
    """The split's pairs from the newest E2E copy in the ``datasets`` cache, read from its Arrow files; else None.

    ``datasets``' own offline mode cannot be used: the download passes ``data_files``, so the cache folder is named
    ``default-<hash>`` and ``load_dataset`` offline, which looks for the folder ``default``, does not find it.
    """
    import datasets

    name = E2E_HUB_ID.split("/")[-1]  # the Arrow files are <name>-<split>.arrow, or sharded <name>-<split>-*-of-*.arrow
    folders = {path.parent for path in _e2e_cache_root(cache_dir).glob(f"**/{name}-{split}*.arrow")}
    for folder in sorted(folders, key=lambda folder: folder.stat().st_mtime, reverse=True):
        shards = sorted(folder.glob(f"{name}-{split}.arrow")) or sorted(folder.glob(f"{name}-{split}-*-of-*.arrow"))
        if shards and (folder / "dataset_info.json").is_file():
            rows = datasets.concatenate_datasets([datasets.Dataset.from_file(str(shard)) for shard in shards])
            return list(zip(rows["meaning_representation"], rows["human_reference"]))
    return None


def first_rows(pairs: Sequence[Pair], n: int, whole_mrs: bool = False) -> list[Pair]:
    """The first ``n`` pairs; with ``whole_mrs``, also the rest of the last MR's references (E2E lists an MR's
    references on consecutive rows), so that no MR is scored against only some of its references."""
    kept = list(pairs[:n])
    while whole_mrs and kept and n < len(pairs) and pairs[n][0] == kept[-1][0]:
        kept.append(pairs[n])
        n += 1
    return kept


def load_e2e_or_offline(split: str, profile: str | Profile | None = None) -> tuple[list[Pair], str]:
    """Real E2E in the ``gpu`` profile when the Hub answers, else the offline set; returns (pairs, source).

    ``MINIPEFT_E2E_DIR`` set: real E2E from the CSVs in that folder instead of the Hub (a missing file is an
    error, never a silent swap). The test split keeps whole MRs (:func:`first_rows`). Prints one line saying
    which data the run uses.
    """
    profile = get_profile(profile)
    n = _split_size(split, profile)
    if profile.name == "gpu":
        folder = os.environ.get(E2E_DIR_ENV, "").strip()
        if folder:
            path = Path(folder).expanduser() / E2E_FILES[split]
            pairs = first_rows(read_csv(path), n, whole_mrs=split == "test")
            print(f"Data: real E2E NLG from {path} ({E2E_DIR_ENV}), {split} split, {len(pairs)} pairs.")
            return pairs, "E2E"
        try:
            pairs = first_rows(load_e2e(split), n, whole_mrs=split == "test")
            print(f"Data: real E2E NLG ({E2E_HUB_ID}), {split} split, {len(pairs)} pairs.")
            return pairs, "E2E"
        except ConnectionError as err:
            print(f"{err} Falling back to the offline restaurant set.")
    pairs = load_restaurant(split, profile)
    print(f"Data: the course's offline restaurant set (data/restaurants), {split} split, {len(pairs)} pairs.")
    return pairs, "offline"


def group_by_mr(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """``{mr: [ref, ref, ...]}`` in first-seen order: the multi-reference view E2E is scored on."""
    groups: dict[str, list[str]] = {}
    for mr, ref in pairs:
        groups.setdefault(mr, []).append(ref)
    return groups


# ----------------------------------------------------------------------------- batches for a causal LM
def prompt_text(mr: str) -> str:
    """What the model sees before it writes: ``"name : The Eagle | area : riverside ||"``.

    Slots are written as in Li & Liang's E2E files (``slot : value``, joined by `` | ``), so a value
    such as `` The Eagle`` is the same tokens in the prompt as in the sentence, ready to be copied.
    """
    return " | ".join(f"{slot} : {value}" for slot, value in parse_mr(mr).items()) + SEP


def encode_pair(mr: str, ref: str, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of ``MR || text<eos>`` and labels that are -100 on the MR and separator."""
    prompt = tokenizer(prompt_text(mr))["input_ids"]
    target = tokenizer(" " + ref)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def make_loader(pairs: Sequence[Pair], tokenizer, batch_size: int, max_len: int, shuffle: bool = True,
                seed: int = 0, drop_long: bool = False) -> DataLoader:
    """A DataLoader of ``input_ids``, ``attention_mask``, ``labels`` for causal-LM fine-tuning.

    Each batch is right-padded to its longest example (pad labels are -100, pad mask 0). An example
    longer than ``max_len`` tokens raises an error, or is skipped with ``drop_long=True``.
    """
    check_pairs(pairs)
    context = getattr(tokenizer, "model_max_length", None)
    if context is not None and max_len > context:
        raise ValueError(f"max_len={max_len} is longer than the model's context ({context} tokens); "
                         f"lower max_len (profile.seq_len) to at most {context}.")
    examples = []
    for i, (mr, ref) in enumerate(pairs):
        ids, labels = encode_pair(mr, ref, tokenizer)
        if len(ids) > max_len:
            if drop_long:
                continue
            raise ValueError(f"Example {i} is {len(ids)} tokens, longer than max_len={max_len} ({mr!r}). "
                             f"Raise max_len (at most the model's context, n_positions), "
                             f"or skip long examples with drop_long=True.")
        examples.append((ids, labels))
    if not examples:
        raise ValueError(f"No example fits in max_len={max_len} tokens; raise max_len.")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def collate(batch: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in batch)
        out = {"input_ids": torch.full((len(batch), width), pad_id, dtype=torch.long),
               "attention_mask": torch.zeros((len(batch), width), dtype=torch.long),
               "labels": torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)}
        for row, (ids, labels) in enumerate(batch):
            out["input_ids"][row, : len(ids)] = torch.tensor(ids)
            out["attention_mask"][row, : len(ids)] = 1
            out["labels"][row, : len(ids)] = torch.tensor(labels)
        return out

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(examples, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)


# ----------------------------------------------------------------------------- the offline generator
NAMES = (
    "The Copper Kettle", "Blue Heron", "The Lantern", "Saffron Garden", "The Old Forge", "Maple House",
    "The Silver Spoon", "Golden Lotus", "The Red Lion", "Olive Grove", "The Tin Drum", "Juniper",
    "The Bluebell", "Rosemary Kitchen", "The Anchor", "Little Sparrow", "The Pilgrim", "Harvest Moon",
    "The Black Swan", "Cedar Table", "The Wheatsheaf", "Bamboo Court", "The Quayside", "Amber Rooms",
    "The Kingfisher", "Fig and Thistle", "The Nightingale", "Willow Tree", "The Brass Bell", "Orchard Hall",
)
LANDMARKS = (
    "the Town Hall", "St Mary's Church", "the Botanic Garden", "Market Square", "the Grand Hotel",
    "the Museum of Art", "the Corn Exchange", "Castle Hill", "the Guildhall", "the Railway Station",
    "the Old Library", "Parker's Piece",
)
VALUES = {
    "eatType": ("pub", "coffee shop", "restaurant"),
    "food": ("Chinese", "English", "Fast food", "French", "Indian", "Italian", "Japanese"),
    "priceRange": ("cheap", "less than £20", "£20-25", "moderate", "high", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}

# Ways to say each slot value as a predicate ("X ..."). {v} is the value.
_PREDICATES = {
    "food": ("serves {v}", "offers {v}", "has {v} on the menu", "specialises in {v}"),
    "priceRange": {
        "cheap": ("is cheap", "has cheap prices", "is a cheap place to eat"),
        "less than £20": ("costs less than £20", "has prices of less than £20", "charges less than £20"),
        "£20-25": ("costs £20-25", "has a price range of £20-25", "charges £20-25 per person"),
        "moderate": ("is moderately priced", "has moderate prices", "has a moderate price range"),
        "high": ("is expensive", "has high prices", "has a high price range"),
        "more than £30": ("costs more than £30", "has prices of more than £30", "charges more than £30"),
    },
    "customer rating": {
        "low": ("has a low customer rating", "is rated low by customers", "has a low rating"),
        "average": ("has an average customer rating", "is rated average by customers", "has an average rating"),
        "high": ("has a high customer rating", "is rated high by customers", "has a high rating"),
        "1 out of 5": ("has a customer rating of 1 out of 5", "is rated 1 out of 5 by customers"),
        "3 out of 5": ("has a customer rating of 3 out of 5", "is rated 3 out of 5 by customers"),
        "5 out of 5": ("has a customer rating of 5 out of 5", "is rated 5 out of 5 by customers"),
    },
    "area": {
        "city centre": ("is in the city centre", "is located in the city centre", "is found in the city centre"),
        "riverside": ("is by the riverside", "is located on the riverside", "is in the riverside area"),
    },
    "familyFriendly": {
        "yes": ("is family-friendly", "is family friendly", "welcomes families and is family-friendly"),
        "no": ("is not family-friendly", "is not family friendly", "is not a family-friendly place"),
    },
    "near": ("is near {v}", "is close to {v}", "is located near {v}"),
}
_ARTICLE = {"pub": "a pub", "coffee shop": "a coffee shop", "restaurant": "a restaurant"}


def _predicate(slot: str, value: str, rng: random.Random) -> str:
    options = _PREDICATES[slot]
    if isinstance(options, dict):
        return rng.choice(options[value])
    if slot == "food":
        value = "fast food" if value == "Fast food" else f"{value} food"
    return rng.choice(options).format(v=value)


def _join(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


def realise(slots: dict[str, str], rng: random.Random) -> str:
    """One reference sentence (or two) for an MR: a random template, with the facts in random order."""
    name = slots["name"]
    kind = slots.get("eatType")
    facts = [s for s in SLOTS if s not in ("name", "eatType") and s in slots]
    rng.shuffle(facts)
    preds = [_predicate(s, slots[s], rng) for s in facts]
    style = rng.randrange(4)
    if kind and style == 0:  # "X is a pub. It ..., ... and ..."
        opening = f"{name} is {_ARTICLE[kind]}."
        return opening + (f" It {_join(preds)}." if preds else "")
    if kind and style == 1:  # "There is a pub called X that ..."
        return f"There is {_ARTICLE[kind]} called {name}" + (f" that {_join(preds)}." if preds else ".")
    if kind and style == 2 and preds:  # "X, a pub, ... . It ..."
        first, rest = preds[0], preds[1:]
        text = f"{name}, {_ARTICLE[kind]}, {first}."
        return text + (f" It {_join(rest)}." if rest else "")
    if kind:  # "X is a pub which ..."
        return f"{name} is {_ARTICLE[kind]} which " + (_join(preds) if preds else "is open every day") + "."
    if not preds:
        return f"{name} is a place to eat."
    if len(preds) > 2 and rng.random() < 0.5:  # two sentences
        cut = len(preds) // 2
        return f"{name} {_join(preds[:cut])}. It also {_join(preds[cut:])}."
    return f"{name} {_join(preds)}."


def random_mr(rng: random.Random) -> dict[str, str]:
    """A random MR: a name plus 2-7 of the other seven slots, as in E2E (3-8 slots per MR)."""
    others = [s for s in SLOTS if s != "name"]
    chosen = set(rng.sample(others, rng.randint(2, 7)))
    slots = {"name": rng.choice(NAMES)}
    for slot in others:
        if slot in chosen:
            slots[slot] = rng.choice(LANDMARKS) if slot == "near" else rng.choice(VALUES[slot])
    return slots


def generate_restaurants(n_rows: int, seed: int, refs: tuple[int, int] = (3, 5),
                         exclude: set[str] | None = None) -> list[Pair]:
    """``n_rows`` (mr, ref) pairs: distinct random MRs, each with ``refs`` (min, max) references."""
    rng = random.Random(seed)
    exclude = set(exclude or ())
    pairs: list[Pair] = []
    while len(pairs) < n_rows:
        slots = random_mr(rng)
        mr = format_mr(slots)
        if mr in exclude:
            continue
        exclude.add(mr)
        texts = {realise(slots, rng) for _ in range(rng.randint(*refs))}
        pairs += [(mr, text) for text in sorted(texts)][: n_rows - len(pairs)]
    return pairs


def build_restaurant_files(out_dir: Path = RESTAURANTS_DIR, sizes: dict[str, int] | None = None,
                           seed: int = 0) -> dict[str, int]:
    """Write ``train/validation/test.csv`` with MR-disjoint splits; returns the rows per split."""
    sizes = sizes or {"train": 4000, "validation": 400, "test": 200}  # the cpu profile's n_train/n_val/n_test
    seen: set[str] = set()
    for i, split in enumerate(SPLITS):
        pairs = generate_restaurants(sizes[split], seed=seed + i, exclude=seen)
        seen |= {mr for mr, _ in pairs}
        write_csv(pairs, out_dir / f"{split}.csv")
    return sizes


if __name__ == "__main__":
    written = build_restaurant_files()
    print(f"Wrote {written} rows to {RESTAURANTS_DIR}")
