"""Consensus votes over exactly the configured ``similarity.metrics``, as the workflow wires it.

The rules pass ``consensus_metrics()`` (workflow/rules/common.smk) both to ``layerprune similarity --metrics``
(the candidate table) and to ``layerprune prune --consensus-metrics``; here that helper runs on a config and
its output drives the same library calls, on the trained digits model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from digits_resnet import INPUT_SIZE

from layerprune.config import validate_config
from layerprune.pruning import prune_model, score_units
from layerprune.selection import Budget
from layerprune.similarity.tables import candidate_distances

COMMON_SMK = Path(__file__).resolve().parents[3] / "workflow" / "rules" / "common.smk"


def consensus_metrics(config: dict) -> list[str]:
    """Runs common.smk's ``consensus_metrics()`` (plain Python) on ``config``; returns the metrics it passes."""
    source = COMMON_SMK.read_text()
    match = re.search(r"^def consensus_metrics\(\):\n(?:(?:    .*)?\n)+", source, flags=re.MULTILINE)
    assert match, "consensus_metrics() not found in common.smk"
    namespace: dict = {"config": config}
    exec(match.group(0), namespace)  # noqa: S102 - our own workflow source, to test the helper the rules call
    return namespace["consensus_metrics"]().split()


@pytest.mark.parametrize(
    "metrics", [["procrustes"], ["bures", "cca_angular"], ["cka", "procrustes", "cca", "bures", "wasserstein"]]
)
def test_helper_passes_exactly_the_configured_metrics(metrics: list[str]) -> None:
    config = validate_config({"experiment": "x", "similarity": {"metrics": metrics}})
    assert consensus_metrics(config) == metrics


def test_consensus_over_procrustes_alone_ranks_like_procrustes(trained, representations) -> None:
    config = validate_config({"experiment": "x", "similarity": {"metrics": ["procrustes"]}})
    metrics = consensus_metrics(config)
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
