"""Choosing which units to remove under a budget, separately from how units are scored.

A criterion (CKA, SGLP, Consensus, ...) gives every removable unit a score, lower = safer to remove; this module
turns scores and a :class:`Budget` into a list of unit names, under one structural rule: every stage keeps at least
``min_units_per_stage`` units (counting its non-removable ones), so no stage of the pruned network collapses. Two
selection rules are provided:

- :func:`select_units`: global greedy in ascending score order (the CKA criterion of Pons et al., 2024,
  https://arxiv.org/abs/2405.17081, and Consensus of Mugnaini et al., 2024).
- :func:`select_per_segment`: SGLP's rule (2024): the units to remove are spread over contiguous segments of
  similar units (see :mod:`layerprune.segmentation`), the least important units of each segment going first.
- :func:`select_span`: Gromov et al.'s rule (2024, https://arxiv.org/abs/2403.17887): one block of n
  consecutive units of one stage, the block with the lowest score for that n.

Budgets travel through workflow paths as strings, ``blocks9`` (remove 9 units), ``macs50`` (remove at least
50% of the model's MACs) or ``params30`` (remove at least 30% of its parameters): integer percent, never a float
in a path.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

__all__ = [
    "ALLOCATIONS",
    "Budget",
    "UnitLike",
    "plan_summary",
    "select_per_segment",
    "select_span",
    "select_units",
]

logger = logging.getLogger(__name__)

#: Ways :func:`select_per_segment` spreads the removals over segments.
ALLOCATIONS = ("proportional", "uniform")

_BUDGET_RE = re.compile(r"(blocks|macs|params)(0|[1-9][0-9]*)")
#: Budget kinds given as a percent of the whole model's cost, and what that cost is.
PERCENT_KINDS = {"macs": "MACs", "params": "parameters"}


class UnitLike(Protocol):
    """What selection needs to know about a unit (:class:`layerprune.models.units.Unit` satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def stage(self) -> int: ...

    @property
    def index(self) -> int: ...

    @property
    def removable(self) -> bool: ...

    @property
    def macs(self) -> int: ...

    @property
    def params(self) -> int: ...


@dataclass(frozen=True)
class Budget:
    """How much to prune.

    Attributes:
        kind: ``"blocks"``: remove exactly ``value`` units; ``"macs"``: remove units until the removed MACs are at
            least ``value`` percent of the model's total MACs; ``"params"``: the same for parameters.
        value: unit count (``>= 1``) or integer percent (``1 .. 99``).
    """

    kind: Literal["blocks", "macs", "params"]
    value: int

    def __post_init__(self) -> None:
        if self.kind not in ("blocks", *PERCENT_KINDS):
            raise ValueError(f"budget kind {self.kind!r} is unknown; expected 'blocks', 'macs' or 'params'")
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise ValueError(
                f"budget value {self.value!r} must be an int (a unit count or an integer percent); "
                "round it, paths never hold floats"
            )
        if self.kind == "blocks" and self.value < 1:
            raise ValueError(f"blocks budget {self.value} must remove at least 1 unit")
        if self.kind in PERCENT_KINDS and not 1 <= self.value <= 99:
            raise ValueError(
                f"{PERCENT_KINDS[self.kind]} budget {self.value}% must be an integer percent between 1 and 99"
            )

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parses the path form, ``"blocks9"``, ``"macs50"`` or ``"params30"``; ``str(Budget.parse(s)) == s``.

        Raises:
            ValueError: naming the bad string and the accepted forms.
        """
        if not isinstance(text, str):
            raise ValueError(f"budget must be a string like 'blocks9', 'macs50' or 'params30', got {text!r}")
        match = _BUDGET_RE.fullmatch(text)
        if match is None:
            raise ValueError(
                f"cannot parse budget {text!r}: expected 'blocks<N>' (remove N units, e.g. 'blocks9') or "
                "'macs<P>' (remove at least P percent of MACs, integer P in 1..99, e.g. 'macs50') or 'params<P>' "
                "(the same for parameters, e.g. 'params30'), lowercase, no leading zeros, no decimal point"
            )
        kind = match.group(1)
        return cls(kind, int(match.group(2)))  # type: ignore[arg-type]

    @classmethod
    def blocks(cls, n: int) -> Budget:
        """Remove exactly ``n`` units."""
        return cls("blocks", n)

    @classmethod
    def macs(cls, percent: int) -> Budget:
        """Remove at least ``percent`` percent of the model's MACs."""
        return cls("macs", percent)

    @classmethod
    def params(cls, percent: int) -> Budget:
        """Remove at least ``percent`` percent of the model's parameters."""
        return cls("params", percent)

    def __str__(self) -> str:
        return f"{self.kind}{self.value}"

    def is_met(
        self,
        n_removed: int,
        removed_macs: int,
        total_macs: int,
        *,
        removed_params: int = 0,
        total_params: int | None = None,
    ) -> bool:
        """Whether removing ``n_removed`` units worth ``removed_macs`` MACs (``removed_params`` parameters) meets
        this budget.

        For a MAC or parameter budget the test is exact integer arithmetic, ``100 * removed >= percent * total``,
        so no rounding decides a borderline case. A blocks budget is met only by the exact count.

        Raises:
            ValueError: a parameter budget without ``total_params``.
        """
        if self.kind == "blocks":
            return n_removed == self.value
        if self.kind == "macs":
            return 100 * removed_macs >= self.value * total_macs
        if total_params is None:
            raise ValueError(f"budget {self} needs the model's total parameters (total_params)")
        return 100 * removed_params >= self.value * total_params


def _check_total_params(budget: Budget, total_params: int | None) -> None:
    """A parameter budget needs the whole model's parameters, a positive int."""
    if budget.kind == "params" and (
        isinstance(total_params, bool) or not isinstance(total_params, int) or total_params <= 0
    ):
        raise ValueError(
            f"budget {budget} needs total_params, the whole model's parameters as a positive int; got {total_params!r}"
        )


class _Plan:
    """Mutable bookkeeping shared by both selection rules: stage sizes, removed units, their MACs."""

    def __init__(
        self,
        units: Sequence[UnitLike],
        scores: Mapping[str, float],
        budget: Budget,
        total_macs: int,
        min_units_per_stage: int,
        total_params: int | None = None,
    ) -> None:
        if not isinstance(budget, Budget):
            raise ValueError(f"budget must be a Budget (e.g. Budget.parse('blocks9')), got {budget!r}")
        _check_total_params(budget, total_params)
        if isinstance(min_units_per_stage, bool) or not isinstance(min_units_per_stage, int) or min_units_per_stage < 0:
            raise ValueError(f"min_units_per_stage={min_units_per_stage!r} must be a non-negative int")
        _validate_units(units, total_macs)
        self.units = list(units)
        self.by_name = {u.name: u for u in self.units}
        self.order = {u.name: i for i, u in enumerate(self.units)}
        self.scores = _validate_scores(self.units, scores)
        self.budget = budget
        self.total_macs = int(total_macs)
        self.min_units_per_stage = min_units_per_stage
        self.total_params = total_params
        self.stage_size: dict[int, int] = {}
        for u in self.units:
            self.stage_size[u.stage] = self.stage_size.get(u.stage, 0) + 1
        self.removed: list[str] = []
        self.removed_macs = 0
        self.removed_params = 0

    def sort_key(self, name: str) -> tuple[float, int]:
        # Ascending score; equal scores go in forward order, so the result never depends on dict or set order.
        return (self.scores[name], self.order[name])

    def can_remove(self, name: str) -> bool:
        unit = self.by_name[name]
        return self.stage_size[unit.stage] - 1 >= self.min_units_per_stage

    def remove(self, name: str) -> None:
        unit = self.by_name[name]
        self.stage_size[unit.stage] -= 1
        self.removed.append(name)
        self.removed_macs += int(unit.macs)
        self.removed_params += int(unit.params)

    def met(self) -> bool:
        return self.budget.is_met(
            len(self.removed),
            self.removed_macs,
            self.total_macs,
            removed_params=self.removed_params,
            total_params=self.total_params,
        )

    def result(self) -> list[str]:
        return sorted(self.removed, key=self.order.__getitem__)

    def fail(self, rule: str) -> ValueError:
        n_removable = sum(u.removable for u in self.units)
        reached = f"{len(self.removed)} units"
        if self.budget.kind == "macs":
            reached += f" = {100 * self.removed_macs / self.total_macs:.1f}% of {self.total_macs} MACs"
        elif self.budget.kind == "params" and self.total_params:
            reached += f" = {100 * self.removed_params / self.total_params:.1f}% of {self.total_params} parameters"
        sizes = ", ".join(f"stage {s}: {n}" for s, n in sorted(self.stage_size.items()))
        return ValueError(
            f"budget {self.budget} cannot be met by {rule}: it removed {reached} and then no other unit could go "
            f"({n_removable} of {len(self.units)} units are removable; units left per stage: {sizes}; "
            f"min_units_per_stage={self.min_units_per_stage}). Lower the budget or min_units_per_stage."
        )


def _validate_units(units: Sequence[UnitLike], total_macs: int) -> None:
    if len(units) == 0:
        raise ValueError("units is empty; pass the model's units (layerprune.models.units.get_units) in forward order")
    seen: set[str] = set()
    previous: tuple[int, int] | None = None
    for u in units:
        if u.name in seen:
            raise ValueError(f"unit name {u.name!r} appears twice in units; unit names must be unique")
        seen.add(u.name)
        if u.macs < 0 or u.params < 0:
            raise ValueError(f"unit {u.name!r} has negative cost (macs={u.macs}, params={u.params})")
        key = (u.stage, u.index)
        if previous is not None and key <= previous:
            raise ValueError(
                f"units are not in forward order: {u.name!r} (stage {u.stage}, index {u.index}) comes after "
                f"stage {previous[0]}, index {previous[1]}; pass them as get_units returns them"
            )
        previous = key
    if isinstance(total_macs, bool) or not isinstance(total_macs, int) or total_macs <= 0:
        raise ValueError(f"total_macs={total_macs!r} must be a positive int: the whole model's MACs per input")
    unit_macs = sum(int(u.macs) for u in units)
    if unit_macs > total_macs:
        raise ValueError(
            f"the units' MACs add up to {unit_macs}, more than total_macs={total_macs}; total_macs must count the "
            "whole model (stem, units and head) for the same input size"
        )


def _validate_scores(units: Sequence[UnitLike], scores: Mapping[str, float]) -> dict[str, float]:
    names = {u.name for u in units}
    unknown = sorted(set(scores) - names)
    if unknown:
        raise ValueError(
            f"scores name units the model does not have: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
            "score the same model's units (names like 'layer2.3')"
        )
    missing = [u.name for u in units if u.removable and u.name not in scores]
    if missing:
        raise ValueError(f"removable units have no score: {missing}; the criterion must score every removable unit")
    out: dict[str, float] = {}
    for name, value in scores.items():
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"score of unit {name!r} is {value}; scores must be finite numbers")
        out[name] = value
    return out


def select_units(
    units: Sequence[UnitLike],
    scores: Mapping[str, float],
    budget: Budget,
    total_macs: int,
    min_units_per_stage: int = 2,
    *,
    total_params: int | None = None,
) -> list[str]:
    """Greedy selection: remove the lowest-scored removable units until the budget is met.

    Removable units are taken in ascending score (ties in forward order); a unit is skipped when removing it would
    leave its stage with fewer than ``min_units_per_stage`` units (non-removable units count). For ``blocks<N>``
    exactly N units are taken; for ``macs<P>`` units are taken until the removed MACs reach P% of ``total_macs``,
    i.e. the shortest prefix of that order (after skips) that meets the budget; ``params<P>`` likewise with the
    units' parameters and ``total_params``.

    Args:
        units: every unit of the model, in forward order (``get_units``).
        scores: unit name -> score, lower = safer to remove; must cover every removable unit.
        budget: what to remove.
        total_macs: MACs of the whole model for one input (stem and head included), the denominator of a MAC budget.
        min_units_per_stage: smallest number of units any stage may keep.
        total_params: parameters of the whole model, the denominator of a parameter budget (needed only for one).

    Returns:
        Names of the units to remove, in forward order.

    Raises:
        ValueError: on inconsistent inputs, or when the budget cannot be met; the message says how far the
            selection got and what to change.
    """
    plan = _Plan(units, scores, budget, total_macs, min_units_per_stage, total_params)
    candidates = sorted((u.name for u in plan.units if u.removable), key=plan.sort_key)
    for name in candidates:
        if plan.met():
            break
        if plan.can_remove(name):
            plan.remove(name)
    if not plan.met():
        raise plan.fail("greedy selection in score order")
    logger.debug("selected %d units for budget %s: %s", len(plan.removed), budget, plan.removed)
    return plan.result()


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (Hamilton's largest-remainder method).

    Each share is the floor of its exact quota; the units left over go to the largest fractional parts, ties to
    the earlier position. Written out because it is five lines and exact in integer arithmetic.
    """
    weight_sum = sum(weights)
    floors = [total * w // weight_sum for w in weights]
    remainders = [total * w - f * weight_sum for w, f in zip(weights, floors)]
    extra = total - sum(floors)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:extra]:
        floors[i] += 1
    return floors


def select_per_segment(
    units: Sequence[UnitLike],
    scores: Mapping[str, float],
    segments: Sequence[Sequence[str]],
    budget: Budget,
    total_macs: int,
    min_units_per_stage: int = 2,
    allocation: str = "proportional",
    *,
    total_params: int | None = None,
) -> list[str]:
    """SGLP selection: spread the removals over segments, least important units of each segment first.

    Blocks budget (``blocks<N>``):

    1. Shares: N is split over the segments with the largest-remainder method, proportional to the number of
       units in each segment (``"proportional"``) or equally (``"uniform"``); remainder ties go to earlier segments.
    2. Segments take their shares in round-robin passes, one unit per segment per pass, each taking its
       lowest-scored unit that the stage minimum allows (ties in forward order). Round-robin rather than
       segment after segment, so that segments sharing a stage compete fairly for its last removable units.
    3. Whatever a segment could not take (too few removable units, or stage minimum reached) is handed to the
       other segments, again in round-robin passes in segment order, each taking its next-best allowed unit.

    MAC or parameter budget (``macs<P>``, ``params<P>``): units are added one at a time until the removed MACs
    (parameters) reach P% of ``total_macs`` (``total_params``);
    each step goes to the segment furthest below its share: the fewest units taken so far (``"uniform"``: plain
    round-robin over segments), or the smallest fraction of its size taken (``"proportional"``: round-robin weighted
    by segment size); ties go to the earlier segment. That segment gives its next-best allowed unit; a segment with
    none left drops out.

    Args:
        units: every unit of the model, in forward order.
        scores: unit name -> score, lower = safer to remove; must cover every removable unit.
        segments: disjoint lists of unit names (e.g. Fisher segments of the CKA rows mapped to names); every
            removable unit must be in one, non-removable units may be listed (they count toward segment size).
        budget: what to remove.
        total_macs: MACs of the whole model for one input.
        min_units_per_stage: smallest number of units any stage may keep.
        allocation: ``"proportional"`` or ``"uniform"``.
        total_params: parameters of the whole model, the denominator of a parameter budget (needed only for one).

    Returns:
        Names of the units to remove, in forward order.

    Raises:
        ValueError: on inconsistent inputs or an impossible budget, saying how far the selection got.
    """
    plan = _Plan(units, scores, budget, total_macs, min_units_per_stage, total_params)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; expected one of {list(ALLOCATIONS)}")
    _validate_segments(plan, segments)
    # Each segment's removable units, best (lowest score) first; a pointer per segment walks this list.
    queues = [sorted((n for n in seg if plan.by_name[n].removable), key=plan.sort_key) for seg in segments]
    sizes = [len(seg) for seg in segments]

    def take_next(i: int) -> bool:
        """Removes segment i's best still-allowed unit; False if it has none."""
        queue = queues[i]
        for pos, name in enumerate(queue):
            if plan.can_remove(name):
                plan.remove(name)
                del queue[pos]
                return True
        return False

    taken = [0] * len(segments)
    if budget.kind == "blocks":
        weights = sizes if allocation == "proportional" else [1] * len(segments)
        shares = _largest_remainder(budget.value, weights)
        logger.debug("segment sizes %s, shares of %s: %s", sizes, budget, shares)
        progress = True
        while progress:
            progress = False
            for i in range(len(segments)):
                if taken[i] < shares[i] and take_next(i):
                    taken[i] += 1
                    progress = True
        # Hand what some segments could not take to the others.
        progress = True
        while not plan.met() and progress:
            progress = False
            for i in range(len(segments)):
                if plan.met():
                    break
                if take_next(i):
                    taken[i] += 1
                    progress = True
    else:
        active = set(range(len(segments)))
        while not plan.met() and active:
            if allocation == "uniform":
                i = min(active, key=lambda j: (taken[j], j))
            else:
                # Exact rational comparison: float ratios could tie-break differently across platforms.
                i = min(active, key=lambda j: (Fraction(taken[j], sizes[j]), j))
            if take_next(i):
                taken[i] += 1
            else:
                active.discard(i)
    if not plan.met():
        raise plan.fail(f"per-segment selection ({allocation} over {len(segments)} segments)")
    logger.debug("per-segment removals %s for budget %s", taken, budget)
    return plan.result()


def _blocks(units: Sequence[UnitLike], n: int, min_units_per_stage: int) -> list[list[UnitLike]]:
    """Every run of ``n`` consecutive removable units of one stage whose removal leaves the stage at least
    ``min_units_per_stage`` units, in forward order."""
    out = []
    for stage in sorted({u.stage for u in units}):
        members = [u for u in units if u.stage == stage]
        if len(members) - n < min_units_per_stage:
            continue
        for start in range(len(members) - n + 1):
            block = members[start : start + n]
            if all(u.removable for u in block):
                out.append(block)
    return out


def select_span(
    units: Sequence[UnitLike],
    span_scores: Callable[[int], Mapping[str, float]],
    budget: Budget,
    total_macs: int,
    min_units_per_stage: int = 2,
    *,
    total_params: int | None = None,
) -> tuple[list[str], dict[str, float], int]:
    """Gromov et al.'s selection: remove one block of n consecutive removable units of one stage.

    The budget sets n: ``blocks<N>`` gives n = N; ``macs<P>`` and ``params<P>`` give the smallest n for which some
    allowed block removes at least P% of the MACs (parameters). A block is allowed when its units are consecutive,
    all removable and of one stage (a block never crosses a stage: in a CNN the downsampling unit between stages
    is not removable, and the angle between inputs and outputs of different shapes is undefined), and the stage
    keeps at least ``min_units_per_stage`` units. ``span_scores(n)`` is then called once and scores each block by
    its first unit (a block it leaves out is no candidate); among the allowed blocks that meet the budget, the one
    with the lowest score goes (ties: the earlier block).

    Args:
        units: every unit of the model, in forward order.
        span_scores: n -> first unit of a block of n units -> score, lower = safer to remove.
        budget: what to remove.
        total_macs: MACs of the whole model for one input.
        min_units_per_stage: smallest number of units any stage may keep.
        total_params: parameters of the whole model (needed for a parameter budget).

    Returns:
        The removed units in forward order, the scores of n (keyed by a block's first unit), and n.

    Raises:
        ValueError: on inconsistent inputs, when no allowed block meets the budget (naming the longest allowed
            block), or when the scores leave out every allowed block.
    """
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget (e.g. Budget.parse('blocks2')), got {budget!r}")
    _validate_units(units, total_macs)
    _check_total_params(budget, total_params)

    def meets(block: list[UnitLike]) -> bool:
        return budget.is_met(
            len(block),
            sum(int(u.macs) for u in block),
            total_macs,
            removed_params=sum(int(u.params) for u in block),
            total_params=total_params,
        )

    lengths = [budget.value] if budget.kind == "blocks" else range(1, len(units) + 1)
    allowed: list[list[UnitLike]] = []
    for n in lengths:
        allowed = [block for block in _blocks(units, n, min_units_per_stage) if meets(block)]
        if allowed:
            break
    if not allowed:
        longest = max((n for n in range(1, len(units) + 1) if _blocks(units, n, min_units_per_stage)), default=0)
        raise ValueError(
            f"budget {budget} cannot be met by one block of consecutive removable units of one stage: the longest "
            f"such block has {longest} units with min_units_per_stage={min_units_per_stage}. Lower the budget or "
            "min_units_per_stage, or choose a criterion that removes units anywhere (angular)"
        )
    scores = {}
    for name, value in span_scores(n).items():
        if not math.isfinite(float(value)):
            raise ValueError(f"score of the block starting at {name!r} is {value}; scores must be finite numbers")
        scores[name] = float(value)
    scored = [block for block in allowed if block[0].name in scores]
    if not scored:
        raise ValueError(
            f"the span scores for n={n} leave out every allowed block (first units {[b[0].name for b in allowed]})"
        )
    best = min(scored, key=lambda block: scores[block[0].name])  # min keeps the earliest of equal scores
    logger.debug("span of %d units for budget %s: %s", n, budget, [u.name for u in best])
    return [u.name for u in best], scores, n


def _validate_segments(plan: _Plan, segments: Sequence[Sequence[str]]) -> None:
    if len(segments) == 0:
        raise ValueError("segments is empty; pass at least one list of unit names")
    owner: dict[str, int] = {}
    for i, seg in enumerate(segments):
        if isinstance(seg, str) or len(seg) == 0:
            raise ValueError(f"segment {i} must be a non-empty list of unit names, got {seg!r}")
        for name in seg:
            if name not in plan.by_name:
                raise ValueError(f"segment {i} names unit {name!r}, which the model does not have")
            if name in owner:
                raise ValueError(f"unit {name!r} is in segments {owner[name]} and {i}; segments must be disjoint")
            owner[name] = i
    orphans = [u.name for u in plan.units if u.removable and u.name not in owner]
    if orphans:
        raise ValueError(
            f"removable units {orphans} are in no segment; segments must cover every removable unit "
            "(segment the similarity matrix of the same units)"
        )


def plan_summary(
    units: Sequence[UnitLike], removed: Iterable[str], total_macs: int, total_params: int
) -> dict[str, Any]:
    """What removing ``removed`` predicts for the model's size, as JSON-ready plain data.

    The prediction is additive: a unit's MACs and parameters disappear with it and nothing else changes, which
    holds for residual units bypassed by an identity shortcut (the lead's surgery reports the measured numbers).

    Args:
        units: every unit of the model, in forward order.
        removed: names of removable units to remove.
        total_macs: MACs of the whole model for one input.
        total_params: parameters of the whole model.

    Returns:
        Dict with ``removed`` (names, forward order), ``n_removed``, ``removed_macs``, ``removed_params``,
        ``remaining_macs``, ``remaining_params``, ``macs_reduction`` and ``params_reduction`` (fractions in
        [0, 1]), ``blocks_per_stage_before`` and ``blocks_per_stage_after`` (lists indexed by stage).

    Raises:
        ValueError: if a name is unknown, repeated or not removable, or the totals are not positive ints.
    """
    _validate_units(units, total_macs)
    if isinstance(total_params, bool) or not isinstance(total_params, int) or total_params <= 0:
        raise ValueError(f"total_params={total_params!r} must be a positive int: the whole model's parameters")
    by_name = {u.name: u for u in units}
    removed = list(removed)
    if len(set(removed)) != len(removed):
        raise ValueError(f"removed lists a unit twice: {removed}")
    for name in removed:
        if name not in by_name:
            raise ValueError(f"removed names unit {name!r}, which the model does not have")
        if not by_name[name].removable:
            raise ValueError(f"unit {name!r} is not removable (it changes the shape); it cannot be removed")
    removed_set = set(removed)
    ordered = [u.name for u in units if u.name in removed_set]
    removed_macs = sum(int(by_name[n].macs) for n in ordered)
    removed_params = sum(int(by_name[n].params) for n in ordered)
    if removed_params > total_params:
        raise ValueError(f"removed units hold {removed_params} parameters, more than total_params={total_params}")
    n_stages = max(u.stage for u in units) + 1
    before = [0] * n_stages
    after = [0] * n_stages
    for u in units:
        before[u.stage] += 1
        if u.name not in removed_set:
            after[u.stage] += 1
    return {
        "removed": ordered,
        "n_removed": len(ordered),
        "removed_macs": removed_macs,
        "removed_params": removed_params,
        "remaining_macs": int(total_macs) - removed_macs,
        "remaining_params": int(total_params) - removed_params,
        "macs_reduction": removed_macs / total_macs,
        "params_reduction": removed_params / total_params,
        "blocks_per_stage_before": before,
        "blocks_per_stage_after": after,
    }
