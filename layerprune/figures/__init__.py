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

from matplotlib.figure import Figure

from layerprune.figures import inputs
from layerprune.figures.results import (
    accuracy_vs_macs,
    compare_experiments,
    energy,
    pareto,
)
from layerprune.figures.robustness import robustness_adversarial, robustness_corruptions
from layerprune.figures.shortcut import shortcut
from layerprune.figures.similarity import cka_segments, criterion_scores
from layerprune.figures.style import (  # first: selects the Agg backend
    FORMATS,
    save_figure,
)

__all__ = [
    "FIGURES",
    "FORMATS",
    "FigureInputs",
    "accuracy_vs_macs",
    "cka_segments",
    "compare_experiments",
    "criterion_scores",
    "energy",
    "make_figures",
    "pareto",
    "robustness_adversarial",
    "robustness_corruptions",
    "save_figure",
    "shortcut",
]

logger = logging.getLogger(__name__)


@dataclass
class FigureInputs:
    """Paths of the result files the figures read; any may be absent (None or empty).

    Attributes:
        summary: ``summary.csv`` (accuracy_vs_macs, energy, pareto).
        cka: ``similarity/unit_cka.csv``; segments: ``segments/segments.json`` (cka_segments, criterion_scores).
        scores: ``pruned/<method>/<budget>/seed<N>/scores.csv`` files; scores_budget: the budget to show
            (default: the first).
        adversarial, corruptions: ``robustness/<model>/{adversarial,corruptions}.csv`` files, baseline included.
        compare: other experiments' ``summary.csv`` (keyed by experiment name, or a list keyed by folder name).
    """

    summary: Path | None = None
    cka: Path | None = None
    segments: Path | None = None
    scores: Sequence[Path] = field(default_factory=list)
    scores_budget: str | None = None
    adversarial: Sequence[Path] = field(default_factory=list)
    corruptions: Sequence[Path] = field(default_factory=list)
    compare: Sequence[Path] | Mapping[str, Path] = field(default_factory=list)


def _summary_figure(draw: Callable) -> Callable[[FigureInputs], Figure]:
    def build(given: FigureInputs) -> Figure:
        if given.summary is None:
            raise ValueError("this figure needs --summary (the summary.csv of `layerprune summarize`)")
        return draw(inputs.read_summary(given.summary))

    return build


def _cka(given: FigureInputs) -> Figure:
    return cka_segments(inputs.read_cka(given.cka), inputs.read_segments(given.segments))


def _scores(given: FigureInputs) -> Figure:
    scores, budget = inputs.read_scores(given.scores, given.scores_budget)
    return criterion_scores(scores, budget, inputs.read_segments(given.segments))


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
    "compare_experiments": _compare,
    "shortcut": _summary_figure(shortcut),
}


def make_figures(
    given: FigureInputs,
    out_dir: str | Path,
    *,
    only: Sequence[str] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> dict[str, list[Path]]:
    """Draws and writes the figures named in ``only`` (default: every figure but ``shortcut``, drawn only when
    asked for, and ``compare_experiments``, drawn only when asked for or when ``given.compare`` lists others).

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
        if given.summary is None:
            names = [n for n in names if n not in ("accuracy_vs_macs", "energy", "pareto", "compare_experiments")]
    written = {}
    for name in names:
        logger.info("drawing %s", name)
        written[name] = save_figure(FIGURES[name](given), out_dir, name, formats, dpi)
    return written
