#!/usr/bin/env bash
# Runs once in the rules' conda environment after Snakemake creates it (see layerprune.yaml):
# installs every dependency at the exact version of envs/requirements.lock (hash-checked, the
# same lock setup.sh installs), then layerprune itself without dependencies.
# Snakemake runs it from its working directory, which is the repository root unless
# --directory says otherwise; LAYERPRUNE_SOURCE overrides the folder to install from.
set -euo pipefail
source="${LAYERPRUNE_SOURCE:-$PWD}"
if [ ! -f "$source/pyproject.toml" ] || [ ! -f "$source/envs/requirements.lock" ]; then
  echo "layerprune.post-deploy.sh: no pyproject.toml and envs/requirements.lock in $source; run" \
       "Snakemake from the repository root or set LAYERPRUNE_SOURCE to the repository folder" >&2
  exit 1
fi
python -m pip install --no-input --require-hashes -r "$source/envs/requirements.lock"
python -m pip install --no-input --no-deps --editable "$source"
