#!/usr/bin/env bash
# `make course`: JupyterLab serving the repository root (README.md, docs/, minipeft/ in its file browser), with
# notebooks/00_start_here.ipynb open in front. As root (Docker, cloud VMs, WSL) it adds --allow-root, which
# JupyterLab otherwise demands; as any other user it does not. Extra arguments go to JupyterLab
# (e.g. `bash scripts/course.sh --port 8890`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jupyter=${JUPYTER:-.venv/bin/jupyter}
args=(lab "--ServerApp.root_dir=$PWD")
if [ "$(id -u)" = 0 ]; then
  echo "make course: running as root, so JupyterLab starts with --allow-root"
  args+=(--allow-root)
fi
exec "$jupyter" "${args[@]}" "$@" notebooks/00_start_here.ipynb
