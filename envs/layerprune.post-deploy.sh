#!/usr/bin/env bash
# Runs once in the rules' conda environment after Snakemake creates it (see layerprune.yaml).
# Snakemake runs it from its working directory, which is the repository root unless
# --directory says otherwise; LAYERPRUNE_SOURCE overrides the folder to install from.
set -euo pipefail
source="${LAYERPRUNE_SOURCE:-$PWD}"
if [ ! -f "$source/pyproject.toml" ]; then
  echo "layerprune.post-deploy.sh: no pyproject.toml in $source; run Snakemake from the" \
       "repository root or set LAYERPRUNE_SOURCE to the repository folder" >&2
  exit 1
fi
python -m pip install --no-input --editable "$source"
