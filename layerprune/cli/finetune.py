"""``layerprune finetune``: recover accuracy of a pruned model with the one training loop, and
(with ``--metrics``) evaluate the fine-tuned model. With ``finetune.devices > 1`` the command
relaunches itself through torchrun (one process per device, data-parallel)."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import (
    add_data_args,
    add_emissions_args,
    add_evaluation_args,
    add_threads_arg,
    emissions_path,
    evaluate_written_model,
    finish_emissions,
    json_arg,
    relaunch_if_parallel,
    section_arg,
    set_threads,
)
from layerprune.training import finetune_checkpoint


def _run(args: argparse.Namespace) -> None:
    relaunch_if_parallel(args, args.finetune)
    set_threads(args.threads)
    ckpt = finetune_checkpoint(
        args.model,
        args.data,
        args.finetune,
        seed=args.seed,
        out=args.out,
        workdir=args.workdir,
        log_csv=args.log_csv,
        emissions_csv=emissions_path(args),
        country_iso_code=args.country,
        threads=args.threads,
        shortcut=args.shortcut,
    )
    if ckpt is None:  # a data-parallel process other than rank 0: rank 0 writes every artifact
        return
    finish_emissions(args)
    evaluate_written_model(args, ckpt.model, ckpt.preprocessing, args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a pruned checkpoint (resumable)")
    p.add_argument("--model", type=Path, required=True, help="pruned checkpoint")
    add_data_args(p)
    # Checked by TrainConfig.from_section (unknown keys and bad values fail by name), not by the schema: the
    # section may also carry the run's seed, as older callers pass it.
    p.add_argument("--finetune", type=json_arg, default={}, help="the config's finetune section (JSON or @file)")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the config schema's first seed)")
    p.add_argument(
        "--shortcut",
        type=section_arg("shortcut"),
        default=None,
        help="the config's shortcut section (JSON): fine-tune on its biased training set instead of the clean one",
    )
    p.add_argument("--out", type=Path, required=True, help="fine-tuned checkpoint to write")
    p.add_argument("--workdir", type=Path, required=True, help="folder for resumable training state")
    p.add_argument("--log-csv", type=Path, required=True, help="per-epoch log to write")
    add_emissions_args(p)
    add_evaluation_args(p)
    add_threads_arg(p)
    p.set_defaults(func=_run)
