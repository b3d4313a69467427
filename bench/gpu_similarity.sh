#!/usr/bin/env bash
# The similarity stage on a GPU (issue 20): bench/bench_similarity_stage.py on the device, float64 against float32,
# TF32 and bfloat16, and the stage against its FLOP limit (forward MACs + CKA MACs at the forward's MAC rate),
# plus the CUDA tests of the CKA precision paths (pytest -m gpu). Under a minute on a data-centre GPU.
#
# Standalone, or called from bench/gpu_check.sh's issue-20 section (it reuses PYTHON, OUT and GPU_CHECK_TINY):
#   bash bench/gpu_similarity.sh                   # needs CUDA
#   GPU_CHECK_TINY=1 bash bench/gpu_similarity.sh  # tiny sizes on the CPU: checks the script itself
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
OUT=${OUT:-${GPU_CHECK_OUT:-$(mktemp -d -t gpu_similarity.XXXXXX)}}
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${GPU_CHECK_TINY:-0}" == 1 ]]; then
    ARGS=(--device cpu --n 128 --batch-size 64 --repeats 1 --variants float64 float32 bfloat16)
else
    ARGS=(--device cuda --n 2500 10000 --batch-size 256 --repeats 3 --variants float64 float32 tf32 bfloat16)
    (cd "$REPO" && "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/unit/similarity/test_precision.py)
fi
"$PYTHON" "$REPO/bench/bench_similarity_stage.py" "${ARGS[@]}" | tee "$OUT/similarity_stage.txt"
echo "gpu_similarity: table in $OUT/similarity_stage.txt"
