"""``layerprune info``: a model's units, parameters and MACs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from layerprune.models import (
    ARCHITECTURES,
    count_macs,
    count_params,
    get_model,
    get_units,
    load_checkpoint,
)
from layerprune.models.units import Unit

__all__ = ["describe", "register"]


def describe(model, input_size: list[int]) -> dict:
    """A JSON-ready description: spec, params, MACs, blocks per stage and every unit."""
    units: list[Unit] = get_units(model, input_size)
    macs, _ = count_macs(model, input_size)
    return {
        "spec": model.spec(),
        "input_size": list(input_size),
        "params": count_params(model),
        "macs": macs,
        "blocks_per_stage": list(model.blocks_per_stage),
        "units": [
            {
                "name": u.name,
                "stage": u.stage,
                "index": u.index,
                "removable": u.removable,
                "macs": u.macs,
                "params": u.params,
            }
            for u in units
        ],
    }


def _blocks(value: str) -> list[int]:
    """``--blocks 9,9,9``: positive unit counts per stage."""
    try:
        blocks = [int(b) for b in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated unit counts such as 9,9,9, got {value!r}") from None
    if any(b < 1 for b in blocks):
        raise argparse.ArgumentTypeError(f"every stage needs at least one unit, got {value!r}")
    return blocks


def _run(args: argparse.Namespace) -> None:
    if args.checkpoint and args.arch:
        raise ValueError("give either a CHECKPOINT or --arch, not both")
    if args.checkpoint and Path(args.checkpoint).is_dir():  # a causal LM directory
        from layerprune.lm import load_causal_lm

        model = load_causal_lm(args.checkpoint)
        info = describe(model, [args.seq_len or model.config.max_position_embeddings])
        info["cost_unit"] = "per token"
    elif args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        info = describe(ckpt.model, ckpt.preprocessing["input_size"])
        info["preprocessing"] = ckpt.preprocessing
        info["meta"] = ckpt.meta
    elif args.arch:
        cifar = ARCHITECTURES[args.arch].family == "cifar_resnet"
        num_classes = args.num_classes or (10 if cifar else 1000)  # CIFAR-10 / ImageNet
        model = get_model(
            args.arch, num_classes=num_classes, in_channels=args.in_channels, blocks_per_stage=args.blocks
        )
        size = args.image_size or (32 if cifar else 224)
        info = describe(model, [args.in_channels, size, size])
    else:
        raise ValueError("give a CHECKPOINT file or --arch NAME")
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['spec']}  input {info['input_size']}" + (f" ({info['cost_unit']})" if "cost_unit" in info else ""))
    print(f"params {info['params']:,}  MACs {info['macs']:,}  blocks per stage {info['blocks_per_stage']}")
    for u in info["units"]:
        flag = "removable" if u["removable"] else "fixed"
        print(f"  {u['name']:<10} stage {u['stage']}  {flag:<9} MACs {u['macs']:>13,}  params {u['params']:>10,}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="describe a model's prunable units and cost")
    p.add_argument("checkpoint", nargs="?", help="a layerprune checkpoint, or a causal LM directory")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help="describe an architecture instead")
    p.add_argument("--blocks", type=_blocks, help="units per stage, e.g. 9,9,9")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 10 CIFAR, 1000 ImageNet)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels of --arch (1 for grey images)")
    p.add_argument("--image-size", type=int, default=None, help="input side (default 32 CIFAR, 224 ImageNet)")
    p.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="causal LM: sequence length of the per-token cost (default: the model's max_position_embeddings)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)
