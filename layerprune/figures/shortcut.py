"""Shortcut-learning figure: per budget, aligned and conflicting accuracy (and clean accuracy) of the unpruned
model beside every criterion, all fine-tuned on the same biased training set (``docs/shortcut.md``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from layerprune.figures.style import figure_style, method_color, note
from layerprune.summary import budget_sort_key, final_rows, method_label

__all__ = ["shortcut"]

#: (summary column, legend label, hatch, alpha) of the bars of one model.
_BARS = (
    ("shortcut_aligned_accuracy", "aligned (own class's cue)", "", 1.0),
    ("shortcut_conflicting_accuracy", "conflicting (other class's cue)", "//", 0.45),
)


@figure_style()
def shortcut(summary: pd.DataFrame) -> Figure:
    """One panel per budget: for the baseline and each method (mean over seeds), a solid bar of aligned accuracy
    and a hatched bar of conflicting accuracy, with clean accuracy as a tick and the reliance (aligned -
    conflicting, points) written above; the baseline's reliance is a dotted line across the panel."""
    if "shortcut_reliance" not in summary.columns or summary["shortcut_reliance"].isna().all():
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        note(ax, "no shortcut results (set shortcut.enabled: true)")
        return fig
    base = summary[summary["stage"] == "baseline"].iloc[0]
    runs = final_rows(summary)
    runs = runs[runs["shortcut_reliance"].notna()]
    budgets = sorted(runs["budget"].unique(), key=budget_sort_key) or ["none"]
    methods = sorted(runs["method"].unique(), key=lambda m: (method_label(m).lower(), m))
    width = max(4.5, 0.75 * (len(methods) + 1) + 1.5)
    fig, axes = plt.subplots(1, len(budgets), figsize=(width * len(budgets), 3.8), squeeze=False, sharey=True)
    for ax, budget in zip(axes[0], budgets):
        means = runs[runs["budget"] == budget].groupby("method")[[c for c, *_ in _BARS] + ["shortcut_clean_accuracy"]]
        rows = [("baseline", base)] + [(m, row) for m, row in means.mean().iterrows()]
        x = np.arange(len(rows))
        for offset, (column, _label, hatch, alpha) in zip((-0.2, 0.2), _BARS):
            values = [100 * float(row[column]) for _, row in rows]
            colors = [method_color(m, methods) for m, _ in rows]
            ax.bar(x + offset, values, 0.38, color=colors, alpha=alpha, hatch=hatch, edgecolor="0.2", linewidth=0.5)
        for i, (_m, row) in enumerate(rows):
            clean = 100 * float(row["shortcut_clean_accuracy"])
            ax.plot([i - 0.4, i + 0.4], [clean, clean], color="0.15", linewidth=1.2)
            reliance = 100 * (float(row["shortcut_aligned_accuracy"]) - float(row["shortcut_conflicting_accuracy"]))
            ax.annotate(f"{reliance:+.1f}", (i, 101), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [method_label(m) for m, _ in rows], rotation=40, ha="right")
        ax.set_ylim(0, 110)
        ax.set_title(f"budget {budget}" if budget != "none" else "")
    axes[0, 0].set_ylabel("accuracy (%)")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor="0.6", alpha=a, hatch=h, edgecolor="0.2") for _, _, h, a in _BARS]
    handles.append(plt.Line2D([], [], color="0.15", linewidth=1.2))
    labels = [label for _, label, *_ in _BARS] + ["clean (no cue)"]
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.04))
    fig.suptitle("Shortcut learning: numbers are reliance = aligned - conflicting (points)", y=1.1, fontsize=9)
    return fig
