"""The papers' figures, drawn from result files only (never from models).

One function per figure returns a matplotlib Figure (:mod:`.results`, :mod:`.similarity`, :mod:`.robustness`);
:func:`make_figures` reads the inputs it is given, draws the figures asked for and writes each as
``<out_dir>/<name>.<fmt>`` per format. A figure whose inputs are absent (a disabled stage) is still written, with a
note in place of the missing panel, so a workflow's declared outputs always exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from layerprune.figures import inputs
from layerprune.figures.language import perplexity_vs_layers, scores_vs_drop_one
from layerprune.figures.results import (
    accuracy_data,
    accuracy_vs_macs,
    compare_experiments,
    energy,
    energy_data,
    pareto,
    pareto_data,
    removed_units,
    removed_units_data,
)
from layerprune.figures.robustness import (
    adversarial_data,
    corruption_data,
    robustness_adversarial,
    robustness_corruptions,
)
from layerprune.figures.shortcut import shortcut
from layerprune.figures.similarity import cka_segments, criterion_scores, criterion_scores_data
from layerprune.figures.style import (  # first: selects the Agg backend
    FORMATS,
    save_figure,
)

__all__ = [
    "FIGURES",
    "FIGURE_DATA",
    "FORMATS",
    "FigureInputs",
    "accuracy_vs_macs",
    "cka_segments",
    "compare_experiments",
    "criterion_scores",
    "energy",
    "make_figures",
    "pareto",
    "perplexity_vs_layers",
    "removed_units",
    "robustness_adversarial",
    "robustness_corruptions",
    "save_figure",
    "scores_vs_drop_one",
    "shortcut",
]

logger = logging.getLogger(__name__)


@dataclass
class FigureInputs:
    """Paths of the result files the figures read; any may be absent (None or empty).

    Attributes:
        summary: ``summary.csv`` (accuracy_vs_macs, energy, pareto, removed_units).
        cka: ``similarity/unit_cka.csv``; segments: ``segments/segments.json`` (cka_segments, criterion_scores).
        scores: ``pruned/<method>/<budget>/seed<N>/scores.csv`` files; scores_budget: the budget to show
            (default: the first).
        adversarial, corruptions: ``robustness/<model>/{adversarial,corruptions}.csv`` files, baseline included.
        compare: other experiments' ``summary.csv`` (keyed by experiment name, or a list keyed by folder name).
        drop_one: ``drop_one.csv`` of a causal LM (scores_vs_drop_one).
    """

    summary: Path | None = None
    cka: Path | None = None
    segments: Path | None = None
    scores: Sequence[Path] = field(default_factory=list)
    scores_budget: str | None = None
    adversarial: Sequence[Path] = field(default_factory=list)
    corruptions: Sequence[Path] = field(default_factory=list)
    compare: Sequence[Path] | Mapping[str, Path] = field(default_factory=list)
    drop_one: Path | None = None


def _summary_figure(draw: Callable) -> Callable[[FigureInputs], Figure]:
    def build(given: FigureInputs) -> Figure:
        if given.summary is None:
            raise ValueError("this figure needs --summary (the summary.csv of `layerprune summarize`)")
        return draw(inputs.read_summary(given.summary))

    return build


def _summary_of(given: FigureInputs) -> pd.DataFrame:
    if given.summary is None:
        raise ValueError("this figure needs --summary (the summary.csv of `layerprune summarize`)")
    return inputs.read_summary(given.summary)


def _units(given: FigureInputs) -> list[str] | None:
    segments = inputs.read_segments(given.segments)
    return None if segments is None else list(segments["units"])


def _removed(given: FigureInputs) -> Figure:
    return removed_units(_summary_of(given), _units(given))


def _cka(given: FigureInputs) -> Figure:
    return cka_segments(inputs.read_cka(given.cka), inputs.read_segments(given.segments))


def _scores(given: FigureInputs) -> Figure:
    scores, budget = inputs.read_scores(given.scores, given.scores_budget)
    return criterion_scores(scores, budget, inputs.read_segments(given.segments))


def _drop_one(given: FigureInputs) -> Figure:
    scores, budget = inputs.read_scores(given.scores, given.scores_budget)
    return scores_vs_drop_one(scores, inputs.read_drop_one(given.drop_one), budget)


def _adversarial(given: FigureInputs) -> Figure:
    needed = ("attack", "epsilon", "robust_accuracy")
    return robustness_adversarial(inputs.read_robustness(given.adversarial, needed))


def _corruptions(given: FigureInputs) -> Figure:
    needed = ("corruption", "group", "severity", "accuracy")
    return robustness_corruptions(inputs.read_robustness(given.corruptions, needed))


def _compare(given: FigureInputs) -> Figure:
    summaries = {}
    if given.summary is not None:
        summaries[Path(given.summary).parent.name] = given.summary
    others = (
        given.compare.items()
        if isinstance(given.compare, Mapping)
        else ((Path(p).parent.name, p) for p in given.compare)
    )
    for name, path in others:
        summaries.setdefault(name, path)
    return compare_experiments(inputs.read_summaries(summaries))


#: Figure name (the output file's stem) -> builder from :class:`FigureInputs`.
FIGURES: dict[str, Callable[[FigureInputs], Figure]] = {
    "accuracy_vs_macs": _summary_figure(accuracy_vs_macs),
    "cka_segments": _cka,
    "criterion_scores": _scores,
    "robustness_adversarial": _adversarial,
    "robustness_corruptions": _corruptions,
    "energy": _summary_figure(energy),
    "pareto": _summary_figure(pareto),
    "removed_units": _removed,
    "compare_experiments": _compare,
    "perplexity_vs_layers": _summary_figure(perplexity_vs_layers),
    "scores_vs_drop_one": _drop_one,
    "shortcut": _summary_figure(shortcut),
}


def _scores_data(given: FigureInputs) -> pd.DataFrame:
    scores, _budget = inputs.read_scores(given.scores, given.scores_budget)
    return criterion_scores_data(scores, inputs.read_segments(given.segments))[0]


#: Figure name -> the table of what it draws, from the same inputs and the same function the figure calls (every
#: figure with methods has a ``method`` column), so tests and readers can check a figure's content without pixels.
FIGURE_DATA: dict[str, Callable[[FigureInputs], pd.DataFrame]] = {
    "accuracy_vs_macs": lambda given: accuracy_data(_summary_of(given)),
    "energy": lambda given: energy_data(_summary_of(given)),
    "pareto": lambda given: pareto_data(_summary_of(given)),
    "removed_units": lambda given: removed_units_data(_summary_of(given), _units(given)),
    "criterion_scores": _scores_data,
    "robustness_adversarial": lambda given: adversarial_data(
        inputs.read_robustness(given.adversarial, ("attack", "epsilon", "robust_accuracy"))
    ),
    "robustness_corruptions": lambda given: corruption_data(
        inputs.read_robustness(given.corruptions, ("corruption", "group", "severity", "accuracy"))
    ),
}


_SUMMARY_FIGURES = ("accuracy_vs_macs", "energy", "pareto", "removed_units", "compare_experiments")


def make_figures(
    given: FigureInputs,
    out_dir: str | Path,
    *,
    only: Sequence[str] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> dict[str, list[Path]]:
    """Draws and writes the figures named in ``only`` (default: every figure but ``shortcut``, drawn only when
    asked for, ``compare_experiments``, drawn only when asked for or when ``given.compare`` lists others, and the
    causal-LM figures, drawn when ``given.drop_one`` is given).

    Returns:
        Figure name -> written paths (one per format).

    Raises:
        ValueError: an unknown figure name, format or dpi; a summary figure asked for without a summary.
    """
    if only:
        unknown = [n for n in only if n not in FIGURES]
        if unknown:
            raise ValueError(f"unknown figures {unknown}; expected some of {list(FIGURES)}")
        names = list(dict.fromkeys(only))
    else:
        # compare_experiments only with other experiments; shortcut only when asked (its section is off by default)
        names = [n for n in FIGURES if (n != "compare_experiments" or given.compare) and n != "shortcut"]
        if given.drop_one is None:  # the causal-LM figures, drawn for a language model's results
            names = [n for n in names if n not in ("perplexity_vs_layers", "scores_vs_drop_one")]
        if given.summary is None:
            names = [n for n in names if n not in _SUMMARY_FIGURES]
    written = {}
    for name in names:
        logger.info("drawing %s", name)
        written[name] = save_figure(FIGURES[name](given), out_dir, name, formats, dpi)
    return written
