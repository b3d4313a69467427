"""``layerprune corrupt`` and ``layerprune robustness``: corrupted test sets (made once) and
adversarial, corruption and natural-shift robustness of one checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from layerprune.cli._common import add_data_args, add_threads_arg, json_arg, set_threads
from layerprune.io import write_csv
from layerprune.models import load_checkpoint
from layerprune.robustness import run_attacks, validate_attack_configs
from layerprune.robustness.corrupted_set import (
    CorruptedSet,
    evaluate_corrupted_set,
    first_test_images,
    load_cifar10c,
    make_corrupted_set,
    save_corrupted_set_grid,
    test_images,
)
from layerprune.robustness.natural_shift import evaluate_ood_sets
from layerprune.train import select_device

ADVERSARIAL_COLUMNS = ["attack", "norm", "epsilon", "robust_accuracy", "n", "max_perturbation"]
CORRUPTION_COLUMNS = ["corruption", "group", "severity", "accuracy", "n"]


def _corrupt(args: argparse.Namespace) -> None:
    if args.cifar10c_root:
        # CIFAR-10-C stacks the test images in file order and does not hold the clean ones
        images, labels = first_test_images(args.data, args.size)
        data = load_cifar10c(args.cifar10c_root, args.corruptions, args.severities, images, labels)
    else:
        images, labels = test_images(args.data, args.size, args.seed)
        data = make_corrupted_set(images, labels, args.corruptions, args.severities, args.seed)
    if args.grid:
        save_corrupted_set_grid(data, args.grid)
    data.save(args.out)


def _robustness(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    mean, std = ckpt.preprocessing.get("mean"), ckpt.preprocessing.get("std")
    device = select_device("auto")
    attacks = validate_attack_configs(args.attacks) if args.attacks else []
    if attacks:
        images, labels = test_images(args.data, args.size, args.seed)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
        adversarial = run_attacks(
            ckpt.model, x, torch.from_numpy(labels), mean=mean, std=std, attacks=attacks,
            batch_size=args.batch_size, device=device, seed=args.seed,
        )  # fmt: skip
    else:
        adversarial = pd.DataFrame(columns=ADVERSARIAL_COLUMNS)
    write_csv(args.adversarial, adversarial)
    if args.corrupted:
        corruptions = evaluate_corrupted_set(
            ckpt.model, CorruptedSet.load(args.corrupted), mean=mean, std=std,
            batch_size=args.batch_size, device=device,
        )  # fmt: skip
    else:
        corruptions = pd.DataFrame(columns=CORRUPTION_COLUMNS)
    write_csv(args.corruptions, corruptions)
    if args.ood:
        if not args.ood_sets:
            raise ValueError("--ood needs --ood-sets (the config's robustness.ood_sets)")
        ood = evaluate_ood_sets(
            ckpt.model, args.ood_sets, mean=mean, std=std, input_size=ckpt.preprocessing.get("input_size"),
            batch_size=args.batch_size, device=device,
        )  # fmt: skip
        write_csv(args.ood, ood)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("corrupt", help="make the corrupted test set once (CIFAR-10-C protocol)")
    add_data_args(p)
    p.add_argument("--corruptions", nargs="+", required=True, help="corruption names")
    p.add_argument(
        "--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], help="CIFAR-10-C severities, 1 (mild) to 5"
    )
    p.add_argument("--size", type=int, default=500, help="seeded test images")
    p.add_argument("--seed", type=int, default=0, help="seed of the test subset (and the random corruptions)")
    p.add_argument("--cifar10c-root", type=Path, default=None, help="load the real CIFAR-10-C instead")
    p.add_argument("--out", type=Path, required=True, help="corrupted set .npz to write")
    p.add_argument("--grid", type=Path, default=None, help="PNG of sample images per corruption and severity")
    p.set_defaults(func=_corrupt)

    p = subparsers.add_parser("robustness", help="adversarial and corruption robustness of a checkpoint")
    p.add_argument("--model", type=Path, required=True, help="a layerprune checkpoint")
    add_data_args(p)
    p.add_argument("--attacks", type=json_arg, default=[], help="the config's robustness.attacks (JSON)")
    p.add_argument("--size", type=int, default=200, help="seeded test images attacked")
    p.add_argument("--seed", type=int, default=0, help="seed of the test subset and of the attacks' random starts")
    p.add_argument("--batch-size", type=int, default=100, help="images per attack call")
    p.add_argument("--corrupted", type=Path, default=None, help="output of `layerprune corrupt`")
    p.add_argument("--adversarial", type=Path, required=True, help="tidy adversarial CSV to write")
    p.add_argument("--corruptions", type=Path, required=True, help="tidy corruption CSV to write")
    p.add_argument(
        "--ood-sets", type=json_arg, default=[],
        help="the config's robustness.ood_sets (JSON): [{name: cifar10.1|cifar10.2, path: folder}]",
    )  # fmt: skip
    p.add_argument("--ood", type=Path, default=None, help="tidy natural-shift CSV to write (dataset, accuracy, n)")
    add_threads_arg(p)
    p.set_defaults(func=_robustness)
