"""Where ``(mr, ref)`` pairs come from: the course's offline restaurant set, real E2E (Hub, cache or CSV)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ..paths import DATA_DIR, REPO_ROOT
from ..profiles import Profile, get_profile
from .mr import Pair, check_pairs

RESTAURANTS_DIR = DATA_DIR / "restaurants"
SPLITS = ("train", "validation", "test")
E2E_HUB_ID = "tuetschek/e2e_nlg"  # the E2E NLG dataset on the Hugging Face Hub
E2E_HUB_REVISION = "refs/convert/parquet"  # its Parquet export: no loading script, so `datasets` 4+ reads it
E2E_FILES = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}  # as released
E2E_DIR_ENV = "MINIPEFT_E2E_DIR"  # a folder holding E2E_FILES: the gpu profile reads real E2E from it, not the Hub
E2E_DEVSET_ENV = "MINIPEFT_E2E_DEVSET"  # E2E's dev set as one CSV: the real-E2E measurement and the tests read it


def e2e_devset_path() -> Path:
    """The real E2E dev set: ``MINIPEFT_E2E_DEVSET``, else ``../shared/data/e2e/devset.csv`` beside the repository."""
    default = REPO_ROOT.parent / "shared" / "data" / "e2e" / "devset.csv"
    return Path(os.environ.get(E2E_DEVSET_ENV, "").strip() or default).expanduser()


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
    from ..base_model import hub_offline, hub_reachable

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


def first_mrs(pairs: Sequence[Pair], n: int) -> list[Pair]:
    """The pairs of the first ``n`` distinct MRs, each with all of its references: ``n`` counts MRs, not rows."""
    keep = set(list(group_by_mr(pairs))[:n])
    return [pair for pair in pairs if pair[0] in keep]


def load_e2e_or_offline(split: str, profile: str | Profile | None = None) -> tuple[list[Pair], str]:
    """Real E2E in the ``gpu`` and ``cpu`` profiles when the Hub or its cache has it, else the offline set (``ci``:
    always the offline set); returns (pairs, source).

    ``MINIPEFT_E2E_DIR`` set: real E2E from the CSVs in that folder instead of the Hub (a missing file is an
    error, never a silent swap). The test split keeps whole MRs (:func:`first_rows`). Prints one line saying
    which data the run uses.
    """
    profile = get_profile(profile)
    n = _split_size(split, profile)
    why = ""
    if profile.name in ("gpu", "cpu"):
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
        except ConnectionError:  # its message says how to get E2E: `load_e2e(split)` shows it
            why = " (real E2E: the Hub is unreachable and its cache has no copy; `make cache` online fetches it)"
    pairs = load_restaurant(split, profile)
    print(f"Data: the course's offline restaurant set (data/restaurants), {split} split, {len(pairs)} pairs{why}.")
    return pairs, "offline"


def group_by_mr(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """``{mr: [ref, ref, ...]}`` in first-seen order: the multi-reference view E2E is scored on."""
    groups: dict[str, list[str]] = {}
    for mr, ref in pairs:
        groups.setdefault(mr, []).append(ref)
    return groups
