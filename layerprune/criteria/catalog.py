"""The registered criteria: one :class:`~layerprune.criteria.registry.Criterion` record each.

A new criterion is one more record here (its scoring function beside it, or a pure function in
:mod:`layerprune.criteria.scores`); pruning, the ``prune`` command, the workflow, the summary and the
figures pick it up from the registry, and the schema's ``methods`` enum must list its name (a test
checks the two agree). The registration order is the order of tables and of the figure palette.

Scoring functions import :mod:`layerprune.criteria.scores` (torch) when called, so that reading the
registry stays cheap for the workflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerprune.criteria.registry import (
    CALIBRATION,
    CANDIDATES,
    REPRESENTATIONS,
    Criterion,
    ScoringInputs,
    register_criterion,
)

if TYPE_CHECKING:
    from layerprune.similarity.extract import Representations

__all__: list[str] = []


def _representations(inputs: ScoringInputs, name: str) -> Representations:
    if inputs.representations is None:
        raise ValueError(f"criterion {name!r} needs the calibration representations (extract stage)")
    return inputs.representations


def _cka(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import cka_scores

    reps = _representations(inputs, "cka")
    if reps.bypass_cka.size:  # streamed during extraction over every sample (O(d^2) memory per candidate)
        cka = dict(zip(reps.candidates, reps.bypass_cka.tolist()))
        return {c: 1.0 - cka[c] for c in inputs.candidates}
    # Files extracted before the streamed values existed: the same CKA from the kept features.
    return cka_scores(reps.intact, {c: reps.bypassed_of(c) for c in inputs.candidates}, precision=inputs.precision)


def _sglp(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import gradnorm_scores

    if inputs.calibration_batches is None:
        raise ValueError("sglp needs labelled calibration batches for GradNorm")
    return gradnorm_scores(inputs.model, inputs.calibration_batches(), inputs.candidates, device=inputs.device)


def _consensus(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import consensus_scores

    table = inputs.candidate_distances
    if table is None:
        raise ValueError("consensus needs the candidate distance table (similarity stage)")
    missing = sorted(set(inputs.consensus_metrics) - set(table["metric"]))
    if missing:
        raise ValueError(
            f"the candidate table has no distances for {missing}; add them to similarity.metrics and rerun"
        )
    distances = {
        metric: dict(zip(group["unit"], group["distance"].astype(float)))
        for metric, group in table.groupby("metric")
        if metric in inputs.consensus_metrics
    }
    return consensus_scores({m: {c: d[c] for c in inputs.candidates} for m, d in distances.items()})


def _random(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import random_scores

    return random_scores(list(inputs.candidates), inputs.seed)


def _weight_norm(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import weight_norm_scores

    return weight_norm_scores(inputs.model, inputs.candidates)


def _io_cosine(inputs: ScoringInputs, name: str) -> dict[str, float]:
    reps = _representations(inputs, name)
    cosine = dict(zip(reps.units, reps.io_cosine.tolist()))
    return {c: cosine[c] for c in inputs.candidates}


def _block_influence(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import block_influence_scores

    return block_influence_scores(_io_cosine(inputs, "block_influence"))


def _angular(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import angular_scores

    return angular_scores(_io_cosine(inputs, "angular"))


def _angular_span(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import angular_span_scores

    if inputs.calibration_batches is None:
        raise ValueError("angular_span needs calibration batches for the hidden states")
    return angular_span_scores(inputs.model, inputs.calibration_batches(), inputs.span, device=inputs.device)


def _greedy_loss(inputs: ScoringInputs) -> dict[str, float]:
    from layerprune.criteria.scores import greedy_loss_scores

    reps = _representations(inputs, "greedy_loss")
    losses = dict(zip(reps.candidates, reps.bypassed_loss.tolist()))
    return greedy_loss_scores({c: losses[c] for c in inputs.candidates}, reps.intact_loss)


register_criterion(Criterion(
    name="cka", label="CKA", score=_cka, needs=frozenset({REPRESENTATIONS}), iterative="optional",
    finetune_between=True, similarity_settings=("precision",),
    reference="Pons et al. 2024, Effective layer pruning through similarity metric perspective, "
    "https://arxiv.org/abs/2405.17081",
    description="1 - linear CKA of intact vs bypassed penultimate features",
))  # fmt: skip
register_criterion(Criterion(
    name="sglp", label="SGLP", score=_sglp, needs=frozenset({CALIBRATION}), selection="per_segment",
    settings=("gradnorm_batches",),
    reference="SGLP: similarity-guided layer partition pruning, 2024 (GradNorm within Fisher segments of the "
    "unit CKA matrix)",
    description="GradNorm within Fisher segments of the unit CKA matrix",
))  # fmt: skip
register_criterion(Criterion(
    name="consensus", label="Consensus", score=_consensus, needs=frozenset({CANDIDATES}),
    reference="Mugnaini et al. 2024, Efficient CNNs via multi-metric consensus layer pruning",
    description="rank voting over several intact-vs-bypassed distances",
))  # fmt: skip
register_criterion(Criterion(
    name="random", label="Random", score=_random,
    reference="the random baseline of every layer-pruning paper",
    description="seeded random scores",
))  # fmt: skip
register_criterion(Criterion(
    name="weight_norm", label="Weight norm", score=_weight_norm,
    reference="Li et al. 2017, Pruning filters for efficient ConvNets (L1 norm, applied to whole units), "
    "https://arxiv.org/abs/1608.08710",
    description="L1 norm of the unit's parameters",
))  # fmt: skip
register_criterion(Criterion(
    name="block_influence", label="Block influence", score=_block_influence, needs=frozenset({REPRESENTATIONS}),
    reference="Men et al. 2024, ShortGPT, https://arxiv.org/abs/2403.03853",
    description="1 - cosine of the unit's input and output",
))  # fmt: skip
register_criterion(Criterion(
    name="angular", label="Angular distance", score=_angular, needs=frozenset({REPRESENTATIONS}),
    reference="Gromov et al. 2024, The unreasonable ineffectiveness of the deeper layers, "
    "https://arxiv.org/abs/2403.17887",
    description="arccos of the input/output cosine over pi",
))  # fmt: skip
register_criterion(Criterion(
    name="angular_span", label="Angular span", score=_angular_span, needs=frozenset({CALIBRATION}),
    selection="span",
    reference="Gromov et al. 2024, The unreasonable ineffectiveness of the deeper layers (n consecutive layers), "
    "https://arxiv.org/abs/2403.17887",
    description="arccos/pi of the cosine between the input of n consecutive units and their output; removes the "
    "closest block, n set by the budget",
    in_default=False,  # a CNN's blocksN spans cross stages (e.g. ResNet-56's blocks9): chosen explicitly
))  # fmt: skip
register_criterion(Criterion(
    name="greedy_loss", label="Greedy loss", score=_greedy_loss, needs=frozenset({REPRESENTATIONS}),
    iterative="always", one_unit_per_step=True,
    reference="Song et al. 2024, SLEB, https://arxiv.org/abs/2402.09025",
    description="calibration loss increase when the unit is bypassed, one unit per step, rescored",
))  # fmt: skip
