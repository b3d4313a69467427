"""A ``prune_model`` job depends only on what its criterion reads (the registry record), as Snakemake sees it.

Every output of a small DAG (sglp, random, cka and the fine-tuning after them) is created and recorded as up to
date (``--touch``, which stores the params of each job as a real run does); then a config key changes and a dry
run lists the jobs Snakemake would rerun. Nothing is trained: the test checks the wiring, in seconds per call.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
METHODS = ("sglp", "random", "cka")
TARGETS = [f"results/quick-digits/finetuned/{m}/blocks2/seed0/metrics.json" for m in METHODS]


def _snakemake(workdir: Path, *args: str, change: dict | None = None) -> str:
    """Snakemake's output on the small DAG, with the config changed by ``change`` (merged as a second config file)."""
    changed = workdir / "change.yaml"
    changed.write_text(yaml.safe_dump({"methods": list(METHODS), "budgets": ["blocks2"], **(change or {})}))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(REPO / "config.yaml"), str(changed), "--cores", "1", *args, "--", *TARGETS,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _pending(output: str, rule: str) -> set[str]:
    """The methods whose ``rule`` job a dry run lists (``--printshellcmds`` shows its command)."""
    flag = {"prune_model": "prune", "finetune_model": "finetune"}[rule]
    return set(re.findall(rf"layerprune {flag} .*?--method (\w+)", output)) | set(
        re.findall(rf"layerprune {flag} .*?/pruned/(\w+)/", output)
    )


@pytest.fixture(scope="module")
def up_to_date(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder whose outputs all exist and are recorded as up to date."""
    workdir = tmp_path_factory.mktemp("reruns")
    summary = _snakemake(workdir, "--summary")
    files = [line.split("\t")[0] for line in summary.splitlines() if line.startswith("results/")]
    assert any("segments.json" in f for f in files), summary[-2000:]
    for name in files:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).touch()
    _snakemake(workdir, "--touch", "--forceall")
    assert "Nothing to be done" in _snakemake(workdir, "--dry-run")
    return workdir


@pytest.mark.slow
def test_changing_the_segments_reruns_only_the_criteria_that_read_them(up_to_date: Path) -> None:
    output = _snakemake(up_to_date, "--dry-run", "--printshellcmds", change={"pruning": {"segments": 2}})
    assert "layerprune segment " in output, output[-3000:]
    assert _pending(output, "prune_model") == {"sglp"}, output[-3000:]


@pytest.mark.slow
def test_changing_finetune_epochs_reruns_no_one_shot_prune_job(up_to_date: Path) -> None:
    output = _snakemake(up_to_date, "--dry-run", "--printshellcmds", change={"finetune": {"epochs": 3}})
    assert _pending(output, "prune_model") == set(), output[-3000:]
    assert _pending(output, "finetune_model") == set(METHODS), output[-3000:]


@pytest.mark.slow
def test_changing_the_precision_reaches_extraction_and_the_cka_criterion_only(up_to_date: Path) -> None:
    output = _snakemake(up_to_date, "--dry-run", "--printshellcmds", change={"similarity": {"precision": "float64"}})
    assert re.search(r"layerprune extract .*--precision float64", output), output[-3000:]
    commands = re.findall(r"layerprune prune .*", output)
    assert any("--method cka" in c and "--precision float64" in c for c in commands), output[-3000:]
    assert not any("--precision" in c for c in commands if "--method cka" not in c), output[-3000:]
    assert _pending(output, "prune_model") == {"sglp", "cka"}, output[-3000:]  # random reads no representations
