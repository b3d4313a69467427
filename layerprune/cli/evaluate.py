"""``layerprune evaluate``: accuracy, cost and latency of one checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import (
    add_data_args,
    add_emissions_args,
    add_threads_arg,
    emissions_path,
    finish_emissions,
    set_threads,
)
from layerprune.evaluation import evaluate_model
from layerprune.io import write_json
from layerprune.models import load_checkpoint


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    metrics = evaluate_model(
        ckpt.model,
        ckpt.preprocessing,
        args.data,
        batch_size=args.batch_size,
        latency_batch_size=args.latency_batch_size,
        latency_repeats=args.latency_repeats,
        emissions_csv=emissions_path(args),
        country_iso_code=args.country,
    )
    write_json(args.out, {**metrics, "model": str(args.model)})
    finish_emissions(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="top-1, params, MACs and latency of a checkpoint")
    p.add_argument("--model", type=Path, required=True, help="a layerprune checkpoint")
    add_data_args(p)
    p.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch of the test-set pass")
    p.add_argument("--latency-batch-size", type=int, default=64, help="images per timed forward pass")
    p.add_argument(
        "--latency-repeats",
        type=int,
        default=20,
        help="timed passes (median reported); for comparable timings of several models use `layerprune latency`",
    )
    add_emissions_args(p)
    add_threads_arg(p)
    p.set_defaults(func=_run)
