"""``layerprune baseline``: train (or import) the unpruned model."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.baseline import make_baseline
from layerprune.cli._common import (
    add_data_args,
    add_emissions_args,
    add_threads_arg,
    emissions_path,
    finish_emissions,
    json_arg,
    relaunch_if_parallel,
    section_arg,
    set_threads,
)


def _run(args: argparse.Namespace) -> None:
    if args.model["family"] != "causal_lm" and not args.model["checkpoint"]:  # imported weights: one process
        relaunch_if_parallel(args, args.train)
    set_threads(args.threads)
    model = make_baseline(
        args.data,
        args.model,
        args.train,
        out_model=args.out,
        workdir=args.workdir,
        log_csv=args.log_csv,
        emissions_csv=emissions_path(args),
        country_iso_code=args.country,
        seed=args.seed,
        threads=args.threads,
    )
    if model is not None:  # None: a data-parallel process other than rank 0, which writes nothing
        finish_emissions(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baseline", help="train or import the unpruned model")
    add_data_args(p)
    p.add_argument(
        "--model", type=section_arg("model"), required=True, help="the config's model section (JSON or @file)"
    )
    p.add_argument("--train", type=json_arg, default={}, help="the config's train section (checked by TrainConfig)")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the config schema's first seed)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--workdir", type=Path, required=True, help="folder for resumable training state")
    p.add_argument("--log-csv", type=Path, required=True, help="per-epoch training log")
    add_emissions_args(p)
    add_threads_arg(p)
    p.set_defaults(func=_run)
