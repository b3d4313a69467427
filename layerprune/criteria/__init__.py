"""Pruning criteria: a registry of named scoring rules over removable units (lower = safer).

Each criterion is one :class:`Criterion` record (:mod:`layerprune.criteria.catalog`); look one up
with :func:`get_criterion`. The pure scoring functions are in :mod:`layerprune.criteria.scores`
(imported lazily: this package imports no torch, so the workflow can read the registry cheaply).
"""

from layerprune.criteria import catalog as _catalog  # noqa: F401  (registers the criteria)
from layerprune.criteria.registry import (
    CALIBRATION,
    CANDIDATES,
    INPUTS,
    REPRESENTATIONS,
    SEGMENTS,
    Criterion,
    ScoringInputs,
    criteria,
    criterion_names,
    get_criterion,
    register_criterion,
)

__all__ = [
    "CALIBRATION",
    "CANDIDATES",
    "INPUTS",
    "REPRESENTATIONS",
    "SEGMENTS",
    "Criterion",
    "ScoringInputs",
    "criteria",
    "criterion_names",
    "get_criterion",
    "register_criterion",
]
