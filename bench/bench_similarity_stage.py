"""Benchmark: the similarity stage of a CIFAR ResNet-56 against its FLOP limit, per arithmetic precision.

The stage is one forward pass over the calibration images that keeps every unit's output, and the
unit-by-unit minibatch CKA matrix of the 28 representations (stem + 27 units; widths 16,384, 8,192 and 4,096)
accumulated from them. Per batch of b images it costs the forward pass (125.5 M MACs an image) and the CKA
products (:func:`layerprune.similarity.cka.form_cost`: b^2 d_i per unit for the Gram matrices, plus b^2 per pair
of units). The stage's limit is what the forward pass's own measured MAC rate gives for both:

    limit = forward_s * (1 + cka_macs / forward_macs)

and the target is forward_s + cka_s within 1.3x of it. The variants (``--variants``, default float64 and float32)
run interleaved on the same features: for every batch the forward pass runs once, then each variant's update, in
an order that rotates from batch to batch, each timed alone; a repeat is one pass over n images, and the report
gives each quantity's median over the repeats. Inputs are seeded random images and the model is randomly
initialised (the cost does not depend on the weights or the pixels); the CKA matrices of the variants are compared
entry by entry against float64's.

Usage: python bench/bench_similarity_stage.py --n 2500 10000 --threads 2 --repeats 3
       python bench/bench_similarity_stage.py --device cuda --variants float64 float32 tf32 bfloat16
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger("bench_similarity_stage")

INPUT_SIZE = (3, 32, 32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(
    model: torch.nn.Module, n: int, batch_size: int, variants: Sequence[str], device: torch.device, seed: int
) -> dict:
    """One pass over n images: forward seconds, each variant's CKA seconds and matrix, and the CKA MACs."""
    from layerprune.models.units import forward_units
    from layerprune.similarity import MinibatchCKA
    from layerprune.similarity.cka import form_cost

    accs = {v: MinibatchCKA(28, precision=v) for v in variants}  # type: ignore[arg-type]
    seconds = dict.fromkeys(variants, 0.0)
    forward_s = 0.0
    cka_macs = 0
    gen = torch.Generator().manual_seed(seed)
    for index, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        if size < 4:
            break
        x = torch.randn(size, *INPUT_SIZE, generator=gen)
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            stem, outputs = forward_units(model, x.to(device))
            features = [t.flatten(1) for t in (stem, *outputs)]
        _sync(device)
        forward_s += time.perf_counter() - t0
        widths = [f.shape[1] for f in features]
        forms = accs[variants[0]].forms_for(widths, size)
        cka_macs += form_cost(widths, size, forms)
        order = list(variants[index % len(variants) :]) + list(variants[: index % len(variants)])
        for v in order:
            _sync(device)
            t0 = time.perf_counter()
            accs[v].update(features)
            _sync(device)
            seconds[v] += time.perf_counter() - t0
        del features, stem, outputs
    matrices = {}
    for v in variants:
        t0 = time.perf_counter()
        matrices[v] = accs[v].compute()
        seconds[v] += time.perf_counter() - t0
    return {"forward_s": forward_s, "cka_s": seconds, "cka_macs": cka_macs, "matrices": matrices}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2500, 10000], help="numbers of images")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch of the forward pass and of CKA")
    parser.add_argument("--repeats", type=int, default=3, help="passes per n (medians reported)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["float64", "float32"],
        choices=["float64", "float32", "tf32", "bfloat16"],
        help="precisions timed side by side (float64 first: the others are compared to it)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from layerprune.models import cifar_resnet, count_macs

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    torch.manual_seed(args.seed)
    model = cifar_resnet(56).eval()
    macs_per_image, _ = count_macs(model, INPUT_SIZE)
    model = model.to(device)
    variants = list(dict.fromkeys(["float64", *args.variants]))  # float64 always: the reference
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    logger.info(
        "ResNet-56 similarity stage: %s MACs an image, batch %d, %s, torch %s, load average %s; variants %s",
        f"{macs_per_image:,}",
        args.batch_size,
        where,
        torch.__version__,
        " ".join(f"{v:.1f}" for v in os.getloadavg()),
        variants,
    )
    with torch.no_grad():  # warm-up: first calls allocate and pick kernels
        run_once(model, 2 * args.batch_size, args.batch_size, variants, device, args.seed + 1)
    header = (
        f"{'n':>6} {'precision':<9} {'forward s':>9} {'CKA s':>8} {'stage s':>8} {'limit s':>8} "
        f"{'stage/limit':>11} {'CKA/fwd MAC rate':>16} {'max |err| vs f64':>16}"
    )
    lines = [header, "-" * len(header)]
    for n in args.n:
        runs = []
        for r in range(args.repeats):
            runs.append(run_once(model, n, args.batch_size, variants, device, args.seed + 100 * r))
            logger.info(
                "n=%d repeat %d: forward %.1f s, %s (load %.1f)",
                n,
                r + 1,
                runs[-1]["forward_s"],
                ", ".join(f"{v} {runs[-1]['cka_s'][v]:.1f} s" for v in variants),
                os.getloadavg()[0],
            )
        forward_s = statistics.median(run["forward_s"] for run in runs)
        forward_macs = macs_per_image * n
        cka_macs = runs[0]["cka_macs"]
        limit = forward_s * (1 + cka_macs / forward_macs)
        for v in variants:
            cka_s = statistics.median(run["cka_s"][v] for run in runs)
            stage = statistics.median(run["forward_s"] + run["cka_s"][v] for run in runs)
            err = max(float(np.abs(run["matrices"][v] - run["matrices"]["float64"]).max()) for run in runs)
            rate = (cka_macs / cka_s) / (forward_macs / forward_s)
            lines.append(
                f"{n:>6} {v:<9} {forward_s:>9.1f} {cka_s:>8.1f} {stage:>8.1f} {limit:>8.1f} "
                f"{stage / limit:>11.2f} {rate:>16.2f} {err:>16.2e}"
            )
        note = f"{'':>6} CKA MACs {cka_macs:,} = {cka_macs / forward_macs:.3f} x the forward's {forward_macs:,}"
        if "float32" in variants:
            speedup = statistics.median(run["cka_s"]["float64"] / run["cka_s"]["float32"] for run in runs)
            note += f"; CKA time float64 / float32 = {speedup:.2f}x"
        lines.append(note)
    logger.info("\n%s", "\n".join(lines))
    logger.info("load average at the end: %s", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
