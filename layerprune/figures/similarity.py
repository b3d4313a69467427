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

from layerprune.figures.style import figure_style, method_color, note
from layerprune.summary import method_label

__all__ = ["cka_segments", "criterion_scores"]

_REMOVED_COLOR = "#d62728"


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
    return [u for u in order if u in set(seen)] + [u for u in seen if u not in set(order)]


@figure_style()
def criterion_scores(
    scores: Mapping[str, pd.DataFrame],
    budget: str | None = None,
    segments: Mapping[str, Any] | None = None,
) -> Figure:
    """Each criterion's score of every unit (one panel per method, lower = safer to remove), the units it removed
    at ``budget`` in red, and the Fisher segment boundaries as dotted lines.

    Args:
        scores: per method, its ``scores.csv`` (``unit, score, removed``) at one budget.
        budget: the budget shown, for the title.
        segments: ``segments.json`` content; gives the unit order and the boundaries.
    """
    methods = list(scores)
    n = max(1, len(methods))
    order = _unit_order(scores, None if segments is None else list(segments["units"]))
    width = min(14.0, 4.0 + 0.35 * len(order))
    fig, axes = plt.subplots(n, 1, figsize=(width, 1.5 * n + 1.2), sharex=True, squeeze=False)
    if not methods:
        note(axes[0, 0], "no scores.csv given (pruning stage not run)")
        return fig
    x = np.arange(len(order))
    for ax, method in zip(axes[:, 0], methods):
        frame = scores[method].drop_duplicates("unit").set_index("unit").reindex(order)
        values = frame["score"].to_numpy(float)
        removed = frame["removed"].fillna(False).to_numpy(bool)
        colors = [_REMOVED_COLOR if r else method_color(method, methods) for r in removed]
        finite = np.isfinite(values)
        if not finite.any():
            note(ax, f"{method_label(method)}: no finite scores")
            continue
        ax.bar(x[finite], values[finite], color=np.array(colors, dtype=object)[finite].tolist(), width=0.8)
        ax.set_ylabel(method_label(method), rotation=0, ha="right", va="center")
        ax.grid(axis="x", visible=False)
        if segments is not None:
            units = list(segments["units"])
            for start, _stop in segments["segments"][1:]:
                if units[start] in order:
                    ax.axvline(order.index(units[start]) - 0.5, color="0.3", linestyle=":", linewidth=1)
    axes[-1, 0].set_xticks(x, order, rotation=90, fontsize=7)
    handles = [Patch(color=_REMOVED_COLOR, label=f"removed{'' if budget is None else f' at {budget}'}")]
    if segments is not None:
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="segment boundary"))
    fig.suptitle("Per-unit scores of each criterion (lower = safer to remove)")
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), frameon=False)
    return fig
