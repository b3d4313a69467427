"""The pruning stage: score units with a criterion, select under a budget, remove them.

Planning and surgery are separate steps: :func:`plan_pruning` returns the plan (units,
scores, predicted MACs and params) without touching the model, so the caller saves it
first, and :func:`apply_plan` then removes the units. The iterative criteria (CKA with
``iterative=True``, and greedy loss, which is SLEB's loop) rescore the smaller model after
every step, so they remove as they go; their plan is the accumulated list of removals and
is complete (and saved by the ``prune`` command) before the pruned model is. Iterative CKA
optionally fine-tunes between steps with the same training loop as everything else.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from layerprune.criteria import REPRESENTATIONS, ScoringInputs, criteria, get_criterion
from layerprune.criteria.protocols import PONS_MIN_UNITS_PER_STAGE, pons_units
from layerprune.criteria.sglp_paper import select_by_combination_gradnorm
from layerprune.models import count_macs, count_params, get_units
from layerprune.models.units import Unit, renumber_after_removal
from layerprune.selection import Budget, plan_summary, select_per_segment, select_span, select_units
from layerprune.similarity import Precision
from layerprune.similarity.extract import Representations, extract_representations
from layerprune.surgery import remove_units
from layerprune.train import TrainConfig, fit

__all__ = [
    "PrunePlan",
    "PruneResult",
    "apply_plan",
    "plan_pruning",
    "prune_model",
    "score_units",
    "scores_table",
]

log = logging.getLogger(__name__)


@dataclass
class PrunePlan:
    """Outcome of :func:`plan_pruning`, before surgery.

    Attributes:
        plan: JSON-ready summary (``removed``, MACs and params before/after, and for the
            iterative criteria ``steps``).
        scores: one score per removable unit of the original model (for the iterative
            criteria, the first step's).
        pruned: the pruned model when the criterion had to remove units to plan (the
            iterative ones), else None.
        steps: per-step removals and scores of the iterative criteria.
    """

    plan: dict
    scores: dict[str, float]
    pruned: nn.Module | None = None
    steps: list[dict] = field(default_factory=list)


@dataclass
class PruneResult:
    """Outcome of :func:`prune_model`: the plan (JSON-ready), the scores and the smaller model."""

    plan: dict
    scores: dict[str, float]
    model: nn.Module
    steps: list[dict] = field(default_factory=list)


def score_units(
    method: str,
    model: nn.Module,
    candidates: Sequence[str],
    *,
    representations: Representations | None = None,
    candidate_distances: pd.DataFrame | None = None,
    consensus_metrics: Sequence[str] = ("cka",),
    gradnorm_batches: Callable[[], object] | None = None,
    seed: int = 0,
    precision: Precision | None = None,
    span: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Scores every candidate with criterion ``method`` (lower = safer to remove).

    ``precision`` is the arithmetic of linear CKA products (``similarity.precision``; None = the
    features' precision), read by the criteria that list it in their record; ``span`` the block length
    a ``"span"`` criterion scores (its scores are keyed by each block's first unit).

    Raises:
        ValueError: an unknown criterion, or an input the criterion reads is missing.
    """
    criterion = get_criterion(method)
    if REPRESENTATIONS in criterion.needs and representations is None:
        raise ValueError(f"criterion {method!r} needs the calibration representations (extract stage)")
    inputs = ScoringInputs(
        model=model, candidates=candidates, representations=representations,
        candidate_distances=candidate_distances, consensus_metrics=consensus_metrics,
        calibration_batches=gradnorm_batches, seed=seed, precision=precision, span=span, device=device,
    )  # fmt: skip
    return criterion.score(inputs)


def scores_table(units: Sequence[Unit], scores: Mapping[str, float], removed: Sequence[str]) -> pd.DataFrame:
    """Tidy scores: ``unit, stage, score, rank, removed`` (rank 1 = safest to remove)."""
    rows = [
        {"unit": u.name, "stage": u.stage, "score": scores[u.name], "removed": u.name in removed}
        for u in units
        if u.name in scores
    ]
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["score"].rank(method="first").astype(int)
    return frame[["unit", "stage", "score", "rank", "removed"]]


def plan_pruning(
    method: str,
    budget: Budget,
    model: nn.Module,
    input_size: Sequence[int],
    *,
    min_units_per_stage: int = 2,
    representations: Representations | None = None,
    candidate_distances: pd.DataFrame | None = None,
    consensus_metrics: Sequence[str] = ("cka",),
    segments: Sequence[Sequence[str]] | None = None,
    allocation: str = "proportional",
    calibration_loader: DataLoader | None = None,
    gradnorm_batches: int = 4,
    iterative: bool = False,
    units_per_step: int = 1,
    finetune_between: tuple[TrainConfig, Dataset] | None = None,
    seed: int = 0,
    precision: Precision | None = None,
    device: torch.device | str = "cpu",
    protocol: str = "layerprune",
) -> PrunePlan:
    """Scores the units and selects them under the budget, without touching ``model``.

    One-shot criteria return the plan only (``pruned`` is None); save it, then call
    :func:`apply_plan`. The iterative criteria (cka with ``iterative=True``, and
    greedy_loss always) must remove units to rescore the smaller model, so they return the
    accumulated plan together with the already pruned model in ``pruned``; the plan is
    still complete before :func:`apply_plan` hands the model over to be saved.

    Args:
        method: criterion name (see :func:`layerprune.criteria.criterion_names`).
        budget: how much to remove.
        model: the (baseline) model; not modified (it may be moved to ``device``).
        input_size: (C, H, W) of its inputs.
        min_units_per_stage: every stage keeps at least this many units.
        representations: the extraction artifact (cka, consensus, block influence, angular).
        candidate_distances: tidy ``unit, metric, distance`` table (consensus).
        consensus_metrics: metrics the consensus votes over.
        segments: unit names per contiguous segment (sglp).
        allocation: how sglp spreads the budget over segments.
        calibration_loader: labelled calibration batches (sglp's GradNorm; iterative rescoring).
        gradnorm_batches: batches used by GradNorm.
        iterative: (cka) remove ``units_per_step`` at a time and rescore in between.
        units_per_step: units removed per iterative cka step.
        finetune_between: (iterative cka) a config and training set to fine-tune with between steps.
        seed: seed of the random criterion.
        precision: arithmetic of linear CKA products (cka criterion; None = the features' precision).
        device: where scoring runs.
        protocol: ``layerprune`` or ``paper`` (:mod:`layerprune.criteria.protocols`): for cka, ``paper`` is
            Pons et al.'s schedule (first unit of the first stage never a candidate, at least 2 units per stage,
            one unit per step with ``finetune_between`` after every step); for sglp, the reference's GradNorm
            over the combinations of units kept in each segment, in train mode.

    Raises:
        ValueError: on an unknown criterion, a missing input the criterion needs, or a
            budget the stage minimum cannot meet.
    """
    units = get_units(model, input_size)
    total_macs, _ = count_macs(model, input_size)
    total_params = count_params(model)
    restrict = None
    if method == "cka" and protocol == "paper":
        restrict, iterative, units_per_step = pons_units, True, 1
        min_units_per_stage = max(min_units_per_stage, PONS_MIN_UNITS_PER_STAGE)
        units = restrict(units)
    candidates = [u.name for u in units if u.removable]

    criterion = get_criterion(method)
    if iterative and criterion.iterative == "never":
        iterable = sorted(c.name for c in criteria() if c.iterative != "never")
        raise ValueError(f"iterative pruning is implemented for {iterable}, not {method!r}")
    if iterative or criterion.iterative == "always":
        if criterion.one_unit_per_step:
            # SLEB removes one unit per step and does not fine-tune in between.
            units_per_step, finetune_between = 1, None
        return _prune_iteratively(
            method, budget, model, input_size, units, total_macs, total_params,
            min_units_per_stage=min_units_per_stage, calibration_loader=calibration_loader,
            units_per_step=units_per_step, finetune_between=finetune_between, precision=precision, device=device,
            restrict=restrict,
        )  # fmt: skip

    def first_batches() -> object:
        if calibration_loader is None:
            raise ValueError("GradNorm needs the calibration loader")
        return (batch for i, batch in zip(range(gradnorm_batches), calibration_loader))

    if criterion.selection == "span":
        if calibration_loader is None:
            raise ValueError(f"{method} needs the calibration loader (the hidden states of the calibration batches)")

        def span_scores(n: int) -> dict[str, float]:
            return score_units(
                method, model, candidates, gradnorm_batches=lambda: iter(calibration_loader), span=n, device=device
            )

        removed, scores, span = select_span(
            units, span_scores, budget, total_macs, min_units_per_stage, total_params=total_params
        )
        return PrunePlan(plan={**plan_summary(units, removed, total_macs, total_params), "span": span}, scores=scores)

    if method == "sglp" and protocol == "paper":
        if segments is None:
            raise ValueError("sglp needs the segments (segment stage)")
        removed, scores = select_by_combination_gradnorm(
            model, units, segments, budget, total_macs, first_batches,
            min_units_per_stage=min_units_per_stage, allocation=allocation, total_params=total_params, device=device,
        )  # fmt: skip
        return PrunePlan(plan=plan_summary(units, removed, total_macs, total_params), scores=scores)
    scores = score_units(
        method, model, candidates, representations=representations,
        candidate_distances=candidate_distances, consensus_metrics=consensus_metrics,
        gradnorm_batches=first_batches, seed=seed, precision=precision, device=device,
    )  # fmt: skip
    if criterion.selection == "per_segment":
        if segments is None:
            raise ValueError(f"{method} needs the segments (segment stage)")
        removed = select_per_segment(
            units, scores, segments, budget, total_macs,
            min_units_per_stage=min_units_per_stage, allocation=allocation, total_params=total_params,
        )  # fmt: skip
    else:
        removed = select_units(
            units, scores, budget, total_macs, min_units_per_stage=min_units_per_stage, total_params=total_params
        )
    return PrunePlan(plan=plan_summary(units, removed, total_macs, total_params), scores=scores)


def apply_plan(model: nn.Module, planned: PrunePlan) -> nn.Module:
    """The surgery step: the smaller model of ``planned`` (``model`` itself is not modified).

    For a one-shot plan this removes ``planned.plan["removed"]`` from ``model``; an iterative
    plan already carries its pruned (and possibly fine-tuned) model, which is returned.
    """
    if planned.pruned is not None:
        return planned.pruned
    return remove_units(model.cpu(), planned.plan["removed"])


def prune_model(method: str, budget: Budget, model: nn.Module, input_size: Sequence[int], **kwargs: Any) -> PruneResult:
    """Scores, selects and physically removes units: :func:`plan_pruning` then :func:`apply_plan`.

    Takes the arguments of :func:`plan_pruning`. Callers that save the plan should call the
    two steps themselves and write the plan in between (the ``prune`` command does).
    """
    planned = plan_pruning(method, budget, model, input_size, **kwargs)
    return PruneResult(plan=planned.plan, scores=planned.scores, model=apply_plan(model, planned), steps=planned.steps)


def _prune_iteratively(
    method: str,
    budget: Budget,
    model: nn.Module,
    input_size: Sequence[int],
    units: list[Unit],
    total_macs: int,
    total_params: int,
    *,
    min_units_per_stage: int,
    calibration_loader: DataLoader | None,
    units_per_step: int,
    finetune_between: tuple[TrainConfig, Dataset] | None,
    precision: Precision | None,
    device: torch.device | str,
    restrict: Callable[[list[Unit]], list[Unit]] | None = None,
) -> PrunePlan:
    """Score, remove the best units, (fine-tune), rescore the smaller model, until the budget is met.

    Pons et al.'s iterative CKA (``method="cka"``, 1 - CKA of the penultimate features) and
    SLEB (``method="greedy_loss"``, the calibration loss increase of each bypass, one unit per
    step). The returned scores are the first step's (one per removable unit of the original
    model); every step's scores are in ``plan["steps"]``, under the original unit names.
    ``restrict`` marks the units of every step's model that are no candidates (Pons et al.'s protocol).
    """
    if calibration_loader is None:
        raise ValueError(f"iterative {method} needs the calibration loader")
    criterion = get_criterion(method)
    current = model
    # Unit names renumber after each removal; keep the original name of every current unit.
    original = {u.name: u.name for u in units}
    removed: list[str] = []
    steps: list[dict] = []
    first_scores: dict[str, float] | None = None
    by_name = {u.name: u for u in units}

    def met() -> bool:
        return budget.is_met(
            len(removed), sum(by_name[n].macs for n in removed), total_macs,
            removed_params=sum(by_name[n].params for n in removed), total_params=total_params,
        )  # fmt: skip

    while not met():
        current_units = get_units(current, input_size)
        if restrict is not None:
            current_units = restrict(current_units)
        reps = extract_representations(
            current, calibration_loader, input_size=input_size, matrix=False, precision=precision,
            bypassed_features=False, device=device, progress=False,
        )  # fmt: skip
        scores = criterion.score(
            ScoringInputs(model=current, candidates=reps.candidates, representations=reps, precision=precision)
        )
        if first_scores is None:
            first_scores = {original[k]: v for k, v in scores.items()}
        remaining = budget.value - len(removed) if budget.kind == "blocks" else units_per_step
        step_budget = Budget.blocks(max(1, min(units_per_step, remaining)))
        current_macs, _ = count_macs(current, input_size)
        try:
            chosen = select_units(
                current_units, scores, step_budget, current_macs, min_units_per_stage=min_units_per_stage
            )
        except ValueError as err:
            raise ValueError(f"iterative {method} stopped after removing {removed}: {err}") from None
        steps.append({"step": len(steps) + 1, "removed": [original[c] for c in chosen],
                      "scores": {original[k]: v for k, v in scores.items()}})  # fmt: skip
        removed += [original[c] for c in chosen]
        log.info("step %d: removed %s", len(steps), [original[c] for c in chosen])
        current = remove_units(current.cpu(), chosen)
        renamed = renumber_after_removal(list(original), chosen)
        original = {renamed[name]: orig for name, orig in original.items() if name in renamed}
        if finetune_between is not None and finetune_between[0].epochs > 0:
            config, train_set = finetune_between
            with tempfile.TemporaryDirectory() as workdir:
                fit(current, train_set, None, config, Path(workdir), progress=False, device=device)
    plan = plan_summary(units, removed, total_macs, total_params)
    plan["steps"] = steps
    return PrunePlan(plan=plan, scores=first_scores or {}, pruned=current.cpu(), steps=steps)
