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
import re
import signal
import sys
import threading

__all__ = ["COMMANDS", "build_parser", "exit_on_sigterm", "main", "plain_text"]

# subcommand -> module under layerprune.cli that registers it (module.register(subparsers))
COMMANDS = {
    "config": "config",
    "info": "info",
    "baseline": "baseline",
    "evaluate": "evaluate",
    "latency": "latency",
    "extract": "extract",
    "similarity": "similarity",
    "segment": "segment",
    "prune": "prune",
    "finetune": "finetune",
    "corrupt": "robustness",
    "robustness": "robustness",
    "shortcut": "shortcut",
    "summarize": "summarize",
    "figures": "figures",
    "import-llama2c": "lm",
    "perplexity": "lm",
    "drop-one": "lm",
    "export-hf": "lm",
}


def plain_text(doc: str | None) -> str:
    """A module docstring as ``--help`` text: reStructuredText roles and literals shown as plain words."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc or "")
    return text.replace("``", "")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that subcommand's module is imported
    (each workflow job runs one subcommand, and importing every stage costs seconds)."""
    parser = argparse.ArgumentParser(
        prog="layerprune",
        description="Similarity-guided layer pruning: every workflow stage as a subcommand.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"layerprune.cli.{module}").register(subparsers)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def exit_on_sigterm() -> None:
    """Turns SIGTERM into ``SystemExit(143)``.

    SLURM's ``scancel`` and Snakemake stop jobs with SIGTERM, which by default ends Python at
    once, skipping the ``except``/``finally`` blocks that remove an atomic write's temporary
    file. As an exception it unwinds: a killed job leaves no half-written file behind.
    """

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        exit_on_sigterm()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
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
