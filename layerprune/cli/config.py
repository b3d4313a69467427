"""``layerprune config``: check an experiment config and show it as resolved, every default filled in.

``layerprune config configs/cifar10-resnet56.yaml`` checks a config file against the schema without
Snakemake and prints the resolved config (a typo or bad value exits 2 naming the key); the workflow
writes the config it ran with, and the versions of the key packages, as a page of the report.
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from layerprune.cli._common import json_arg
from layerprune.config import load_config, validate_config
from layerprune.io import write_text

#: Packages whose versions decide the numbers, recorded on the report's config page.
KEY_PACKAGES = (
    "layerprune",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "foolbox",
    "codecarbon",
    "snakemake",
)
LOCK = Path(__file__).resolve().parents[2] / "envs" / "requirements.lock"


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """Package -> version pinned in a requirements lock (``name==version`` lines); empty without the file."""
    if not lock.is_file():
        return {}
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock.read_text(), flags=re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def package_versions(names: Sequence[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (and Python), from the package metadata (no imports)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _versions_table(versions: dict[str, str], locked: dict[str, str]) -> str:
    rows = []
    for name, version in versions.items():
        pin = locked.get(name, "")
        state = "" if not pin else ("as locked" if pin == version else f"differs from the lock ({pin})")
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(version)}</td><td>{html.escape(state)}</td></tr>"
        )
    return (
        "<table><tr><th>package</th><th>version</th><th>envs/requirements.lock</th></tr>" + "".join(rows) + "</table>"
    )


def config_page(config: dict, text: str, versions: dict[str, str] | None = None) -> str:
    """A self-contained HTML page showing ``text`` (the config as YAML) and the resolved package ``versions``."""
    title = f"Config of experiment {html.escape(str(config.get('experiment', '')))}"
    versions_html = ""
    if versions:
        versions_html = (
            "<h2>Package versions</h2>\n<p>Resolved in the environment that wrote this page, beside the exact "
            "versions of <code>envs/requirements.lock</code> (which <code>setup.sh</code> and the conda "
            f"environment install).</p>\n{_versions_table(versions, locked_versions())}\n"
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{title}</title><style>td,th{{padding:0.15em 0.8em;text-align:left}}</style></head>\n"
        '<body style="font-family: sans-serif">\n'
        f"<h1>{title}</h1>\n"
        "<p>As the workflow ran it: the config file and any <code>--config</code> overrides, with every "
        "default of <code>workflow/schemas/config.schema.yaml</code> filled in.</p>\n"
        f"<pre>{html.escape(text)}</pre>\n{versions_html}</body></html>\n"
    )


def _run(args: argparse.Namespace) -> None:
    if (args.file is None) == (args.json is None):
        raise ValueError("give a config FILE or --json (the config as JSON), one of the two")
    config = load_config(args.file) if args.file is not None else validate_config(args.json)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    if args.out is None and args.html is None:
        sys.stdout.write(text)
    if args.out is not None:
        write_text(args.out, text)
    if args.html is not None:
        write_text(args.html, config_page(config, text, package_versions()))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="check a config and show it with every default filled in")
    p.add_argument("file", nargs="?", type=Path, default=None, help="an experiment config (YAML)")
    p.add_argument("--json", type=json_arg, default=None, help="the config as JSON, instead of a file")
    p.add_argument("--out", type=Path, default=None, help="write the resolved config (YAML) here instead of stdout")
    p.add_argument("--html", type=Path, default=None, help="also write it as an HTML page (for the report)")
    p.set_defaults(func=_run)
