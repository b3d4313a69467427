"""Physical removal of prunable units.

Like nanoGPT's ``crop_block_size``, surgery keeps the architecture description and the
weights in step in one place: the stage containers lose the removed units (so the
state-dict keys renumber exactly as a fresh model with the new ``blocks_per_stage``), and
the returned model rebuilds from its own ``spec()``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from layerprune.models.registry import build_model
from layerprune.models.units import is_removable, unit_module, unit_name, unit_names

__all__ = ["remove_units"]


def remove_units(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Returns a copy of ``model`` without units ``names``; ``model`` is not modified.

    The result computes exactly what ``model`` computes with those units bypassed. A causal
    language model (:class:`layerprune.lm.CausalLM`) loses decoder layers through
    :func:`layerprune.surgery.decoder.remove_decoder_layers`.

    Raises:
        KeyError: an unknown unit name.
        ValueError: a duplicate name, a unit that changes the shape (not removable), or
            every unit of a stage.
    """
    if getattr(model, "family", None) == "causal_lm":
        from layerprune.surgery.decoder import remove_decoder_layers

        return remove_decoder_layers(model, names)
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"unit names to remove contain duplicates: {names}")
    for name in names:
        if not is_removable(unit_module(model, name)):
            raise ValueError(f"unit {name!r} downsamples its input; only removable units can go")
    drop = set(names)
    for stage in model.stage_names:
        if all(unit_name(stage, i) in drop for i in range(len(getattr(model, stage)))):
            raise ValueError(
                f"removing {sorted(drop)} would leave stage {stage!r} without units; "
                "every stage keeps at least one unit (pruning.min_units_per_stage >= 1)"
            )
    pruned = copy.deepcopy(model)
    for stage in pruned.stage_names:
        container = getattr(pruned, stage)
        kept = [unit for i, unit in enumerate(container) if unit_name(stage, i) not in drop]
        setattr(pruned, stage, nn.Sequential(*kept))
    pruned.blocks_per_stage = [len(getattr(pruned, s)) for s in pruned.stage_names]
    _check_rebuilds(pruned)
    return pruned


def _check_rebuilds(pruned: nn.Module) -> None:
    """The smaller model must load into a fresh model built from its spec (what a checkpoint does)."""
    fresh = build_model(pruned.spec())
    fresh.load_state_dict(pruned.state_dict())
    if unit_names(fresh) != unit_names(pruned):
        raise RuntimeError("surgery produced a model whose units do not match its spec")
    del fresh
