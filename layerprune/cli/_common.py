"""Flags shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["json_arg", "add_data_args", "set_threads"]


def json_arg(value: str) -> Any:
    """A JSON/YAML object given inline or as a file path (``@file.yaml`` or a path ending .json/.yaml)."""
    path = value[1:] if value.startswith("@") else value
    if value.startswith("@") or Path(path).suffix in (".json", ".yaml", ".yml"):
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"file {path} not found")
        return yaml.safe_load(Path(path).read_text())
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {value[:80]}") from None


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=json_arg,
        default={"name": "digits"},
        help="the config's data section as JSON, or @file.yaml (default: digits)",
    )


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def add_emissions_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--emissions", type=Path, default=None, help="CodeCarbon tidy CSV to write")
    parser.add_argument(
        "--no-emissions",
        action="store_true",
        help="do not track; the --emissions file is still written, with a header only",
    )
    parser.add_argument("--country", default="USA", help="ISO 3166-1 alpha-3 code for CodeCarbon")


def emissions_path(args: argparse.Namespace) -> Path | None:
    """The CSV to track into, or None when tracking is off.

    A file left by an earlier run of the same command is removed first: tracking appends one
    row per phase, and a stage's CSV must describe that run alone (a resumed training run
    carries its earlier energy forward itself), or summing its rows would count twice.
    """
    if args.emissions is not None and args.emissions.exists():
        args.emissions.unlink()
    return None if args.no_emissions else args.emissions


def finish_emissions(args: argparse.Namespace) -> None:
    """Leave the declared output even when nothing was tracked (tracking off, or no training
    because weights were imported): a CSV with the columns and no rows."""
    if args.emissions is not None and (args.no_emissions or not args.emissions.exists()):
        from layerprune.emissions import COLUMNS
        from layerprune.io import write_text

        write_text(args.emissions, ",".join(COLUMNS) + "\n")
