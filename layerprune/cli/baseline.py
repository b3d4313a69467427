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
    section_arg,
    set_threads,
)


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    make_baseline(
        args.data,
        args.model,
        args.train,
        out_model=args.out,
        workdir=args.workdir,
        log_csv=args.log_csv,
        emissions_csv=emissions_path(args),
        country_iso_code=args.country,
        seed=args.seed,
    )
    finish_emissions(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baseline", help="train or import the unpruned model")
    add_data_args(p)
    p.add_argument(
        "--model", type=section_arg("model"), required=True, help="the config's model section (JSON or @file)"
    )
    p.add_argument("--train", type=json_arg, default={}, help="the config's train section (JSON or @file)")
    p.add_argument("--seed", type=int, default=0, help="seed of weight initialisation, data order and augmentation")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--workdir", type=Path, required=True, help="folder for resumable training state")
    p.add_argument("--log-csv", type=Path, required=True, help="per-epoch training log")
    add_emissions_args(p)
    add_threads_arg(p)
    p.set_defaults(func=_run)
