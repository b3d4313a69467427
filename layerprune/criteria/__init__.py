"""Pruning criteria: a registry of named scoring rules over removable units (lower = safer)."""

from layerprune.criteria.scores import (
    angular_scores,
    block_influence_scores,
    cka_scores,
    consensus_scores,
    gradnorm_scores,
    greedy_loss_scores,
    random_scores,
    weight_norm_scores,
)

#: criterion name -> one-line description (the names the config's ``methods`` accepts)
CRITERIA: dict[str, str] = {
    "cka": "1 - linear CKA of intact vs bypassed penultimate features (Pons et al. 2024)",
    "sglp": "GradNorm within Fisher segments of the unit CKA matrix (SGLP 2024)",
    "consensus": "rank voting over several intact-vs-bypassed distances (Mugnaini et al. 2024)",
    "random": "seeded random scores",
    "weight_norm": "L1 norm of the unit's parameters",
    "block_influence": "1 - cosine of the unit's input and output (ShortGPT)",
    "angular": "arccos of the input/output cosine over pi",
    "greedy_loss": "calibration loss increase when the unit is bypassed, one unit per step, rescored (SLEB)",
}

#: criteria that read the extraction artifact
NEEDS_REPRESENTATIONS = frozenset({"cka", "block_influence", "angular", "greedy_loss"})

__all__ = [
    "CRITERIA",
    "NEEDS_REPRESENTATIONS",
    "angular_scores",
    "block_influence_scores",
    "cka_scores",
    "consensus_scores",
    "gradnorm_scores",
    "greedy_loss_scores",
    "random_scores",
    "weight_norm_scores",
]
