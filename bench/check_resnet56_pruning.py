"""Every criterion on the published CIFAR-10 ResNet-56, before fine-tuning: which units go, what it saves.

Loads akamaster's pretrained ResNet-56 from the shared folder, extracts calibration representations on
training images of the JPEG CIFAR-10, computes the candidate distances and the Fisher segments, removes the
same number of units with every criterion (one-shot) and measures top-1 of each pruned model on a seeded
subset of the test images, without fine-tuning. Prints one Markdown table. There are no thresholds: this is a
sanity check of the whole pruning stage on a real network (e.g. that similarity-guided criteria beat random).

Usage: python bench/check_resnet56_pruning.py --shared ../shared [--n-test 1000] [--calibration 500]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from layerprune.criteria import criterion_names
from layerprune.data import build_dataset, calibration_loader, seeded_subset
from layerprune.models import count_macs, get_model
from layerprune.models.checkpoint import load_external_weights
from layerprune.pruning import prune_model
from layerprune.segmentation import DEFAULT_THRESHOLD, segment_units
from layerprune.selection import Budget
from layerprune.similarity.extract import extract_representations
from layerprune.similarity.tables import candidate_distances
from layerprune.train import evaluate

log = logging.getLogger("check_resnet56_pruning")

#: the normalisation the published weights were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = (3, 32, 32)


def find_weights(shared: Path) -> Path:
    folder = shared / "models" / "cifar-resnet"
    found = sorted(folder.glob("resnet56-*.th"))
    if not found:
        raise FileNotFoundError(f"no resnet56-*.th in {folder}; pass --shared pointing at the shared folder")
    return found[0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared"),
        help="folder with data/ and models/",
    )
    parser.add_argument("--n-test", type=int, default=1000, help="seeded test images for top-1")
    parser.add_argument(
        "--calibration",
        type=int,
        default=500,
        help="calibration images (training split)",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--budget", default="blocks9", help="blocksN or macsP")
    parser.add_argument("--min-units-per-stage", type=int, default=1)
    parser.add_argument("--metrics", nargs="+", default=["cka", "procrustes", "cca", "bures", "wasserstein"],
                        help="distances the consensus votes over")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/layerprune-bench-cache"),
                        help="where the JPEG tar files are unpacked once")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data = {
        "name": "imagefolder",
        "root": str(args.shared / "data" / "cifar10-jpeg"),
        "image_size": 32,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "cache_dir": str(args.cache_dir),
    }
    weights = find_weights(args.shared)
    model = load_external_weights(get_model("resnet56", num_classes=10), weights).eval()
    total_macs, _ = count_macs(model, INPUT_SIZE)
    test_set = seeded_subset(build_dataset(data, "test"), args.n_test, args.seed)
    loader = calibration_loader(data, size=args.calibration, batch_size=args.batch_size, seed=args.seed)

    start = time.perf_counter()
    reps = extract_representations(model, loader, input_size=INPUT_SIZE, progress=False)
    log.info(
        "extraction of %d candidates: %.1f s",
        len(reps.candidates),
        time.perf_counter() - start,
    )
    distances = candidate_distances(reps, args.metrics)
    offset = reps.matrix_names.index(reps.units[0])
    segmentation = segment_units(reps.units, reps.cka_matrix[offset:, offset:], "auto", DEFAULT_THRESHOLD)
    log.info(
        "%d segments: %s",
        segmentation["k"],
        [s[0] + ".." + s[-1] for s in segmentation["segment_units"]],
    )

    baseline = evaluate(model, test_set, batch_size=args.batch_size, device="cpu")["top1"]
    rows = []
    # Every criterion one-shot (greedy loss is SLEB's iterative loop by definition), then
    # Pons et al.'s iterative CKA: remove one unit, rescore the smaller model, repeat.
    runs = [(method, method, False) for method in sorted(criterion_names())] + [("cka (iterative)", "cka", True)]
    for label, method, iterative in runs:
        start = time.perf_counter()
        result = prune_model(
            method,
            Budget.parse(args.budget),
            model,
            INPUT_SIZE,
            min_units_per_stage=args.min_units_per_stage,
            representations=reps,
            candidate_distances=distances,
            consensus_metrics=args.metrics,
            segments=segmentation["segment_units"],
            calibration_loader=loader,
            iterative=iterative,
            seed=args.seed,
        )
        top1 = evaluate(result.model, test_set, batch_size=args.batch_size, device="cpu")["top1"]
        log.info("%s: %.1f s, top-1 %.4f", label, time.perf_counter() - start, top1)
        rows.append((label, result.plan, top1))

    # The table is this script's output (stdout); progress goes to the log (stderr).
    print(f"ResNet-56 ({weights.name}), budget {args.budget}, min_units_per_stage {args.min_units_per_stage}, "
          f"{args.calibration} calibration images, top-1 on {len(test_set)} seeded JPEG test images, "
          f"no fine-tuning; {total_macs / 1e6:.2f} M MACs unpruned; segments "
          f"{[len(s) for s in segmentation['segment_units']]}\n")  # fmt: skip
    print("| method | removed units | blocks per stage | MACs reduction | top-1 |")
    print("|---|---|---|---|---|")
    print(f"| unpruned | - | {list(model.blocks_per_stage)} | 0.0% | {100 * baseline:.1f}% |")
    for method, plan, top1 in rows:
        removed = ", ".join(plan["removed"])
        print(f"| {method} | {removed} | {plan['blocks_per_stage_after']} | {100 * plan['macs_reduction']:.1f}% "
              f"| {100 * top1:.1f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
