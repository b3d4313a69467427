"""``layerprune config``: check an experiment config and show it as resolved, every default filled in.

``layerprune config configs/cifar10-resnet56.yaml`` checks a config file without Snakemake, as the workflow does
before any job (the schema, then what the config names: checkpoint, data files, budgets; see
:mod:`layerprune.checks`), and prints the resolved config (a problem exits 2 naming the key); the workflow
writes the config it ran with, as a page of the report.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import yaml

from layerprune.checks import check_inputs
from layerprune.cli._common import json_arg
from layerprune.config import load_config, validate_config
from layerprune.io import write_text


def config_page(config: dict, text: str) -> str:
    """A self-contained HTML page showing ``text`` (the config as YAML)."""
    title = f"Config of experiment {html.escape(str(config.get('experiment', '')))}"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f'{title}</title></head>\n<body style="font-family: sans-serif">\n<h1>{title}</h1>\n'
        "<p>As the workflow ran it: the config file and any <code>--config</code> overrides, with every "
        "default of <code>workflow/schemas/config.schema.yaml</code> filled in.</p>\n"
        f"<pre>{html.escape(text)}</pre>\n</body></html>\n"
    )


def _run(args: argparse.Namespace) -> None:
    if (args.file is None) == (args.json is None):
        raise ValueError("give a config FILE or --json (the config as JSON), one of the two")
    if args.file is not None:
        config = load_config(args.file)
        check_inputs(config)  # as the workflow does before any job
    else:  # the workflow's report page, of a config it has already checked
        config = validate_config(args.json)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    if args.out is None and args.html is None:
        sys.stdout.write(text)
    if args.out is not None:
        write_text(args.out, text)
    if args.html is not None:
        write_text(args.html, config_page(config, text))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="check a config and show it with every default filled in")
    p.add_argument("file", nargs="?", type=Path, default=None, help="an experiment config (YAML)")
    p.add_argument("--json", type=json_arg, default=None, help="the config as JSON, instead of a file")
    p.add_argument("--out", type=Path, default=None, help="write the resolved config (YAML) here instead of stdout")
    p.add_argument("--html", type=Path, default=None, help="also write it as an HTML page (for the report)")
    p.set_defaults(func=_run)
