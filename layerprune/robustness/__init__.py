"""Robustness evaluation of (pruned) classifiers: adversarial attacks (foolbox), CIFAR-10-C common corruptions and
natural distribution shift (CIFAR-10.1, CIFAR-10.2).

Both evaluations take images in [0, 1] (uint8 0..255 for corruptions) and the model's input normalisation
(``mean``/``std`` from the checkpoint's preprocessing), and return tidy pandas tables.

The names below are imported on first use, so that the torch-free submodules (``attack_specs``, ``published``),
which the workflow imports to check a config before any job, do not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerprune.robustness.adversarial import run_attacks
    from layerprune.robustness.attack_specs import (
        ATTACKS,
        AttackSpec,
        attack_norm,
        validate_attack_configs,
    )
    from layerprune.robustness.corruption_eval import evaluate_corruptions
    from layerprune.robustness.corruption_grid import save_corruption_grid
    from layerprune.robustness.corruptions import (
        CORRUPTIONS,
        GROUPS,
        SEVERITIES,
        corrupt,
        corrupt_dataset,
    )
    from layerprune.robustness.mce import corruption_summary

_WHERE = {
    "ATTACKS": "attack_specs",
    "AttackSpec": "attack_specs",
    "attack_norm": "attack_specs",
    "validate_attack_configs": "attack_specs",
    "run_attacks": "adversarial",
    "CORRUPTIONS": "corruptions",
    "GROUPS": "corruptions",
    "SEVERITIES": "corruptions",
    "corrupt": "corruptions",
    "corrupt_dataset": "corruptions",
    "corruption_summary": "mce",
    "evaluate_corruptions": "corruption_eval",
    "save_corruption_grid": "corruption_grid",
}

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "GROUPS",
    "SEVERITIES",
    "AttackSpec",
    "attack_norm",
    "corrupt",
    "corrupt_dataset",
    "corruption_summary",
    "evaluate_corruptions",
    "run_attacks",
    "save_corruption_grid",
    "validate_attack_configs",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
