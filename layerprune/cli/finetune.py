"""``layerprune finetune``: recover accuracy of a pruned model with the one training loop, and
(with ``--metrics``) evaluate the fine-tuned model."""

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
    section_arg,
    set_threads,
)
from layerprune.data import build_dataset
from layerprune.emissions import track
from layerprune.models import load_checkpoint, save_checkpoint
from layerprune.train import TrainConfig, fit


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    settings = {k: v for k, v in args.finetune.items() if k != "enabled"}
    config = TrainConfig.from_dict({**settings, "seed": args.seed})
    if args.shortcut is None:
        train_set = build_dataset(args.data, "train", augment=args.data.get("augment", True))
    else:  # the biased training set of the shortcut evaluation
        from layerprune.robustness.shortcut import biased_train_set

        train_set = biased_train_set(args.data, args.shortcut)
    test_set = build_dataset(args.data, "test")
    csv = emissions_path(args)
    with track("finetune", csv or Path("unused.csv"), country_iso_code=args.country, enabled=csv is not None) as record:
        # The fingerprint covers the pruned model's spec and weights; add the data config, so that a new pruned
        # model or data set retrains instead of resuming a stale state.
        result = fit(
            ckpt.model,
            train_set,
            test_set,
            config,
            args.workdir,
            log_csv=args.log_csv,
            run_inputs={"data": args.data, **({} if args.shortcut is None else {"shortcut": args.shortcut})},
            usage=record.usage,
        )
        record.earlier = result.usage_before  # energy of the processes before a resume
        record.extra.update(result.coverage())
    meta = {**ckpt.meta, "stage": "finetuned", "finetune": result.to_dict(), "parent": str(args.model)}
    if args.shortcut is not None:
        meta["shortcut"] = args.shortcut
    save_checkpoint(args.out, ckpt.model.cpu(), preprocessing=ckpt.preprocessing, meta=meta)
    finish_emissions(args)
    evaluate_written_model(args, ckpt.model, ckpt.preprocessing, args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a pruned checkpoint (resumable)")
    p.add_argument("--model", type=Path, required=True, help="pruned checkpoint")
    add_data_args(p)
    p.add_argument("--finetune", type=json_arg, default={}, help="the config's finetune section")
    p.add_argument("--seed", type=int, default=0, help="seed of data order and augmentation (the run's seed)")
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
