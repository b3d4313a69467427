"""Physical removal of decoder layers from a causal language model.

The Hugging Face model keeps its layers, its config and the attention modules' cache slots
in step: after deleting layers, every remaining attention module's ``layer_idx`` is
renumbered 0..n-1 (the key/value cache is indexed by it: without renumbering even a plain
forward with the default cache raises IndexError), ``config.num_hidden_layers`` is set and
``config.layer_types`` (per-layer attention kinds, where a model has them) loses the same
entries. The result saves with ``save_pretrained`` and reloads with ``from_pretrained``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from layerprune.lm.model import CausalLM, _get
from layerprune.models.units import unit_names

__all__ = ["remove_decoder_layers"]


def remove_decoder_layers(model: CausalLM, names: Sequence[str]) -> CausalLM:
    """A copy of ``model`` without the decoder layers ``names`` (``"layers.3"``); ``model`` is unchanged.

    Raises:
        KeyError: an unknown unit name.
        ValueError: duplicates, or removing every layer.
    """
    names = list(names)
    valid = unit_names(model)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise KeyError(f"no decoder layers named {unknown}; the model's units are {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"unit names to remove contain duplicates: {names}")
    drop = {valid.index(n) for n in names}
    if len(drop) == len(valid):
        raise ValueError(f"removing {names} would leave no decoder layer; keep at least one")
    lm = copy.deepcopy(model.lm)
    parent_path, _, attr = model.containers.layers.rpartition(".")
    parent = _get(lm, parent_path)
    kept = [layer for i, layer in enumerate(getattr(parent, attr)) if i not in drop]
    setattr(parent, attr, nn.ModuleList(kept))
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    config = lm.config
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        config.layer_types = [t for i, t in enumerate(layer_types) if i not in drop]
    return CausalLM(lm, source=model.source)
