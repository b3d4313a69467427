#!/usr/bin/env bash
# Regenerates envs/requirements.lock: every package setup.sh and the conda env's post-deploy step
# install, at an exact version with its sha256 hashes, resolved by uv from pyproject.toml (with
# the workflow and dev extras) under envs/lock-constraints.txt, for Linux x86_64 and Python 3.11
# (the platform the project is tested on). Needs `uv` (pip install uv) and access to PyPI.
# Run after changing a dependency in pyproject.toml; commit the lock with that change.
set -euo pipefail
cd "$(dirname "$0")/.."
"${UV:-uv}" pip compile pyproject.toml --extra workflow --extra dev \
  --constraint envs/lock-constraints.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --generate-hashes --index-url https://pypi.org/simple \
  --custom-compile-command "envs/lock.sh" \
  -o envs/requirements.lock
