"""``layerprune prune``: score with one criterion, select under a budget, remove units, and
(with ``--metrics``) evaluate the pruned model before any fine-tuning."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import (
    add_data_args,
    add_evaluation_args,
    add_precision_arg,
    add_threads_arg,
    add_tracking_args,
    evaluate_written_model,
    section_arg,
    set_threads,
)
from layerprune.criteria import CALIBRATION, criterion_names, get_criterion
from layerprune.criteria.protocols import effective_pruning, protocol_of
from layerprune.data import build_dataset, calibration_loader
from layerprune.io import read_json, read_table, write_csv, write_json
from layerprune.models import get_units, load_checkpoint, save_checkpoint
from layerprune.pruning import apply_plan, plan_pruning, scores_table
from layerprune.selection import Budget
from layerprune.similarity.extract import Representations
from layerprune.train import TrainConfig, select_device


def _run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    budget = Budget.parse(args.budget)
    input_size = ckpt.preprocessing["input_size"]
    # Under Pons et al.'s protocol cka runs iterative, one unit a step, fine-tuned every step.
    pruning, criterion = effective_pruning(args.pruning, args.method), get_criterion(args.method)
    protocol = protocol_of(pruning, args.method)
    reps = Representations.load(args.representations) if args.representations else None
    distances = (
        read_table(args.candidates, ("unit", "metric", "distance"), min_rows=1, writer="rule similarity_tables")
        if args.candidates
        else None
    )
    segments = (
        read_json(args.segments, ["segment_units"], writer="rule segment_layers")["segment_units"]
        if args.segments
        else None
    )
    loader = None
    if CALIBRATION in criterion.stage_inputs(pruning):
        loader = calibration_loader(
            args.data, size=args.calibration["size"], batch_size=args.calibration["batch_size"],
            seed=args.calibration["seed"],
        )  # fmt: skip
    finetune_between = None
    if criterion.reads_finetune(pruning):
        config = TrainConfig.from_section(args.finetune, seed=args.seed, epochs=pruning["finetune_epochs_between"])
        finetune_between = (config, build_dataset(args.data, "train", augment=args.data["augment"]))
    planned = plan_pruning(
        args.method,
        budget,
        ckpt.model,
        input_size,
        min_units_per_stage=pruning["min_units_per_stage"],
        representations=reps,
        candidate_distances=distances,
        consensus_metrics=args.consensus_metrics,
        segments=segments,
        allocation=pruning["allocation"],
        calibration_loader=loader,
        gradnorm_batches=pruning["gradnorm_batches"],
        iterative=criterion.is_iterative(pruning),
        units_per_step=pruning["units_per_step"],
        finetune_between=finetune_between,
        seed=args.seed,
        precision=args.precision,
        device=select_device("auto"),
        protocol=protocol,
    )
    plan = {"method": args.method, "budget": str(budget), "seed": args.seed, "protocol": protocol, **planned.plan}
    # The plan and scores are on disk before the surgery (one-shot criteria) or, for the iterative
    # criteria that removed units while planning, before the pruned model is saved.
    write_json(args.plan, plan)
    units = get_units(ckpt.model, input_size)
    write_csv(args.scores, scores_table(units, planned.scores, plan["removed"]))
    pruned = apply_plan(ckpt.model, planned)
    meta = {**ckpt.meta, "stage": "pruned", "method": args.method, "budget": str(budget),
            "seed": args.seed, "removed": plan["removed"], "parent": str(args.model)}  # fmt: skip
    save_checkpoint(args.out, pruned, preprocessing=ckpt.preprocessing, meta=meta)
    evaluate_written_model(args, pruned, ckpt.preprocessing, args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prune", help="score, select under a budget and physically remove units")
    p.add_argument("--model", type=Path, required=True, help="baseline checkpoint")
    p.add_argument("--method", choices=criterion_names(), required=True, help="criterion")
    p.add_argument(
        "--budget",
        required=True,
        help="blocksN (remove N units), macsP (remove >= P%% of MACs) or paramsP (>= P%% of parameters)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run (random criterion, GradNorm batches)")
    p.add_argument("--pruning", type=section_arg("pruning"), default="{}", help="the config's pruning section")
    p.add_argument(
        "--finetune",
        type=section_arg("finetune"),
        default="{}",
        help="the config's finetune section (fine-tuning between iterative steps)",
    )
    add_data_args(p)
    p.add_argument("--representations", type=Path, default=None, help="output of `layerprune extract`")
    p.add_argument("--candidates", type=Path, default=None, help="candidate distances (consensus)")
    p.add_argument(
        "--consensus-metrics", nargs="+", default=["cka"], help="metrics consensus votes over (default: cka)"
    )
    add_precision_arg(p)
    p.add_argument("--segments", type=Path, default=None, help="segments JSON (sglp)")
    p.add_argument(
        "--calibration", type=section_arg("calibration"), default="{}", help="the config's calibration section"
    )
    p.add_argument("--scores", type=Path, required=True, help="tidy scores CSV to write")
    p.add_argument("--plan", type=Path, required=True, help="plan JSON to write")
    p.add_argument("--out", type=Path, required=True, help="pruned checkpoint to write")
    add_evaluation_args(p)
    add_tracking_args(p)
    add_threads_arg(p)
    p.set_defaults(func=_run)
