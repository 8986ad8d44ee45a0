#!/usr/bin/env bash
# The device check (make gpu-check): on a CUDA machine, notebook 05 and one lab run of notebook 06 in the gpu
# profile against the stand-in GPT-2 (GPT-2's shapes, random weights), with the real step counts.
# Prints seconds per step and peak torch.cuda.max_memory_allocated per method, and notebook 05's wall time.
# Without a CUDA device it prints one line and exits 1. Details: minipeft/tools/gpu_check.py.
#
#   bash scripts/gpu_check.sh                  # notebook 06's lab run of full fine-tuning (the most memory)
#   bash scripts/gpu_check.sh --method lora    # its LoRA (q, v, r=8) run instead (or --method prefix)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's minipeft, as the notebook runners give kernels
exec "$python" scripts/gpu_check.py "$@"
