"""Flags shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["add_data_args", "json_arg", "section_arg", "set_threads"]


def json_arg(value: str) -> Any:
    """A JSON/YAML object given inline or as a file path (``@file.yaml`` or a path ending .json/.yaml)."""
    path = value.removeprefix("@")
    if value.startswith("@") or Path(path).suffix in (".json", ".yaml", ".yml"):
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"file {path} not found")
        return yaml.safe_load(Path(path).read_text())
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {value[:80]}") from None


def section_arg(section: str) -> Callable[[str], Any]:
    """An argparse type: one config section as :func:`json_arg` reads it, validated against the schema
    with its defaults filled in (a command run by hand checks its sections as the workflow does).
    Give the flag ``default="{}"``: argparse converts a string default too, so the schema's defaults apply."""

    def parse(value: str) -> Any:
        from layerprune.config import ConfigError, validate_section

        try:
            return validate_section(section, json_arg(value))
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).replace("\n", "")) from None

    parse.__name__ = f"{section} section"
    return parse


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=section_arg("data"),
        default="{}",
        help="the config's data section as JSON, or @file.yaml (default: the schema's, digits)",
    )


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    """``--precision`` of the linear CKA products (config key ``similarity.precision``)."""
    from layerprune.similarity import PRECISIONS

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="arithmetic of the linear CKA products (float64 = reference path; tf32, bfloat16 = opt-in, less exact)",
    )


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def add_emissions_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--emissions", type=Path, default=None, help="CodeCarbon tidy CSV to write")
    add_tracking_args(parser)


def add_tracking_args(parser: argparse.ArgumentParser) -> None:
    """Whether and where (for the grid's carbon intensity) CodeCarbon tracks."""
    parser.add_argument(
        "--no-emissions",
        action="store_true",
        help="do not track; the emissions files are still written, with a header only",
    )
    parser.add_argument("--country", default="USA", help="ISO 3166-1 alpha-3 code for CodeCarbon")


def relaunch_if_parallel(args: argparse.Namespace, section: dict) -> None:
    """With ``section["devices"] > 1`` (a train or finetune section) and not yet under torchrun, replace this
    process by torchrun running the same command once per device (:mod:`layerprune.train.distributed`)."""
    from layerprune.train import TrainConfig
    from layerprune.train.distributed import launched_by_torchrun, relaunch_under_torchrun

    devices = TrainConfig.from_section(section, seed=None).devices  # validates the section before any relaunch
    if devices > 1 and not launched_by_torchrun():
        relaunch_under_torchrun(devices, args.argv)


def _fresh(path: Path | None) -> Path | None:
    """``path`` with a file left by an earlier run removed: tracking appends one row per
    phase, and a stage's CSV must describe that run alone (a resumed training run carries its
    earlier energy forward itself), or summing its rows would count twice."""
    if path is not None:
        path.unlink(missing_ok=True)  # the processes of a data-parallel run may race here
    return path


def _finish(path: Path | None) -> None:
    """Leave a declared emissions output even when nothing was tracked (tracking off, or no
    training because weights were imported): a CSV with the columns and no rows."""
    if path is not None and not path.exists():
        from layerprune.emissions import COLUMNS
        from layerprune.io import write_text

        write_text(path, ",".join(COLUMNS) + "\n")


def emissions_path(args: argparse.Namespace) -> Path | None:
    """The ``--emissions`` CSV to track into (emptied of an earlier run's rows), or None when tracking is off."""
    path = _fresh(args.emissions)
    return None if args.no_emissions else path


def finish_emissions(args: argparse.Namespace) -> None:
    _finish(args.emissions)


#: Keys of the config's evaluation section that the in-job evaluation of prune and finetune takes.
_IN_JOB_EVALUATION = ("batch_size", "latency_batch_size", "latency_repeats")


def add_evaluation_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the stages that also evaluate the model they write (prune, finetune) as
    ``layerprune evaluate`` does: the workflow then starts one process per model, not two
    (starting Python, torch and the data costs more than evaluating a small model)."""
    parser.add_argument("--metrics", type=Path, default=None, help="evaluate the written model into this metrics JSON")
    parser.add_argument(
        "--inference-emissions", type=Path, default=None, help="CodeCarbon CSV of that test-set inference pass"
    )
    parser.add_argument(
        "--evaluation",
        type=section_arg("evaluation"),
        default="{}",
        help="the config's evaluation section (batch_size, latency_batch_size, latency_repeats)",
    )


def evaluate_written_model(args: argparse.Namespace, model: torch.nn.Module, preprocessing: dict, path: Path) -> None:
    """With ``--metrics``: the metrics of ``model`` (saved at ``path``), as ``layerprune evaluate`` writes them."""
    if args.metrics is None:
        return
    from layerprune.evaluation import evaluate_model
    from layerprune.io import write_json

    csv = _fresh(args.inference_emissions)
    metrics = evaluate_model(
        model,
        preprocessing,
        args.data,
        emissions_csv=None if args.no_emissions else csv,
        country_iso_code=args.country,
        # the timing step's keys (rounds, threads, energy windows) belong to `layerprune latency`
        **{k: v for k, v in args.evaluation.items() if k in _IN_JOB_EVALUATION},
    )
    write_json(args.metrics, {**metrics, "model": str(path)})
    _finish(csv)
