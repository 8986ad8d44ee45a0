"""Before a workshop: cache GPT-2, the E2E data set and the course corpus, so the room needs no internet.

    python scripts/cache_offline.py                       # gpt2 + E2E (all splits) + the Shakespeare corpus
    python scripts/cache_offline.py --models gpt2 gpt2-medium

Run it on each machine (or once, then copy the Hugging Face cache, ``~/.cache/huggingface`` or ``$HF_HOME``,
and ``data/cache/`` to the others). Models download with ``GPT2LMHeadModel.from_pretrained`` (through
:func:`minipeft.base_model.load_hub_model`), E2E with ``datasets`` (through :func:`minipeft.data.load_e2e`),
into the standard caches. The script then reloads each model with ``HF_HUB_OFFLINE=1`` to prove that the
``gpu`` profile finds it without the network.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's minipeft, installed or not

from minipeft.base_model import hub_offline, hub_reachable, load_hub_model  # noqa: E402
from minipeft.corpus import load_works  # noqa: E402
from minipeft.data import E2E_HUB_ID, SPLITS, load_e2e  # noqa: E402

OFFLINE_CHECK = ("import sys; from minipeft.base_model import load_hub_model; "
                 "m, t = load_hub_model(sys.argv[1], local_files_only=True); "
                 "print(f'{sys.argv[1]}: {sum(p.numel() for p in m.parameters()):,} parameters, loads offline')")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt2"], help="Hub ids of GPT-2 checkpoints (default: gpt2)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the E2E data set")
    args = parser.parse_args(argv)

    works = load_works()
    print(f"corpus: {len(works)} Shakespeare works cached in data/cache")
    if hub_offline() or not hub_reachable():
        print("The Hugging Face Hub cannot be reached from this machine (or HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is "
              "set), so GPT-2 and E2E cannot be cached here. Run `make cache` where there is internet, then copy "
              "the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) to this machine. The course still runs "
              "offline with its own mini GPT-2 and restaurant data.")
        return 1
    for name in args.models:
        model, _ = load_hub_model(name)
        print(f"{name}: downloaded ({sum(p.numel() for p in model.parameters()):,} parameters)")
    if not args.no_e2e:
        for split in SPLITS:
            print(f"E2E ({E2E_HUB_ID}) {split}: {len(load_e2e(split)):,} pairs cached")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for name in args.models:
        subprocess.run([sys.executable, "-c", OFFLINE_CHECK, name], env=env, check=True)
    print("Cached. Before the workshop, check a machine offline: HF_HUB_OFFLINE=1 MINIPEFT_PROFILE=gpu make test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
