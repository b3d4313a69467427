"""``layerprune segment``: Fisher optimal segmentation of the units by their CKA rows (SGLP)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from layerprune.io import write_json
from layerprune.segmentation import (
    DEFAULT_THRESHOLD,
    SEGMENTATION_PROTOCOLS,
    choose_k,
    fisher_segments,
    optimal_losses,
    paper_segments,
)
from layerprune.similarity.extract import Representations


def segment_units(units: list[str], matrix: np.ndarray, segments: str | int, threshold: float) -> dict:
    """Segments of the units (rows of the unit-by-unit CKA matrix, stem excluded)."""
    if np.isnan(matrix).any():
        raise ValueError("the unit CKA matrix has undefined (NaN) entries; use a larger calibration.size or batch_size")
    k = choose_k(matrix, threshold=threshold) if segments == "auto" else int(segments)
    if not 1 <= k <= len(units):
        raise ValueError(f"pruning.segments={segments} must be between 1 and the {len(units)} units")
    bounds = fisher_segments(matrix, k)
    return {
        "units": units,
        "k": k,
        "rule": "auto: smallest k with loss(k) <= threshold * loss(1)" if segments == "auto" else "fixed",
        "threshold": threshold,
        "segments": [list(b) for b in bounds],
        "segment_units": [units[start:stop] for start, stop in bounds],
        "losses": optimal_losses(matrix, len(units)).tolist(),
    }


def _run(args: argparse.Namespace) -> None:
    reps = Representations.load(args.representations)
    if args.protocol == "paper":
        write_json(args.out, paper_segments(reps.matrix_names, reps.units, reps.cka_matrix))
        return
    offset = reps.matrix_names.index(reps.units[0])  # skip the stem row and column
    matrix = reps.cka_matrix[offset:, offset:]
    segments = args.segments if args.segments == "auto" else int(args.segments)
    write_json(args.out, segment_units(reps.units, matrix, segments, args.threshold))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("segment", help="Fisher optimal segmentation of units (SGLP)")
    p.add_argument("--representations", type=Path, required=True, help="output of `layerprune extract`")
    p.add_argument("--segments", default="auto", help="number of segments, or auto")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="auto rule: the smallest k with loss(k) <= threshold * loss(1), threshold in [0, 1) "
        "(the config's pruning.segment_threshold)",
    )
    p.add_argument(
        "--protocol",
        choices=SEGMENTATION_PROTOCOLS,
        default="layerprune",
        help="layerprune: rows of the unit CKA matrix (stem excluded), the threshold rule; paper: the SGLP "
        "reference's column sums (stem included), segments added while the loss drops > 5%%, at most 6 "
        "(--segments and --threshold are then unused); the config's pruning.protocol.sglp",
    )
    p.add_argument("--out", type=Path, required=True, help="segments JSON to write")
    p.set_defaults(func=_run)
