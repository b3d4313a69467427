"""One- vs two-process fine-tuning throughput on the CPU (images per second), side by side in one run.

Fine-tunes the published ResNet-20 on a seeded subset of the CIFAR-10 JPEG training set through the real command,
``layerprune finetune``, with ``finetune.devices`` 1 (the one-process loop on all the job's threads) and 2 (the command relaunches itself
under torchrun: two gloo processes sharing the job's threads). The variants alternate within each round so that
load from other users of the machine hits them alike. Throughput is training images per
second of training time (the per-epoch ``seconds`` of log.csv, minus nothing: the test subset is kept tiny); the
wall time of the whole command (start-up, torchrun rendezvous, evaluation) is printed beside it.

Usage: python bench/bench_ddp_cpu.py [--variants 1:2,1:1,2:2] [--repeats 2] [--train-subset 4096] [--workdir DIR] [--shared DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def layerprune(*args: str) -> float:
    """Seconds of one ``layerprune`` command (this repository's package first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "layerprune", *args], check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        default="1:2,1:1,2:2",
        help="DEVICES:THREADS pairs: processes, and CPU threads of the whole job (shared by its processes); the "
        "default compares one process on 2 threads, one on 1 thread (a control), and two processes on 1 each",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared data folder")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    data = {
        "name": "imagefolder",
        "root": str(args.shared / "data" / "cifar10-jpeg"),
        "image_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "train_subset": args.train_subset,
        "test_subset": 256,
    }
    model = {"arch": "resnet20", "checkpoint": str(args.shared / "models" / "cifar-resnet" / "resnet20-12fca82f.th")}
    parent = workdir / "resnet20.pt"
    layerprune("baseline", "--data", json.dumps(data), "--model", json.dumps(model), "--out", str(parent),
               "--workdir", str(workdir / "baseline_state"), "--log-csv", str(workdir / "baseline_log.csv"),
               "--emissions", str(workdir / "e.csv"), "--no-emissions")  # fmt: skip
    rows = []
    variants = [tuple(int(v) for v in pair.split(":")) for pair in args.variants.split(",")]
    for repeat in range(args.repeats):
        for devices, threads in variants:
            out = workdir / f"devices{devices}_threads{threads}_run{repeat}"
            finetune = {"epochs": 1, "batch_size": args.batch_size, "lr": 0.01, "num_workers": 0, "devices": devices}
            wall = layerprune("finetune", "--model", str(parent), "--data", json.dumps(data), "--finetune",
                              json.dumps(finetune), "--seed", "0", "--out", str(out / "model.pt"), "--workdir",
                              str(out / "state"), "--log-csv", str(out / "log.csv"), "--emissions",
                              str(out / "e.csv"), "--no-emissions", "--threads", str(threads))  # fmt: skip
            log = pd.read_csv(out / "log.csv")
            seconds = float(log["seconds"].sum())
            rows.append({"devices": devices, "threads": threads, "run": repeat, "images_per_s": args.train_subset / seconds,
                         "train_s": seconds, "wall_s": wall})  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).groupby(["devices", "threads"])[["images_per_s", "train_s", "wall_s"]].median()
    print(f"\nmedian over {args.repeats} alternating runs, batch {args.batch_size}, "
          f"{args.train_subset} CIFAR-10 JPEG images, ResNet-20:")  # fmt: skip
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    base = table["images_per_s"].iloc[0]
    for (devices, threads), value in table["images_per_s"].items():
        print(f"devices {devices}, {threads} thread(s): {value / base:.2f}x the first variant's images/s")


if __name__ == "__main__":
    main()
