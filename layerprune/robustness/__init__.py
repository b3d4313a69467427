"""Robustness evaluation of (pruned) classifiers: adversarial attacks (foolbox) and CIFAR-10-C common corruptions.

Both evaluations take images in [0, 1] (uint8 0..255 for corruptions) and the model's input normalisation
(``mean``/``std`` from the checkpoint's preprocessing), and return tidy pandas tables.
"""

from __future__ import annotations

from layerprune.robustness.adversarial import ATTACKS, AttackSpec, attack_norm, run_attacks, validate_attack_configs
from layerprune.robustness.corruptions import (
    CORRUPTIONS,
    GROUPS,
    SEVERITIES,
    corrupt,
    corrupt_dataset,
    corruption_summary,
    evaluate_corruptions,
    save_corruption_grid,
)

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
