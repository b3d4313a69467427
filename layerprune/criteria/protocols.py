"""The papers' protocols around the criteria (config ``pruning.protocol``), where they differ from layerprune's.

Each similarity criterion has a ``layerprune`` protocol (the default) and a ``paper`` protocol that follows the
paper and its reference code as closely as the data allow, minus the reference's confirmed bugs. The formulas
are shared; what changes is which units are candidates, the schedule and a few settings. docs/fidelity.md tables
every step. This module holds the pure rules; :mod:`layerprune.pruning` and the CLI call them.

Pons et al. (2024), ``cka``, paper protocol:

- the first unit of the first stage is never a candidate (the reference's list of prunable blocks starts at the
  second block: 24 candidates on ResNet-56 instead of 25),
- every stage keeps at least 2 units,
- one unit is removed per step, the smaller model rescored, and fine-tuned after every step.

The reference fine-tunes the model *before* it rebuilds the smaller network (the removed block is zeroed, not
gone, while fine-tuning); layerprune removes the unit and then fine-tunes the smaller network, so that every
step fine-tunes exactly the network it keeps (see docs/fidelity.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from layerprune.models.units import Unit

__all__ = [
    "PONS_MIN_UNITS_PER_STAGE",
    "PROTOCOLS",
    "effective_pruning",
    "pons_settings",
    "pons_units",
    "protocol_of",
]

#: values of every ``pruning.protocol.<criterion>`` key
PROTOCOLS = ("layerprune", "paper")

#: Pons et al.'s reference keeps at least this many units in every stage.
PONS_MIN_UNITS_PER_STAGE = 2


def protocol_of(pruning: Mapping, method: str) -> str:
    """The protocol of ``method`` in a config's ``pruning`` section (``layerprune`` when not set).

    Raises:
        ValueError: on a value other than ``layerprune`` or ``paper``.
    """
    value = (pruning.get("protocol") or {}).get(method, "layerprune")
    if value not in PROTOCOLS:
        raise ValueError(f"pruning.protocol.{method}={value!r} is not a protocol; use one of {list(PROTOCOLS)}")
    return value


def pons_units(units: Sequence[Unit]) -> list[Unit]:
    """``units`` with the first unit of the first stage marked not removable (Pons et al.'s candidate list).

    The other units are returned unchanged, in the same order; selection then never picks that unit, while it
    still counts toward its stage's size.
    """
    if not units:
        return []
    first_stage = min(u.stage for u in units)
    first = min((u for u in units if u.stage == first_stage), key=lambda u: u.index)
    return [dataclasses.replace(u, removable=False) if u is first else u for u in units]


def pons_settings(pruning: Mapping) -> dict:
    """The iterative settings Pons et al.'s protocol fixes, from a config's ``pruning`` section.

    Returns:
        ``iterative`` (True), ``units_per_step`` (1), ``min_units_per_stage`` (at least 2; a larger configured
        value is kept) and ``finetune_epochs_between`` (the configured value, which must be >= 1).

    Raises:
        ValueError: when ``pruning.finetune_epochs_between`` is 0: the protocol fine-tunes after every step.
    """
    epochs = int(pruning.get("finetune_epochs_between", 0))
    if epochs < 1:
        raise ValueError(
            f"pruning.protocol.cka=paper fine-tunes after every removed unit, but pruning.finetune_epochs_between="
            f"{epochs}; set it to at least 1 (or use pruning.protocol.cka: layerprune)"
        )
    return {
        "iterative": True,
        "units_per_step": 1,
        "min_units_per_stage": max(PONS_MIN_UNITS_PER_STAGE, int(pruning.get("min_units_per_stage", 2))),
        "finetune_epochs_between": epochs,
    }


def effective_pruning(pruning: Mapping, method: str) -> dict:
    """The ``pruning`` section as ``method`` runs it under its protocol.

    For ``cka`` under the paper protocol, :func:`pons_settings` overrides the schedule keys (so that the
    criterion registry sees an iterative, fine-tuning run and the workflow passes what that needs); every other
    criterion and protocol gets the section unchanged (as a new dict).
    """
    pruning = dict(pruning)
    if method == "cka" and protocol_of(pruning, method) == "paper":
        pruning.update(pons_settings(pruning))
    return pruning
