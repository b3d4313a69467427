"""Training throughput on one GPU with and without AMP and channels_last, side by side in one process.

Trains the CIFAR ResNet-56 through ``layerprune.train.fit`` on random 32x32 images held in (pinned) CPU memory, so
that data loading costs almost nothing and the numbers are the model's: fp32 in the default layout, fp32
channels_last, bf16 channels_last and fp16 with a GradScaler channels_last. Each variant runs two short epochs;
the second (warm: cuDNN autotuned, allocator settled) gives images per second, and ``torch.cuda.max_memory_allocated``
the peak memory. The variants alternate over ``--repeats`` rounds and the median is reported.

Usage: python bench/bench_gpu_amp.py [--steps 100] [--batch-size 128] [--repeats 2] [--device cuda]
(``--device cpu --steps 2`` only checks the script's logic.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from layerprune.models import get_model
from layerprune.train import TrainConfig, fit, seed_everything

VARIANTS = {
    "fp32": {"amp": "off", "channels_last": False},
    "fp32 channels_last": {"amp": "off", "channels_last": True},
    "bf16 channels_last": {"amp": "bf16", "channels_last": True},
    "fp16+scaler channels_last": {"amp": "fp16", "channels_last": True},
}


def measure(name: str, steps: int, batch_size: int, device: str, workdir: Path) -> dict[str, float | str]:
    seed_everything(0)
    n = steps * batch_size
    data = TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    model = get_model("resnet56", num_classes=10, in_channels=3)
    config = TrainConfig(epochs=2, batch_size=batch_size, lr=0.05, num_workers=0, **VARIANTS[name])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fit(model, data, None, config, workdir, device=device, progress=False)
    warm = result.history[-1]["seconds"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return {"variant": name, "images_per_s": n / warm, "epoch_s": warm, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimisation steps per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, name in enumerate(VARIANTS):
                rows.append(measure(name, args.steps, args.batch_size, args.device, Path(tmp) / f"{repeat}_{i}"))
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows).groupby("variant", sort=False)[["images_per_s", "epoch_s", "peak_mib"]].median()
    table["vs_fp32"] = table["images_per_s"] / table.loc["fp32", "images_per_s"]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\nResNet-56 training, batch {args.batch_size}, {args.steps} steps/epoch, median of {args.repeats}, {name}:")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
