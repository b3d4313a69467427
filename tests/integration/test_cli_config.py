"""``layerprune config``: a config checked without Snakemake, shown with every default filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from layerprune.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_config_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", str(REPO / "config.yaml")]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    given = yaml.safe_load((REPO / "config.yaml").read_text())
    assert resolved["experiment"] == given["experiment"] and resolved["methods"] == given["methods"]
    assert resolved["calibration"]["seed"] == 0  # a default the file does not set


def test_config_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nmethods: [cak]\n")
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "methods.0: 'cak' is not one of" in err and "'cka'" in err


def test_config_writes_yaml_and_a_report_page(tmp_path: Path) -> None:
    config = {
        "experiment": "mine",
        "data": {"name": "digits", "root": "a<b"},
        "methods": ["cka"],
        "budgets": ["blocks1"],
    }
    out, page = tmp_path / "config.yaml", tmp_path / "config.html"
    assert main(["config", "--json", json.dumps(config), "--out", str(out), "--html", str(page)]) == 0
    assert yaml.safe_load(out.read_text())["data"]["root"] == "a<b"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "experiment mine" in text and "methods:" in text
    assert "root: a&lt;b" in text  # the YAML is escaped, not markup
    assert main(["config", str(REPO / "config.yaml"), "--json", "{}"]) == 2  # one source, not two


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("experiment: x\nmethods: [cka\nbudgets: [blocks1]\n")  # the list is never closed
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}:3:" in err[0] and "not valid YAML" in err[0], err
