#!/usr/bin/env bash
# The GPU check (issue 17): one prepared script for a machine with a CUDA GPU, within 8 minutes on one GPU.
#
#   1. pytest -m gpu: every CUDA path of the trainer (AMP fp16 + GradScaler, bf16, channels_last, torch.compile,
#      pinned memory, DDP over NCCL on the GPUs present).
#   2. A short paper-scale run of the workflow on the GPU: CIFAR-10 JPEG, the pretrained ResNet-56, the cka and
#      random criteria at one budget (blocks9), a few epochs of fine-tuning; prints epochs per second of the
#      fine-tuning jobs, the peak GPU memory (nvidia-smi, sampled every second) and the accuracy table.
#   3. Training throughput with and without AMP and channels_last (bench/bench_gpu_amp.py).
#   4. the similarity stage on the GPU (bench/gpu_similarity.sh, issue 20).
#
# Run from anywhere, in an environment where layerprune is installed (pip install -e '.[workflow]'):
#   bash bench/gpu_check.sh                      # real check: needs CUDA and ../shared (or LAYERPRUNE_SHARED)
#   GPU_CHECK_TINY=1 bash bench/gpu_check.sh     # the same steps with tiny sizes: checks the script on a CPU
# Environment: PYTHON (default python), LAYERPRUNE_SHARED (default <repo>/../shared, else <repo>/shared),
# GPU_CHECK_OUT (default a new temp folder), GPU_CHECK_EPOCHS (default 3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
SHARED=${LAYERPRUNE_SHARED:-}
if [[ -z "$SHARED" ]]; then
    if [[ -d "$REPO/../shared/data" ]]; then SHARED=$(cd "$REPO/../shared" && pwd); else SHARED="$REPO/shared"; fi
fi
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
EPOCHS=${GPU_CHECK_EPOCHS:-3}
TINY=${GPU_CHECK_TINY:-0}
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
elapsed() { echo "$(( $(date +%s) - START )) s"; }

for f in "$SHARED/data/cifar10-jpeg/train.tar" "$SHARED/models/cifar-resnet/resnet56-4bfd9763.th"; do
    [[ -f "$f" ]] || { echo "gpu_check: $f not found; set LAYERPRUNE_SHARED to the shared folder" >&2; exit 2; }
done
"$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: "
      + (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"))
PY
if [[ "$TINY" == 1 ]]; then
    SUBSET="train_subset: 512, test_subset: 256,"
    CALIBRATION="{size: 64, batch_size: 32}"
    AMP_ARGS="--device cpu --steps 2 --batch-size 16 --repeats 1"
    EPOCHS=1
else
    SUBSET=""
    CALIBRATION="{size: 2500, batch_size: 250}"
    AMP_ARGS="--device cuda --steps 100 --batch-size 128 --repeats 2"
fi

echo "== 1/3 pytest -m gpu ($(elapsed))"
(cd "$REPO" && "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/unit/train/test_gpu_paths.py)

echo "== 2/3 paper-scale run: CIFAR-10 JPEG, pretrained ResNet-56, cka + random at blocks9, $EPOCHS epochs ($(elapsed))"
cat > "$OUT/config.yaml" <<YAML
experiment: gpu-check
data: {name: imagefolder, root: $SHARED/data/cifar10-jpeg, image_size: 32, $SUBSET
       mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
model: {arch: resnet56, checkpoint: $SHARED/models/cifar-resnet/resnet56-4bfd9763.th}
seeds: [0]
methods: [cka, random]
budgets: [blocks9]
calibration: $CALIBRATION
similarity: {metrics: [cka]}
pruning: {min_units_per_stage: 1}
finetune: {epochs: $EPOCHS, lr: 0.01, schedule: cosine, batch_size: 128}
robustness: {enabled: false}
YAML
PEAK_LOG="$OUT/gpu_memory.csv"
SAMPLER=""
if command -v nvidia-smi > /dev/null && [[ "$TINY" != 1 ]]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -l 1 > "$PEAK_LOG" &
    SAMPLER=$!
fi
RUN_START=$(date +%s)
"$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" --directory "$OUT/work" --configfile "$OUT/config.yaml" \
    --cores "$(nproc)" --resources gpu=1 > "$OUT/snakemake.log" 2>&1 \
    || { tail -50 "$OUT/snakemake.log"; find "$OUT/work/logs" -name '*.log' -exec tail -5 {} +; exit 1; }
RUN_SECONDS=$(( $(date +%s) - RUN_START ))
[[ -n "$SAMPLER" ]] && kill "$SAMPLER"
"$PYTHON" - "$OUT" "$RUN_SECONDS" <<'PY'
import sys
from pathlib import Path
import pandas as pd
out, seconds = Path(sys.argv[1]), int(sys.argv[2])
results = out / "work" / "results" / "gpu-check"
rows = []
for log in sorted(results.glob("finetuned/*/*/seed*/log.csv")):
    frame = pd.read_csv(log)
    rows.append({"model": str(log.parent.relative_to(results / "finetuned")), "epochs": len(frame),
                 "epochs_per_s": len(frame) / frame["seconds"].sum(), "final_test_acc": frame["test_acc"].iloc[-1]})
print(f"workflow wall time: {seconds} s")
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
memory = out / "gpu_memory.csv"
if memory.is_file() and memory.stat().st_size:
    used = pd.read_csv(memory, header=None)[0]
    print(f"peak GPU memory used (nvidia-smi, all processes, 1 s samples): {used.max():.0f} MiB")
else:
    print("peak GPU memory: not sampled (no nvidia-smi)")
print((results / "tables" / "main.md").read_text())
PY

echo "== 3/3 AMP and channels_last throughput ($(elapsed))"
# shellcheck disable=SC2086  # AMP_ARGS is a list of flags
"$PYTHON" "$REPO/bench/bench_gpu_amp.py" $AMP_ARGS

# ---- issue 20: the similarity stage on the GPU (float64 vs float32/TF32/bfloat16, against its FLOP limit) -----
echo "== similarity stage ($(elapsed))"
PYTHON="$PYTHON" OUT="$OUT" bash "$REPO/bench/gpu_similarity.sh"
# ---- end of the issue 20 section ---------------------------------------------------------------------------

echo "== gpu_check done in $(elapsed); outputs in $OUT"
