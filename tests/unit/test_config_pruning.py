"""The schema's budgets, pruning and similarity sections agree with what the stages accept at run time.

A budget string the schema lets through must parse (``Budget.parse``), and one the parser rejects must fail
validation, so a bad budget stops the workflow before any job runs rather than in the prune job.
"""

from __future__ import annotations

import pytest

from layerprune.config import ConfigError, validate_config
from layerprune.segmentation import DEFAULT_THRESHOLD
from layerprune.selection import Budget
from layerprune.similarity.distances import DISTANCES

BUDGETS = [
    "blocks0", "blocks00", "blocks01", "blocks1", "blocks9", "blocks10", "blocks120",
    "macs0", "macs00", "macs05", "macs1", "macs5", "macs50", "macs99", "macs100", "macs",
    "blocks", "blocks2.5", "Blocks2", "macs-5",
    "params0", "params05", "params1", "params30", "params99", "params100", "params", "param30", "Params30",
]  # fmt: skip


def _parses(budget: str) -> bool:
    try:
        Budget.parse(budget)
    except ValueError:
        return False
    return True


def _validates(budget: str) -> bool:
    try:
        validate_config({"experiment": "x", "budgets": [budget]})
    except ConfigError as err:
        assert "budgets.0" in str(err) and "does not match" in str(err), err
        return False
    return True


@pytest.mark.parametrize("budget", BUDGETS)
def test_schema_accepts_exactly_the_budgets_the_parser_accepts(budget: str) -> None:
    assert _validates(budget) == _parses(budget)


@pytest.mark.parametrize("budget", ["blocks0", "macs0", "macs05"])
def test_zero_and_zero_padded_budgets_fail_validation(budget: str) -> None:
    with pytest.raises(ConfigError, match=rf"budgets\.0: '{budget}' does not match"):
        validate_config({"experiment": "x", "budgets": [budget]})


def test_segment_threshold_default_and_bounds() -> None:
    config = validate_config({"experiment": "x"})
    assert config["pruning"]["segment_threshold"] == DEFAULT_THRESHOLD == 0.1
    assert (
        validate_config({"experiment": "x", "pruning": {"segment_threshold": 0.0}})["pruning"]["segment_threshold"]
        == 0.0
    )
    for bad, problem in [(1.0, "greater than or equal to the maximum"), (-0.1, "less than the minimum")]:
        with pytest.raises(ConfigError, match=rf"pruning\.segment_threshold: {bad} is {problem}"):
            validate_config({"experiment": "x", "pruning": {"segment_threshold": bad}})


def test_every_registered_distance_is_a_valid_metric() -> None:
    config = validate_config({"experiment": "x", "similarity": {"metrics": sorted(DISTANCES)}})
    assert config["similarity"]["metrics"] == sorted(DISTANCES)
    assert "cca_angular" in DISTANCES
    with pytest.raises(ConfigError, match=r"similarity\.metrics\.0: 'cca_angle' is not one of"):
        validate_config({"experiment": "x", "similarity": {"metrics": ["cca_angle"]}})
