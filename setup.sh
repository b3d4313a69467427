#!/usr/bin/env bash
# Sets up .venv with layerprune, the workflow engine (Snakemake + SLURM plugin + reports)
# and the test tools. Safe to rerun. Set PYTHON to choose the interpreter (3.10+).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The torch/torchvision pair the project is tested with (a CUDA build that also runs on CPUs).
.venv/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip install --quiet -e ".[workflow,dev]"
.venv/bin/layerprune --help > /dev/null
echo "layerprune is installed in .venv"
