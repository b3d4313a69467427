"""Benchmark: the unit-by-unit linear CKA matrix of a CIFAR ResNet-56, minibatch (ours) vs per-pair Gram matrices.

The 28 representations are the stem and the 27 residual units (flattened 16x32x32, 32x16x16 and 64x8x8 outputs).
They are generated on the fly by a real (randomly initialised: only the timing matters here) ResNet-56 from
``layerprune.models`` on random 3x32x32 inputs, so the benchmark needs no data.

* ours: :class:`layerprune.similarity.MinibatchCKA` (unbiased HSIC_1 accumulated over minibatches, Nguyen et al.
  2021). One pass; each batch's 28 Gram matrices are computed once and all pairs come from two matrix products.
  Memory is bounded by the batch.
* naive: what the SGLP code does: all n samples' features kept in memory, and for every pair of units both
  centred n x n Gram matrices recomputed (float64, with O(n^2) centring, which is kinder to it than H K H).

The naive run over all 378 pairs would take hours on a CPU, so it is run on pairs of each width class from the
cheapest up, within a time budget per n, and its total is extrapolated with time proportional to d_i + d_j (each
pair's cost is dominated by two n x n x d Gram products). Its peak memory is measured with the features of the
sampled units held, and projected for all 28 units (what a full run needs) by adding their extra size.
Each (method, n) runs in a fresh process so that its peak resident set size (ru_maxrss) is its own.

Usage: python bench/bench_cka_matrix.py --n 2500 10000
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger("bench_cka_matrix")

MIB = 1024 * 1024


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(depth: int, seed: int) -> torch.nn.Module:
    from layerprune.models import cifar_resnet

    torch.manual_seed(seed)
    return cifar_resnet(depth).eval()


def _images(seed: int, start: int, size: int) -> torch.Tensor:
    """Deterministic random inputs for samples [start, start + size): (size, 3, 32, 32)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
    return torch.randn(size, 3, 32, 32, generator=gen)


@torch.no_grad()
def _unit_outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Stem output then every unit's output, flattened: 28 tensors (b, d_i) for ResNet-56."""
    from layerprune.models.units import forward_units

    stem, outputs = forward_units(model, x)
    return [t.reshape(t.shape[0], -1) for t in (stem, *outputs)]


def run_ours(n: int, batch_size: int, depth: int, seed: int, threads: int) -> dict:
    """Minibatch CKA over n samples, features generated batch by batch."""
    from layerprune.similarity import MinibatchCKA

    torch.set_num_threads(threads)
    model = _model(depth, seed)
    num_units = len(_unit_outputs(model, _images(seed, 0, 2)))
    baseline = _peak_rss_mib()
    acc = MinibatchCKA(num_units, mode="unbiased")
    forward_s = cka_s = 0.0
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        if size < acc.min_batch_size:
            break
        t0 = time.perf_counter()
        feats = _unit_outputs(model, _images(seed, start, size))
        t1 = time.perf_counter()
        acc.update(feats)
        del feats
        cka_s += time.perf_counter() - t1
        forward_s += t1 - t0
    t0 = time.perf_counter()
    matrix = acc.compute()
    cka_s += time.perf_counter() - t0
    return {
        "forward_s": forward_s,
        "cka_s": cka_s,
        "pairs_run": num_units * (num_units + 1) // 2,
        "peak_mib": _peak_rss_mib(),
        "baseline_mib": baseline,
        "finite": bool(np.isfinite(matrix).all()),
        "samples": acc.num_samples,
    }


def naive_pair_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased linear CKA of one pair from freshly computed centred n x n Gram matrices (the per-pair approach)."""
    x, y = x.double(), y.double()
    kx, ky = x @ x.T, y @ y.T
    kx = kx - kx.mean(0, keepdim=True) - kx.mean(1, keepdim=True) + kx.mean()
    ky = ky - ky.mean(0, keepdim=True) - ky.mean(1, keepdim=True) + ky.mean()
    return float((kx * ky).sum() / (kx.norm() * ky.norm()))


def run_naive(
    n: int,
    pairs: Sequence[tuple[int, int]],
    widths: Sequence[int],
    budget_s: float,
    depth: int,
    seed: int,
    threads: int,
) -> dict:
    """Per-pair CKA on all n samples held in memory, for ``pairs`` in order until the time budget is spent."""
    torch.set_num_threads(threads)
    model = _model(depth, seed)
    baseline = _peak_rss_mib()
    needed = sorted({u for pair in pairs for u in pair})
    store = {u: torch.empty(n, widths[u], dtype=torch.float32) for u in needed}
    forward_s = 0.0
    chunk = 256
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        t0 = time.perf_counter()
        feats = _unit_outputs(model, _images(seed, start, size))
        forward_s += time.perf_counter() - t0
        for u in needed:
            store[u][start : start + size] = feats[u]
        del feats
    timings: list[tuple[int, int, float]] = []
    spent = 0.0
    for i, j in pairs:
        if timings:
            rate = sum(t for *_, t in timings) / sum(widths[a] + widths[b] for a, b, _ in timings)
            if spent + rate * (widths[i] + widths[j]) > budget_s:
                break
        t0 = time.perf_counter()
        value = naive_pair_cka(store[i], store[j])
        dt = time.perf_counter() - t0
        if not np.isfinite(value):
            raise RuntimeError(f"naive CKA of units {i}, {j} is not finite ({value})")
        timings.append((i, j, dt))
        spent += dt
    held_mib = sum(t.numel() * t.element_size() for t in store.values()) / MIB
    return {
        "forward_s": forward_s,
        "pair_timings": timings,
        "peak_mib": _peak_rss_mib(),
        "baseline_mib": baseline,
        "held_mib": held_mib,
    }


def _in_child(fn: object, *args: object) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)  # type: ignore[arg-type]


def _sample_pairs(widths: Sequence[int]) -> list[tuple[int, int]]:
    """One pair for every class of width combination, cheapest first (distinct units, stem excluded if possible)."""
    by_width: dict[int, list[int]] = {}
    for u, d in enumerate(widths):
        by_width.setdefault(d, []).append(u)
    distinct = sorted(by_width)
    pairs = []
    for a_idx, da in enumerate(distinct):
        for db in distinct[a_idx:]:
            ua = by_width[da][-1]
            ub = by_width[db][-2] if da == db else by_width[db][-1]
            pairs.append((min(ua, ub), max(ua, ub)))
    return sorted(pairs, key=lambda p: widths[p[0]] + widths[p[1]])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2500, 10000], help="numbers of samples")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch size of ours")
    parser.add_argument("--depth", type=int, default=56, help="CIFAR ResNet depth (20, 32, 44, 56 or 110)")
    parser.add_argument(
        "--naive-budget-s", type=float, default=150.0, help="seconds of naive per-pair CKA per n before extrapolating"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    widths = [t.shape[1] for t in _unit_outputs(_model(args.depth, args.seed), _images(args.seed, 0, 2))]
    num_units = len(widths)
    all_pairs = [(i, j) for i in range(num_units) for j in range(i + 1, num_units)]
    all_width_sum = sum(widths[i] + widths[j] for i, j in all_pairs)
    sample = _sample_pairs(widths)
    logger.info(
        "ResNet-%d: %d representations (stem + %d units), widths %s; torch %s, %d threads; "
        "ours: float32 products and float64 sums (the similarity.precision default), naive: float64",
        args.depth,
        num_units,
        num_units - 1,
        sorted(set(widths)),
        torch.__version__,
        args.threads,
    )
    rows = []
    for n in args.n:
        logger.info("n=%d: ours (batch %d) ...", n, args.batch_size)
        ours = _in_child(run_ours, n, args.batch_size, args.depth, args.seed, args.threads)
        logger.info("n=%d: naive per-pair on %d sampled pairs, budget %.0f s ...", n, len(sample), args.naive_budget_s)
        naive = _in_child(run_naive, n, sample, widths, args.naive_budget_s, args.depth, args.seed, args.threads)
        timings = naive["pair_timings"]
        rate = sum(t for *_, t in timings) / sum(widths[i] + widths[j] for i, j, _ in timings)
        naive_cka_s = rate * all_width_sum
        all_units_mib = n * sum(widths) * 4 / MIB
        naive_projected_peak = naive["peak_mib"] + all_units_mib - naive["held_mib"]
        # The naive forward pass stores only the sampled units; running the network costs the same for all units.
        rows.append((n, ours, naive, naive_cka_s, naive_projected_peak, len(timings)))

    header = (
        f"{'n':>6} {'method':<22} {'pairs timed':>12} {'forward s':>10} {'CKA s':>10} {'total s':>10} "
        f"{'peak MiB':>9} {'above base':>10} {'peak MiB, all units held':>25}"
    )
    logger.info("\n%s\n%s", header, "-" * len(header))
    for n, ours, naive, naive_cka_s, naive_peak_all, timed in rows:
        logger.info(
            "%6d %-22s %12s %10.1f %10.1f %10.1f %9.0f %10.0f %25s",
            n,
            f"ours minibatch b={args.batch_size}",
            f"{ours['pairs_run']}/{ours['pairs_run']}",
            ours["forward_s"],
            ours["cka_s"],
            ours["forward_s"] + ours["cka_s"],
            ours["peak_mib"],
            ours["peak_mib"] - ours["baseline_mib"],
            "-",
        )
        logger.info(
            "%6d %-22s %12s %10.1f %10s %10s %9.0f %10.0f %25.0f",
            n,
            "naive per-pair Gram",
            f"{timed}/{len(all_pairs)}",
            naive["forward_s"],
            f"~{naive_cka_s:.0f}",
            f"~{naive['forward_s'] + naive_cka_s:.0f}",
            naive["peak_mib"],
            naive["peak_mib"] - naive["baseline_mib"],
            naive_peak_all,
        )
        for i, j, dt in naive["pair_timings"]:
            logger.info("%6s   naive pair (%d, %d), widths %d + %d: %.1f s", "", i, j, widths[i], widths[j], dt)
    logger.info("")
    for n, ours, naive, naive_cka_s, naive_peak_all, _ in rows:
        ours_total = ours["forward_s"] + ours["cka_s"]
        logger.info(
            "n=%d ratios naive/ours: CKA time %.0fx, end-to-end %.0fx, peak memory %.1fx (measured) / %.1fx "
            "(all units held), above baseline %.1fx / %.1fx; ours matrix finite: %s",
            n,
            naive_cka_s / ours["cka_s"],
            (naive["forward_s"] + naive_cka_s) / ours_total,
            naive["peak_mib"] / ours["peak_mib"],
            naive_peak_all / ours["peak_mib"],
            (naive["peak_mib"] - naive["baseline_mib"]) / (ours["peak_mib"] - ours["baseline_mib"]),
            (naive_peak_all - naive["baseline_mib"]) / (ours["peak_mib"] - ours["baseline_mib"]),
            ours["finite"],
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        logger.info(
            "ours peak memory n=%d -> n=%d: %.0f -> %.0f MiB (x%.2f for x%.1f samples; above baseline %.0f -> %.0f)",
            first[0],
            last[0],
            first[1]["peak_mib"],
            last[1]["peak_mib"],
            last[1]["peak_mib"] / first[1]["peak_mib"],
            last[0] / first[0],
            first[1]["peak_mib"] - first[1]["baseline_mib"],
            last[1]["peak_mib"] - last[1]["baseline_mib"],
        )
    logger.info(
        "naive CKA time is extrapolated from the timed pairs (time proportional to d_i + d_j) to all %d pairs; "
        "its 'all units held' peak adds the float32 features of the units it did not hold.",
        len(all_pairs),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
