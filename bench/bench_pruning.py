"""Benchmarks of the pruning stage (issue: criteria, surgery), measured side by side in one run.

1. CKA scoring of every removable unit of CIFAR ResNet-56 with prefix caching (run only the
   suffix after each candidate from its cached input) against running the full model once
   per candidate. Same features, so the ratio is pure saved compute (target >= 1.8x).
2. CPU inference latency of ResNet-56 pruned to [2, 2, 3] units per stage against the
   unpruned one, next to the ratio of their MACs (the ideal speed-up).

Usage: python bench/bench_pruning.py [--n 512] [--batch 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from layerprune.models import count_macs, get_model, get_units
from layerprune.similarity.extract import extract_representations
from layerprune.surgery import remove_units
from layerprune.train import measure_latency


def time_scoring(model, loader, prefix_cache: bool, repeats: int) -> tuple[float, np.ndarray]:
    times, reps = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        reps = extract_representations(
            model, loader, input_size=(3, 32, 32), matrix=False, prefix_cache=prefix_cache, progress=False
        )
        times.append(time.perf_counter() - start)
    return float(np.median(times)), reps.bypassed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="calibration images")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = get_model("resnet56", num_classes=10).eval()
    units = get_units(model, (3, 32, 32))
    candidates = [u.name for u in units if u.removable]
    data = TensorDataset(torch.randn(args.n, 3, 32, 32), torch.randint(0, 10, (args.n,)))
    loader = DataLoader(data, batch_size=args.batch)

    cached, feats_cached = time_scoring(model, loader, True, args.repeats)
    full, feats_full = time_scoring(model, loader, False, args.repeats)
    same = np.allclose(feats_cached, feats_full, atol=1e-5)
    print(f"## CKA scoring of {len(candidates)} candidates of ResNet-56, n={args.n}, {args.threads} threads")
    print(f"| variant | seconds (median of {args.repeats}) |")
    print("|---|---|")
    print(f"| full model per candidate | {full:.2f} |")
    print(f"| prefix caching | {cached:.2f} |")
    print(f"speed-up: {full / cached:.2f}x (target >= 1.8x); identical features: {same}")

    names = {s: [u.name for u in units if u.stage == s] for s in range(3)}
    keep = {0: 2, 1: 2, 2: 3}
    drop = [n for s, ns in names.items() for n in ns[keep[s] :]]
    pruned = remove_units(model, drop).eval()
    macs_full, _ = count_macs(model, (3, 32, 32))
    macs_pruned, _ = count_macs(pruned, (3, 32, 32))
    lat_full = measure_latency(model, (3, 32, 32), batch_size=args.batch, repeats=20)["median_ms"]
    lat_pruned = measure_latency(pruned, (3, 32, 32), batch_size=args.batch, repeats=20)["median_ms"]
    print()
    print(f"## CPU latency, batch {args.batch}: ResNet-56 {model.blocks_per_stage} vs pruned {pruned.blocks_per_stage}")
    print("| model | MACs | median ms/batch |")
    print("|---|---|---|")
    print(f"| unpruned | {macs_full:,} | {lat_full:.1f} |")
    print(f"| pruned | {macs_pruned:,} | {lat_pruned:.1f} |")
    print(f"latency speed-up {lat_full / lat_pruned:.2f}x; MAC ratio (the limit) {macs_full / macs_pruned:.2f}x")


if __name__ == "__main__":
    main()
