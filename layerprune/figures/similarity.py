"""Figures of the representations: the unit-by-unit CKA heatmap with the Fisher segments, and every criterion's
per-unit scores with the removed units marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from layerprune.figures.style import REMOVED_COLOR, figure_style, method_color, note
from layerprune.summary import method_label

__all__ = ["cka_segments", "criterion_scores", "criterion_scores_data"]


@figure_style()
def cka_segments(cka: pd.DataFrame | None, segments: Mapping[str, Any] | None = None) -> Figure:
    """Linear CKA between the outputs of every pair of units (rows and columns: ``stem`` then the units in forward
    order), with the Fisher segments drawn as boxes on the diagonal.

    Args:
        cka: (L + 1, L + 1) matrix indexed by names (:func:`layerprune.figures.inputs.read_cka`), or None.
        segments: ``segments.json`` content; its ``[start, stop)`` ranges index its ``units`` list, which are
            placed on the heatmap by name (so the stem row offsets them by one).
    """
    size = 5.5 if cka is None else min(12.0, 3.5 + 0.22 * len(cka))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    if cka is None or cka.empty:
        note(ax, "no CKA matrix (similarity stage not run)")
        return fig
    names = list(cka.index)
    image = ax.imshow(cka.to_numpy(float), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="linear CKA")
    fontsize = 7 if len(names) <= 30 else 5
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(names)), names, fontsize=fontsize)
    ax.grid(False)
    title = "Unit-by-unit CKA"
    if segments is None:
        title += " (no segmentation)"
    else:
        units = list(segments["units"])
        unknown = [u for u in units if u not in names]
        if unknown:
            raise ValueError(
                f"segments name units {unknown[:5]} absent from the CKA matrix {names[:5]}...; both must come from "
                "the same experiment's similarity stage"
            )
        for start, stop in segments["segments"]:
            first, last = names.index(units[start]), names.index(units[stop - 1])
            ax.add_patch(
                Rectangle(
                    (first - 0.5, first - 0.5),
                    last - first + 1,
                    last - first + 1,
                    fill=False,
                    edgecolor="white",
                    linewidth=2.0,
                )
            )
            ax.add_patch(
                Rectangle(
                    (first - 0.5, first - 0.5),
                    last - first + 1,
                    last - first + 1,
                    fill=False,
                    edgecolor="#d62728",
                    linewidth=1.0,
                    linestyle="--",
                )
            )
        title += f" with k = {segments.get('k', len(segments['segments']))} Fisher segments"
    ax.set_title(title)
    return fig


def _unit_order(scores: Mapping[str, pd.DataFrame], order: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(u for frame in scores.values() for u in frame["unit"]))
    if order is None:
        return seen
    # every unit of the segmentation, scored or not (a unit no criterion may remove still marks a boundary)
    return list(order) + [u for u in seen if u not in set(order)]


def criterion_scores_data(
    scores: Mapping[str, pd.DataFrame], segments: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, list[float]]:
    """The bars and lines of :func:`criterion_scores`.

    Returns:
        ``(bars, boundaries)``: bars has ``method, unit, position, score, removed`` for every method and every unit
        in forward order (NaN score: a unit the criterion did not score, e.g. one that cannot be removed);
        boundaries are the x positions between segments, one per segment after the first.
    """
    order = _unit_order(scores, None if segments is None else list(segments["units"]))
    rows = []
    for method, frame in scores.items():
        indexed = frame.drop_duplicates("unit").set_index("unit").reindex(order)
        for position, unit in enumerate(order):
            rows.append(
                {
                    "method": method,
                    "unit": unit,
                    "position": position,
                    "score": float(indexed.loc[unit, "score"]),
                    "removed": bool(indexed.loc[unit, "removed"])
                    if not pd.isna(indexed.loc[unit, "removed"])
                    else False,
                }
            )
    boundaries = []
    if segments is not None:
        units = list(segments["units"])
        boundaries = [order.index(units[start]) - 0.5 for start, _stop in segments["segments"][1:]]
    return pd.DataFrame(rows, columns=["method", "unit", "position", "score", "removed"]), boundaries


@figure_style()
def criterion_scores(
    scores: Mapping[str, pd.DataFrame],
    budget: str | None = None,
    segments: Mapping[str, Any] | None = None,
) -> Figure:
    """Each criterion's score of every unit (one panel per method, lower = safer to remove), the units it removed
    at ``budget`` in black (a colour no method has), and every Fisher segment boundary as a dotted line.

    Args:
        scores: per method, its ``scores.csv`` (``unit, score, removed``) at one budget.
        budget: the budget shown, for the title.
        segments: ``segments.json`` content; gives the unit order and the boundaries.
    """
    methods = list(scores)
    n = max(1, len(methods))
    bars, boundaries = criterion_scores_data(scores, segments)
    order = list(dict.fromkeys(bars["unit"])) if not bars.empty else []
    width = min(14.0, 4.0 + 0.35 * len(order))
    fig, axes = plt.subplots(n, 1, figsize=(width, 1.5 * n + 1.2), sharex=True, squeeze=False)
    if not methods:
        note(axes[0, 0], "no scores.csv given (pruning stage not run)")
        return fig
    for ax, method in zip(axes[:, 0], methods):
        rows = bars[bars["method"] == method]
        finite = rows[np.isfinite(rows["score"].to_numpy(float))]
        if finite.empty:
            note(ax, f"{method_label(method)}: no finite scores")
            continue
        colors = [REMOVED_COLOR if r else method_color(method, methods) for r in finite["removed"]]
        ax.bar(finite["position"].to_numpy(int), finite["score"].to_numpy(float), color=colors, width=0.8)
        ax.set_ylabel(method_label(method), rotation=0, ha="right", va="center")
        ax.grid(axis="x", visible=False)
        for x in boundaries:
            ax.axvline(x, color="0.3", linestyle=":", linewidth=1)
    scored = set(bars.loc[np.isfinite(bars["score"].to_numpy(float)), "unit"])
    axes[-1, 0].set_xticks(range(len(order)), order, rotation=90, fontsize=7)
    for tick, unit in zip(axes[-1, 0].get_xticklabels(), order):
        if unit not in scored:
            tick.set_color("0.6")
    handles = [Patch(color=REMOVED_COLOR, label=f"removed{'' if budget is None else f' at {budget}'}")]
    if segments is not None:
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="segment boundary"))
    if scored != set(order):
        handles.append(Patch(color="white", label="grey name: unit not scored (not removable)"))
    fig.suptitle("Per-unit scores of each criterion (lower = safer to remove)")
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), frameon=False)
    return fig
