"""Consensus votes over exactly the configured ``similarity.metrics``, as the workflow wires it.

The rules pass the configured metrics both to ``layerprune similarity --metrics`` (the candidate table)
and to ``layerprune prune --consensus-metrics``; a dry run shows the commands, and the same library
calls then run on the trained digits model.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from digits_resnet import INPUT_SIZE

from layerprune.pruning import prune_model, score_units
from layerprune.selection import Budget
from layerprune.similarity.tables import candidate_distances

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("metrics", [["procrustes"], ["bures", "cca_angular"]])
def test_workflow_passes_exactly_the_configured_metrics(tmp_path: Path, metrics: list[str]) -> None:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(REPO / "config.yaml"), "--cores", "1", "--dry-run", "--printshellcmds",
        "--config", f"similarity={{metrics: [{', '.join(metrics)}]}}", "methods=[consensus]", "budgets=[blocks2]",
        "--", "results/quick-digits/pruned/consensus/blocks2/seed0/model.pt",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=True)
    listed = " ".join(metrics)
    assert re.search(rf"layerprune similarity .*--metrics {listed} ", result.stdout), result.stdout[-3000:]
    assert re.search(rf"--consensus-metrics {listed} ", result.stdout), result.stdout[-3000:]


def test_consensus_over_procrustes_alone_ranks_like_procrustes(trained, representations) -> None:
    metrics = ["procrustes"]
    table = candidate_distances(representations, metrics)  # what the similarity rule writes
    assert set(table["metric"]) == {"procrustes"}
    scores = score_units(
        "consensus", trained.model, representations.candidates,
        candidate_distances=table, consensus_metrics=metrics,
    )  # fmt: skip
    procrustes = table.set_index("unit")["distance"]
    assert procrustes.nunique() == len(procrustes)  # a strict ranking to compare with
    by_procrustes = sorted(representations.candidates, key=procrustes.__getitem__)
    assert sorted(scores, key=scores.__getitem__) == by_procrustes
    assert [scores[u] for u in by_procrustes] == list(range(1, len(by_procrustes) + 1))
    # and the pruning stage removes procrustes's closest unit first
    result = prune_model(
        "consensus", Budget.blocks(1), trained.model, INPUT_SIZE, min_units_per_stage=1,
        candidate_distances=table, consensus_metrics=metrics,
    )  # fmt: skip
    assert result.plan["removed"] == [by_procrustes[0]]
