"""The criterion registry: one :class:`Criterion` record per pruning criterion, in the spirit of
torchvision's ``register_model``/``get_model``.

A record says everything the rest of the package and the workflow need to know about a criterion:
its display label and paper, the inputs it reads (representations, the candidate distance table,
the segments, labelled calibration batches), whether it is iterative, how it selects (globally or
per segment), which settings of the config's ``pruning`` section it reads, whether it reads the
``finetune`` section, and its scoring function. Pruning, the ``prune`` command, the schema's method
enum (checked by a test), the summary labels, the figure palette and the workflow's ``prune_model``
inputs and params all read the records; adding a criterion is one :func:`register_criterion` call
(see :mod:`layerprune.criteria.catalog`).

This module imports no torch: the workflow reads the registry while it builds the job graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from layerprune.similarity.extract import Representations

__all__ = [
    "CALIBRATION",
    "CANDIDATES",
    "INPUTS",
    "REPRESENTATIONS",
    "SEGMENTS",
    "Criterion",
    "ScoringInputs",
    "criteria",
    "criterion_names",
    "get_criterion",
    "register_criterion",
]

#: The extraction artifact (penultimate features intact and bypassed, input/output cosines, losses).
REPRESENTATIONS = "representations"
#: The similarity stage's tidy ``unit, metric, distance`` table.
CANDIDATES = "candidates"
#: The segment stage's contiguous segments of units.
SEGMENTS = "segments"
#: Labelled calibration batches (the calibration subset of the training split).
CALIBRATION = "calibration"
#: Every input a criterion can read, in the order the workflow declares them.
INPUTS = (REPRESENTATIONS, CANDIDATES, SEGMENTS, CALIBRATION)


@dataclass
class ScoringInputs:
    """What a scoring function may read; a criterion reads only the fields its record declares.

    Attributes:
        model: the model whose units are scored (not modified).
        candidates: names of the removable units to score.
        representations: the extraction artifact (``REPRESENTATIONS``).
        candidate_distances: tidy ``unit, metric, distance`` table (``CANDIDATES``).
        consensus_metrics: metrics of that table a voting criterion uses.
        calibration_batches: returns an iterable of labelled ``(x, y)`` batches (``CALIBRATION``).
        seed: seed of a stochastic criterion.
        precision: arithmetic of linear CKA products (the config's ``similarity.precision``; None = the
            features' precision), for criteria whose record lists it in ``similarity_settings``.
        span: the number of consecutive units a ``"span"`` criterion scores together (set by the budget).
        device: where scoring runs.
    """

    model: nn.Module
    candidates: Sequence[str]
    representations: Representations | None = None
    candidate_distances: pd.DataFrame | None = None
    consensus_metrics: Sequence[str] = ("cka",)
    calibration_batches: Callable[[], Any] | None = None
    seed: int = 0
    precision: str | None = None
    span: int = 1
    device: torch.device | str = "cpu"


@dataclass(frozen=True)
class Criterion:
    """One pruning criterion (lower score = safer to remove).

    Attributes:
        name: the config's and the command line's name (``methods`` entries, ``--method``).
        label: display name in tables and figure legends.
        reference: the paper (title or authors, year, link) the criterion follows.
        score: scoring function, :class:`ScoringInputs` -> unit name -> score.
        needs: inputs the scoring function reads (a subset of :data:`INPUTS`).
        iterative: ``"never"`` (one-shot), ``"optional"`` (one-shot unless the config's
            ``pruning.iterative`` is true) or ``"always"`` (rescores the smaller model after each
            removal, e.g. SLEB). An iterative run extracts its own representations from labelled
            calibration batches after each step, so it reads :data:`CALIBRATION` only.
        selection: ``"global"`` (the lowest scores over the whole network), ``"per_segment"``
            (the budget spread over the segments; reads :data:`SEGMENTS` and ``pruning.allocation``) or
            ``"span"`` (one block of n consecutive units of one stage, n set by the budget: the scoring
            function scores each block by its first unit for ``ScoringInputs.span`` = n;
            :func:`layerprune.selection.select_span`).
        settings: keys of the config's ``pruning`` section the scoring reads, besides those
            every selection reads (``min_units_per_stage``) or that follow from ``iterative`` and
            ``selection``.
        similarity_settings: keys of the config's ``similarity`` section the scoring reads (each passed to
            the ``prune`` command as ``--<key>``), e.g. ``precision`` for CKA's arithmetic.
        finetune_between: an iterative run can fine-tune between steps
            (``pruning.finetune_epochs_between``) with the ``finetune`` section's settings.
        one_unit_per_step: an iterative run removes one unit per step whatever
            ``pruning.units_per_step`` says, and never fine-tunes in between (SLEB).
        description: one line on what the score is.
        in_default: listed in the schema's default ``methods`` (False for a criterion that cannot meet most of
            the budgets a config leaves at their defaults, e.g. a span of consecutive units on a CNN).
        color: a fixed figure colour (matplotlib colour spec), or None for the palette's next.
    """

    name: str
    label: str
    reference: str
    score: Callable[[ScoringInputs], dict[str, float]]
    needs: frozenset[str] = frozenset()
    iterative: Literal["never", "optional", "always"] = "never"
    selection: Literal["global", "per_segment", "span"] = "global"
    settings: tuple[str, ...] = ()
    similarity_settings: tuple[str, ...] = ()
    finetune_between: bool = False
    one_unit_per_step: bool = False
    description: str = ""
    in_default: bool = True
    color: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.needs) - set(INPUTS))
        if unknown:
            raise ValueError(f"criterion {self.name!r}: unknown inputs {unknown}; expected a subset of {list(INPUTS)}")
        if self.iterative not in ("never", "optional", "always"):
            raise ValueError(
                f"criterion {self.name!r}: iterative={self.iterative!r}; expected never, optional or always"
            )
        if self.selection not in ("global", "per_segment", "span"):
            raise ValueError(
                f"criterion {self.name!r}: selection={self.selection!r}; expected global, per_segment or span"
            )
        if self.selection == "span" and self.iterative != "never":
            raise ValueError(f"criterion {self.name!r}: a span criterion removes one block at once; iterative='never'")

    def is_iterative(self, pruning: Mapping[str, Any]) -> bool:
        """Whether a run with this ``pruning`` config section rescores between removals."""
        return self.iterative == "always" or (self.iterative == "optional" and bool(pruning["iterative"]))

    def stage_inputs(self, pruning: Mapping[str, Any]) -> tuple[str, ...]:
        """The inputs (of :data:`INPUTS`, in that order) the pruning stage reads with this ``pruning`` section.

        Scoring inputs for a one-shot run, plus the segments for per-segment selection; an iterative
        run reads the labelled calibration batches only (it extracts from the shrinking model itself).
        """
        if self.is_iterative(pruning):
            wanted = {CALIBRATION}
        else:
            wanted = set(self.needs) | ({SEGMENTS} if self.selection == "per_segment" else set())
        return tuple(name for name in INPUTS if name in wanted)

    def pruning_keys(self, pruning: Mapping[str, Any]) -> tuple[str, ...]:
        """The keys of the ``pruning`` section the stage reads with this ``pruning`` section."""
        keys = ["min_units_per_stage", *self.settings]
        if self.iterative == "optional":
            keys.append("iterative")
        if self.is_iterative(pruning) and not self.one_unit_per_step:
            keys.append("units_per_step")
            if self.finetune_between:
                keys.append("finetune_epochs_between")
        if self.selection == "per_segment" and not self.is_iterative(pruning):
            keys.append("allocation")
        return tuple(keys)

    def reads_finetune(self, pruning: Mapping[str, Any]) -> bool:
        """Whether the stage fine-tunes between steps with this ``pruning`` section (then it reads ``finetune``)."""
        return (
            self.finetune_between
            and self.is_iterative(pruning)
            and not self.one_unit_per_step
            and pruning["finetune_epochs_between"] > 0
        )


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    """Adds ``criterion`` to the registry and returns it.

    Raises:
        ValueError: a criterion of that name is already registered.
    """
    if criterion.name in _REGISTRY:
        raise ValueError(f"a criterion named {criterion.name!r} is already registered; choose another name")
    _REGISTRY[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    """The record of criterion ``name``.

    Raises:
        ValueError: no criterion of that name, naming the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown criterion {name!r}; expected one of {sorted(_REGISTRY)}") from None


def criteria() -> tuple[Criterion, ...]:
    """Every registered criterion, in registration order (the order of figures and tables)."""
    return tuple(_REGISTRY.values())


def criterion_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)
