"""``layerprune similarity``: tidy tables of the unit CKA matrix and of candidate distances."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.io import write_csv
from layerprune.similarity.distances import DISTANCE_PROTOCOLS
from layerprune.similarity.extract import Representations
from layerprune.similarity.tables import candidate_distances, matrix_table, plot_matrix


def _run(args: argparse.Namespace) -> None:
    reps = Representations.load(args.representations)
    write_csv(args.matrix, matrix_table(reps.matrix_names, reps.cka_matrix))
    # Without the bypassed features (similarity.bypassed_features: false) no criterion reads the table.
    metrics = args.metrics if reps.has_bypassed_features else []
    write_csv(args.candidates, candidate_distances(reps, metrics, args.protocol))
    if args.heatmap:
        plot_matrix(reps.matrix_names, reps.cka_matrix, args.heatmap)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("similarity", help="unit-by-unit CKA table and intact-vs-bypassed distances")
    p.add_argument("--representations", type=Path, required=True, help="output of `layerprune extract`")
    p.add_argument("--metrics", nargs="+", default=["cka"], help="distances for the candidate table")
    p.add_argument(
        "--protocol",
        choices=DISTANCE_PROTOCOLS,
        default="layerprune",
        help="paper: Consensus's reference definitions (bures = Gaussian-stochastic metric, cca on all variance); "
        "the config's pruning.protocol.consensus",
    )
    p.add_argument("--matrix", type=Path, required=True, help="tidy unit_a, unit_b, cka CSV to write")
    p.add_argument("--candidates", type=Path, required=True, help="tidy unit, metric, distance CSV to write")
    p.add_argument("--heatmap", type=Path, default=None, help="heatmap image to write")
    p.set_defaults(func=_run)
