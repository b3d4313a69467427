"""Prunable units: the one description of a model that criteria, hooks and surgery share.

A *unit* is a residual block that depth pruning may bypass or remove. A model plugs in
by exposing, as :class:`CifarResNet` and :class:`TorchvisionResNet` do:

- ``stage_names``: attribute names of the ``nn.Sequential`` containers holding its units,
  in forward order;
- ``forward_stem(x)``, ``forward_penultimate(h)`` (pool + flatten: the classifier's
  input) and ``forward_head(features)``, such that ``model(x)`` equals the stem, then every
  unit in order, then penultimate and head;
- ``spec()``: its architecture as plain data, with ``blocks_per_stage``.

Nothing in criteria or surgery special-cases an architecture: they see only this.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from layerprune.models.cost import count_macs

__all__ = [
    "Unit",
    "bypass",
    "check_prunable",
    "forward_from",
    "forward_units",
    "get_units",
    "is_removable",
    "parse_unit_name",
    "record_outputs",
    "renumber_after_removal",
    "sample_rows",
    "unit_module",
    "unit_modules",
    "unit_name",
    "unit_names",
]


@dataclass(frozen=True)
class Unit:
    """One prunable unit of a model.

    Attributes:
        name: dotted module name, e.g. ``"layer2.3"``.
        stage: 0-based stage index.
        index: position within the stage.
        position: position among all units, in forward order.
        removable: the unit's shortcut is the identity (:func:`is_removable`), so it can act
            as identity (its input and output shapes are equal).
        macs: multiply-accumulates of one forward pass of one input through this unit.
        params: parameters of the unit.
    """

    name: str
    stage: int
    index: int
    position: int
    removable: bool
    macs: int
    params: int


def check_prunable(model: nn.Module) -> None:
    """Raises a TypeError naming what is missing when ``model`` cannot be described in units."""
    missing = [
        attr
        for attr in ("stage_names", "forward_stem", "forward_penultimate", "forward_head", "spec")
        if not hasattr(model, attr)
    ]
    if missing:
        raise TypeError(
            f"{type(model).__name__} does not describe its prunable units (missing {missing}); "
            "build it with layerprune.models.get_model or add these members (see layerprune.models.units)"
        )


def unit_name(stage: str, index: int) -> str:
    """The name of unit ``index`` of stage container ``stage``: ``unit_name("layer2", 3) == "layer2.3"``.

    The one place unit names are built (:func:`parse_unit_name` is the one place they are read)."""
    return f"{stage}.{index}"


def parse_unit_name(name: str) -> tuple[str, int]:
    """``"layer2.3"`` -> ``("layer2", 3)``.

    Raises:
        ValueError: ``name`` is not ``<stage>.<index>``.
    """
    stage, _, index = name.rpartition(".")
    if not stage or not index.isdigit():
        raise ValueError(f"{name!r} is not a unit name; expected <stage>.<index>, e.g. 'layer2.3'")
    return stage, int(index)


def unit_names(model: nn.Module) -> list[str]:
    """Names of all units in forward order, e.g. ``["layer1.0", ..., "layer3.8"]``."""
    check_prunable(model)
    return [unit_name(stage, i) for stage in model.stage_names for i in range(len(getattr(model, stage)))]


def unit_module(model: nn.Module, name: str) -> nn.Module:
    """The module of unit ``name``; a KeyError lists the valid names."""
    try:
        stage, index = parse_unit_name(name)
    except ValueError:
        stage, index = "", -1
    if stage in getattr(model, "stage_names", ()):
        container = getattr(model, stage)
        if index < len(container):
            return container[index]
    raise KeyError(f"no unit named {name!r}; the model's units are {unit_names(model)}")


def unit_modules(model: nn.Module) -> list[nn.Module]:
    """The unit modules, in forward order."""
    return [unit for stage in model.stage_names for unit in getattr(model, stage)]


def renumber_after_removal(names: Sequence[str], removed: Sequence[str]) -> dict[str, str]:
    """How unit names change when ``removed`` are taken out: surviving name -> its name in the smaller model.

    Surgery keeps each stage's survivors in order and renumbers them from 0 (as a fresh model with the new
    ``blocks_per_stage`` names them): removing ``layer1.1`` renames ``layer1.2`` to ``layer1.1``.

    Args:
        names: every unit name of the model before the removal.
        removed: the names removed (a subset of ``names``).
    """
    unknown = sorted(set(removed) - set(names))
    if unknown:
        raise KeyError(f"cannot remove {unknown}: not units of the model ({list(names)})")
    kept: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        if name not in removed:
            stage, index = parse_unit_name(name)
            kept.setdefault(stage, []).append((index, name))
    return {old: unit_name(stage, new) for stage, units in kept.items() for new, (_, old) in enumerate(sorted(units))}


def is_removable(module: nn.Module) -> bool:
    """Whether a unit can be bypassed or removed: its shortcut is the identity, so it maps its input shape to itself.

    CIFAR ResNet blocks say so with an ``nn.Identity`` ``shortcut`` (option A's downsampling shortcut is not one),
    torchvision's with ``downsample is None``; another family's unit module can declare a ``removable``
    attribute. :func:`get_units` checks the answer against the shapes of a forward pass.
    """
    shortcut = getattr(module, "shortcut", None)
    if shortcut is not None:
        return isinstance(shortcut, nn.Identity)
    if hasattr(module, "downsample"):
        return module.downsample is None
    return bool(getattr(module, "removable", False))


def get_units(model: nn.Module, input_size: Sequence[int]) -> list[Unit]:
    """Describes every unit of ``model`` for inputs of shape ``input_size`` (C, H, W).

    Shapes and MACs come from one forward pass of a zero input in eval mode, so they are
    exact for this input size.
    """
    check_prunable(model)
    names = unit_names(model)
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    handles = []
    for name in names:
        module = unit_module(model, name)

        def hook(_m: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
            shapes[name] = (args[0].shape, out.shape)

        handles.append(module.register_forward_hook(hook))
    try:
        _, per_module = count_macs(model, input_size)
    finally:
        for h in handles:
            h.remove()

    units = []
    for position, name in enumerate(names):
        stage_name, index = parse_unit_name(name)
        module = unit_module(model, name)
        in_shape, out_shape = shapes[name]
        removable = is_removable(module)
        if removable and in_shape != out_shape:
            raise RuntimeError(
                f"unit {name!r} is declared removable but maps {tuple(in_shape)} to {tuple(out_shape)}; "
                "fix its shortcut/downsample/removable attribute"
            )
        units.append(
            Unit(
                name=name,
                stage=model.stage_names.index(stage_name),
                index=index,
                position=position,
                removable=removable,
                macs=per_module.get(name, 0),  # parents already include their children
                params=sum(p.numel() for p in module.parameters()),
            )
        )
    return units


@contextmanager
def bypass(model: nn.Module, names: Sequence[str]) -> Iterator[nn.Module]:
    """Temporarily makes units ``names`` act as identity (their residual branch gives zero).

    For a post-activation ResNet block ``relu(f(x) + x)`` with a non-negative input this is
    exactly the block with ``f = 0``. The original modules are restored on exit, even on error.

    Raises:
        ValueError: a named unit changes the shape (a downsampling unit cannot be bypassed).
    """
    originals: list[tuple[nn.Sequential, int, nn.Module]] = []
    try:
        for name in names:
            module = unit_module(model, name)
            if not is_removable(module):
                raise ValueError(f"unit {name!r} changes the shape of its input (downsampling); it is not removable")
            stage, index = parse_unit_name(name)
            container = getattr(model, stage)
            originals.append((container, index, module))
            container[index] = nn.Identity()
        yield model
    finally:
        for container, index, module in reversed(originals):
            container[index] = module


@contextmanager
def record_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Forward hooks that store the outputs of units ``names`` (and ``"penultimate"``, the
    classifier's input, when listed) in the yielded dict at every forward pass."""
    outputs: dict[str, Tensor] = {}
    handles = []
    for name in names:
        if name == "penultimate":
            continue
        handles.append(
            unit_module(model, name).register_forward_hook(
                lambda _m, _a, out, name=name: outputs.__setitem__(name, out)
            )
        )
    original_penultimate = None
    if "penultimate" in names:
        original_penultimate = model.forward_penultimate

        def penultimate(h: Tensor) -> Tensor:
            outputs["penultimate"] = original_penultimate(h)
            return outputs["penultimate"]

        model.forward_penultimate = penultimate  # type: ignore[method-assign]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()
        if original_penultimate is not None:
            del model.forward_penultimate


def sample_rows(model: nn.Module, x: Tensor) -> Tensor:
    """One row per sample of a unit's input or output: an image's flattened feature map, or, for
    a model over tokens (one with ``sample_rows``, a causal LM), one row per token."""
    return model.sample_rows(x) if hasattr(model, "sample_rows") else x.flatten(1)


def forward_units(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Runs the stem and every unit; returns the stem output and each unit's output, in order."""
    h = model.forward_stem(x)
    stem = h
    outputs = []
    for unit in unit_modules(model):
        h = unit(h)
        outputs.append(h)
    return stem, outputs


def forward_from(model: nn.Module, h: Tensor, start: int, *, skip: int | None = None) -> Tensor:
    """Penultimate features from the *input* ``h`` of unit ``start`` (position in forward order).

    ``skip`` (a position >= start) is treated as identity. This is what makes scoring every
    candidate cheap: the prefix before ``start`` is computed once and cached.
    """
    for position, unit in enumerate(unit_modules(model)):
        if position < start or position == skip:
            continue
        h = unit(h)
    return model.forward_penultimate(h)
