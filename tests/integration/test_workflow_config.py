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


BAD_CONFIGS = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))


def _named_files(workdir: Path) -> None:
    """The files the bad configs name, relative to the working directory: two checkpoints that do not fit the
    configured model, and a CIFAR-100 folder whose files are present (the checkpoint is what is wrong)."""
    from layerprune.models import get_model, save_checkpoint

    for name, arch, channels, side in (
        ("resnet32_digits.pt", "resnet32", 1, 16),
        ("resnet20_cifar10.pt", "resnet20", 3, 32),
    ):
        preprocessing = {"mean": [0.5] * channels, "std": [0.25] * channels, "input_size": [channels, side, side]}
        model = get_model(arch, num_classes=10, in_channels=channels)
        save_checkpoint(workdir / name, model, preprocessing={**preprocessing, "num_classes": 10})
    cifar = workdir / "fake-cifar100" / "cifar-100-python"
    cifar.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (cifar / name).write_bytes(b"")


@pytest.mark.slow  # one Snakemake start (torch, the checks) per case: 7-37 s each on the shared 2-core machine
@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=lambda p: p.stem)
def test_dry_run_rejects_each_bad_input_naming_key_and_value(tmp_path: Path, bad: Path) -> None:
    """The config cases that used to fail only inside a job (or after the whole run) stop `snakemake -n`."""
    expected = bad.read_text().splitlines()[0].removeprefix("# expect: ")
    _named_files(tmp_path)
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(REPO / "config.yaml"), str(bad), "--cores", "1", "--dry-run",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    assert "invalid config:" in output and len(output.splitlines()) < 20, output  # short: no schema dump
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
