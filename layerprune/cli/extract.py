"""``layerprune extract``: calibration representations of the baseline (one pass, prefix caching)."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import add_data_args, add_precision_arg, add_threads_arg, set_threads
from layerprune.data import calibration_loader
from layerprune.models import load_checkpoint
from layerprune.similarity.extract import extract_representations
from layerprune.train import select_device

#: config name of the estimator -> MinibatchCKA mode
CKA_MODES = {"minibatch": "unbiased", "sglp": "sglp"}


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    batch_size = args.sglp_batch if args.mode == "sglp" else args.batch_size
    loader = calibration_loader(args.data, size=args.size, batch_size=batch_size, seed=args.seed)
    reps = extract_representations(
        ckpt.model,
        loader,
        input_size=ckpt.preprocessing["input_size"],
        cka_mode=CKA_MODES[args.mode],
        precision=args.precision,
        bypassed_features=args.bypassed_features,
        device=select_device("auto"),
    )
    reps.save(args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="calibration representations: intact/bypassed features, unit CKA")
    p.add_argument("--model", type=Path, required=True, help="baseline checkpoint")
    add_data_args(p)
    p.add_argument("--size", type=int, default=512, help="calibration images (training split)")
    p.add_argument("--batch-size", type=int, default=128, help="calibration images per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    p.add_argument("--mode", choices=sorted(CKA_MODES), default="minibatch", help="CKA matrix estimator")
    p.add_argument("--sglp-batch", type=int, default=500, help="batch of the sglp estimator")
    add_precision_arg(p)
    p.add_argument(
        "--no-bypassed-features",
        dest="bypassed_features",
        action="store_false",
        help="keep only the streamed CKA of the bypassed features, not the (n, d) features (similarity.bypassed_features)",
    )
    p.add_argument("--out", type=Path, required=True, help="representations .npz to write")
    add_threads_arg(p)
    p.set_defaults(func=_run)
