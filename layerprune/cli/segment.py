"""``layerprune segment``: Fisher optimal segmentation of the units by their CKA rows (SGLP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.config import defaults
from layerprune.io import write_json
from layerprune.segmentation import segment_units
from layerprune.similarity.extract import Representations


def _run(args: argparse.Namespace) -> None:
    reps = Representations.load(args.representations)
    offset = reps.matrix_names.index(reps.units[0])  # skip the stem row and column
    matrix = reps.cka_matrix[offset:, offset:]
    segments = args.segments if args.segments == "auto" else int(args.segments)
    write_json(args.out, segment_units(reps.units, matrix, segments, args.threshold))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("segment", help="Fisher optimal segmentation of units (SGLP)")
    pruning = defaults("pruning")
    p.add_argument("--representations", type=Path, required=True, help="output of `layerprune extract`")
    p.add_argument(
        "--segments", default=pruning["segments"], help="number of segments, or auto (the config's pruning.segments)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=pruning["segment_threshold"],
        help="auto rule: the smallest k with loss(k) <= threshold * loss(1), threshold in [0, 1) "
        "(the config's pruning.segment_threshold)",
    )
    p.add_argument("--out", type=Path, required=True, help="segments JSON to write")
    p.set_defaults(func=_run)
