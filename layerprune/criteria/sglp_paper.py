"""SGLP's GradNorm step under the paper protocol: score kept *combinations* of units per segment, in train mode.

layerprune's default GradNorm (:func:`layerprune.criteria.scores.gradnorm_scores`) scores every unit on its own:
the norm of the loss gradient with respect to that unit's parameters, in the trained model, BatchNorm in eval mode.
The SGLP reference code instead, for every segment, tries each combination of units that the segment could keep,
builds that smaller network from the pretrained weights of the layers it keeps, and measures the gradient norm of
the whole network in train mode (BatchNorm on batch statistics), averaged over batches; the combination with the
largest norm (the most "trainable" one, GradNorm being a zero-cost trainability proxy) is kept.

Here each combination's network is the pretrained model with the segment's other units removed (every other
segment intact), which is the network the reference builds: a new network of the smaller architecture whose
layers carry the pretrained weights. How many units each segment gives up comes from the same allocation as the
default protocol (:func:`layerprune.selection.select_per_segment`, run on equal scores), so the two protocols
differ only in which units go.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerprune.models.units import Unit
from layerprune.selection import Budget, select_per_segment
from layerprune.surgery import remove_units

__all__ = ["MAX_COMBINATIONS", "combination_gradnorm", "select_by_combination_gradnorm"]

#: Most combinations :func:`select_by_combination_gradnorm` scores in one segment (each costs a network's
#: forward and backward passes over every GradNorm batch).
MAX_COMBINATIONS = 5000


def combination_gradnorm(
    model: nn.Module,
    removed: Sequence[str],
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device | str = "cpu",
) -> float:
    """Mean over ``batches`` of the L2 norm of the gradient of the mean cross-entropy w.r.t. all parameters.

    The network is ``model`` without the units ``removed`` (``model`` is not modified), in train mode, so that
    BatchNorm normalises with the statistics of each batch (its running statistics change only in the copy).

    Raises:
        ValueError: when ``batches`` is empty.
    """
    net = remove_units(copy.deepcopy(model).cpu(), list(removed)).to(device).train()
    norms = []
    for x, y in batches:
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x.to(device)), y.to(device))
        loss.backward()
        grads = [p.grad.detach().flatten() for p in net.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.cat(grads))))
    if not norms:
        raise ValueError("GradNorm needs at least one labelled batch")
    return sum(norms) / len(norms)


def _removal_counts(
    units: Sequence[Unit], segments: Sequence[Sequence[str]], budget: Budget, total_macs: int, **selection
) -> list[int]:
    """Units each segment gives up under the default allocation (equal scores, so only the counts matter)."""
    equal = {u.name: 0.0 for u in units if u.removable}
    removed = set(select_per_segment(units, equal, segments, budget, total_macs, **selection))
    return [sum(name in removed for name in segment) for segment in segments]


def select_by_combination_gradnorm(
    model: nn.Module,
    units: Sequence[Unit],
    segments: Sequence[Sequence[str]],
    budget: Budget,
    total_macs: int,
    batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    *,
    min_units_per_stage: int = 2,
    allocation: str = "proportional",
    total_params: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[str], dict[str, float]]:
    """The reference's selection: in every segment keep the combination of units with the largest GradNorm.

    Args:
        model: the trained model (not modified).
        units: its units in forward order.
        segments: unit names per segment.
        budget: what to remove in all.
        total_macs: MACs of the whole model.
        batches: returns a fresh iterable of the labelled GradNorm batches (called once per combination).
        min_units_per_stage: combinations that leave a stage below this are skipped.
        allocation: how the removals are spread over segments (as in the default protocol).
        total_params: parameters of the whole model (the denominator of a parameter budget).
        device: where the networks run.

    Returns:
        The removed units in forward order, and one score per removable unit (lower = safer to remove): the best
        GradNorm among the combinations that keep the unit minus the best among those that remove it (<= 0 for the
        removed units, >= 0 for the kept ones; 0 in segments that give up nothing).

    Raises:
        ValueError: when a segment has more than :data:`MAX_COMBINATIONS` combinations, when no combination
            respects the stage minimum, or when the chosen units miss the budget.
    """
    selection = {"min_units_per_stage": min_units_per_stage, "allocation": allocation, "total_params": total_params}
    counts = _removal_counts(units, segments, budget, total_macs, **selection)
    by_name = {u.name: u for u in units}
    stage_size: dict[int, int] = {}
    for u in units:
        stage_size[u.stage] = stage_size.get(u.stage, 0) + 1
    scores = {u.name: 0.0 for u in units if u.removable}
    removed: list[str] = []
    for segment, count in zip(segments, counts):
        removable = [n for n in segment if by_name[n].removable]
        if count == 0:
            continue
        n_combinations = math.comb(len(removable), count)
        if n_combinations > MAX_COMBINATIONS:
            raise ValueError(
                f"segment {list(segment)} would need {n_combinations} GradNorm combinations (remove {count} of "
                f"{len(removable)}), more than {MAX_COMBINATIONS}; use more segments or protocol.sglp: layerprune"
            )
        results: dict[tuple[str, ...], float] = {}
        for dropped in itertools.combinations(removable, count):
            left = dict(stage_size)
            for name in [*removed, *dropped]:
                left[by_name[name].stage] -= 1
            if min(left.values()) < min_units_per_stage:
                continue
            results[dropped] = combination_gradnorm(model, dropped, batches(), device=device)
        if not results:
            raise ValueError(
                f"no way to remove {count} units of segment {list(segment)} keeps min_units_per_stage="
                f"{min_units_per_stage}; lower it or the budget"
            )
        best = max(results, key=lambda combo: (results[combo], [-by_name[n].position for n in combo]))
        removed += best
        for name in removable:
            keep = [v for combo, v in results.items() if name not in combo]
            drop = [v for combo, v in results.items() if name in combo]
            scores[name] = (max(keep) if keep else 0.0) - (max(drop) if drop else 0.0)
    removed_macs = sum(by_name[n].macs for n in removed)
    removed_params = sum(by_name[n].params for n in removed)
    if not budget.is_met(
        len(removed), removed_macs, total_macs, removed_params=removed_params, total_params=total_params
    ):
        raise ValueError(
            f"the GradNorm combinations removed {len(removed)} units ({100 * removed_macs / total_macs:.1f}% of the "
            f"MACs), short of budget {budget}; use protocol.sglp: layerprune for this budget"
        )
    return sorted(removed, key=lambda n: by_name[n].position), scores
