#!/usr/bin/env bash
# Sets up .venv with layerprune, the workflow engine (Snakemake + SLURM plugin + reports)
# and the test tools, at the exact versions of envs/requirements.lock (hash-checked; made by
# envs/lock.sh for Linux x86_64 and Python 3.11, with torch==2.14.1 and torchvision==0.29.1,
# PyPI's CUDA build that also runs on CPUs). Safe to rerun. Set PYTHON to choose the
# interpreter. On another platform, or to take newer releases on purpose:
# LAYERPRUNE_UNLOCKED=1 ./setup.sh installs from pyproject.toml's ranges instead.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if [ "${LAYERPRUNE_UNLOCKED:-0}" = 1 ]; then
  .venv/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install --quiet -e ".[workflow,dev]"
else
  .venv/bin/pip install --quiet --require-hashes -r envs/requirements.lock
  .venv/bin/pip install --quiet --no-deps -e .   # layerprune itself; its dependencies are locked above
fi
.venv/bin/layerprune --help > /dev/null
echo "layerprune is installed in .venv"
