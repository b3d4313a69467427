"""The ``layerprune`` command: one subcommand per workflow stage.

Each subcommand parses its flags, calls the library and writes its outputs; the
Snakemake rules call these with every path as a flag, and a researcher can run any
stage alone. Stage modules register themselves in :data:`STAGES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

__all__ = ["main", "build_parser"]

# module name under layerprune.cli -> its subcommands are added by module.register(subparsers)
STAGES = (
    "info",
    "baseline",
    "evaluate",
    "extract",
    "similarity",
    "segment",
    "prune",
    "finetune",
    "robustness",
    "summarize",
    "figures",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerprune",
        description="Similarity-guided layer pruning: every workflow stage as a subcommand.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        try:
            module = importlib.import_module(f"layerprune.cli.{stage}")
        except ModuleNotFoundError as err:
            if err.name == f"layerprune.cli.{stage}":
                continue  # stage not built in this version
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError, TypeError, RuntimeError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"layerprune {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
