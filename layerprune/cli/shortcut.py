"""``layerprune shortcut``: clean, aligned and conflicting accuracy, reliance and patch-follow rate of one
checkpoint on the shortcut test sets (the config's ``shortcut`` section; protocol in ``docs/shortcut.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import add_data_args, add_threads_arg, section_arg, set_threads
from layerprune.io import write_csv
from layerprune.models import load_checkpoint
from layerprune.robustness.shortcut import evaluate_shortcut, shortcut_test_sets
from layerprune.train import select_device


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    sets = shortcut_test_sets(args.data, args.shortcut)
    table = evaluate_shortcut(ckpt.model, sets, batch_size=args.batch_size, device=select_device("auto"))
    write_csv(args.out, table)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shortcut", help="shortcut-learning metrics of a checkpoint (planted class-keyed cue)")
    p.add_argument("--model", type=Path, required=True, help="a layerprune checkpoint")
    add_data_args(p)
    p.add_argument(
        "--shortcut",
        type=section_arg("shortcut"),
        default="{}",
        help="the config's shortcut section as JSON (missing keys take the schema's defaults)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--out", type=Path, required=True, help="tidy shortcut.csv to write (metric, value, n)")
    add_threads_arg(p)
    p.set_defaults(func=_run)
