"""A malformed config stops the workflow before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("methods=[cka,sgpl]", ["'sgpl' is not one of", "'sglp'", "methods"]),  # a misspelt criterion
        ("trian={epochs: 1}", ["'trian' was unexpected"]),  # a misspelt section
        ("budgets=[blocks2,macs140]", ["'macs140' does not match", "budgets"]),  # a bad value
    ],
)
def test_bad_config_fails_before_any_job(tmp_path: Path, override: str, expected: list[str]) -> None:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(REPO / "config.yaml"), "--cores", "1", "--config", override,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output, output[-3000:]
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "logs").exists()
