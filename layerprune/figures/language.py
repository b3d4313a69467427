"""Figures of causal language models: perplexity against the number of decoder layers removed, and each
criterion's per-layer scores beside the perplexity with that single layer removed."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from layerprune.figures.style import figure_style, method_color, note
from layerprune.summary import method_label

__all__ = ["perplexity_vs_layers", "scores_vs_drop_one"]


@figure_style()
def perplexity_vs_layers(summary: pd.DataFrame) -> Figure:
    """Perplexity (log scale) against decoder layers removed, per criterion: in-domain and out-of-domain panels,
    solid after healing (fine-tuning), dashed straight after pruning; the intact model at 0. Means over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    has_ppl = "perplexity" in summary and summary["perplexity"].notna().any()
    for ax, (column, title) in zip(axes[0], (("perplexity", "in-domain"), ("ood_perplexity", "out-of-domain"))):
        ax.set_title(f"{title} perplexity")
        if not has_ppl or column not in summary or summary[column].isna().all():
            note(ax, f"no {title} perplexity in summary.csv (not a causal LM, or no such text)")
            continue
        base = summary[summary["stage"] == "baseline"][column].mean()
        runs = summary[summary["stage"] != "baseline"]
        methods = list(dict.fromkeys(runs["method"]))
        for method in methods:
            for stage, style in (("pruned", "--"), ("finetuned", "-")):
                rows = runs[(runs["method"] == method) & (runs["stage"] == stage)]
                if rows.empty:
                    continue
                means = rows.groupby("blocks_removed")[column].mean().sort_index()
                ax.plot(
                    [0, *means.index],
                    [base, *means.to_numpy(float)],
                    style,
                    marker="o",
                    color=method_color(method, methods),
                    label=method_label(method) if stage == "pruned" or "pruned" not in set(runs["stage"]) else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("decoder layers removed")
        ax.set_ylabel("perplexity")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)))
    fig.suptitle("Perplexity vs decoder layers removed (dashed: pruned, solid: healed)")
    fig.tight_layout()
    return fig


@figure_style()
def scores_vs_drop_one(
    scores: Mapping[str, pd.DataFrame], drop_one: pd.DataFrame | None, budget: str | None = None
) -> Figure:
    """One panel per criterion: its score of every layer (bars, lower = safer, scaled to [0, 1] per criterion)
    beside the in-domain perplexity of the model without that layer (line, right axis, log scale).

    Args:
        scores: per method, its ``scores.csv`` (``unit, score``) at one budget.
        drop_one: ``drop_one.csv`` (``unit, perplexity``; the row ``none`` is the intact model), or None.
        budget: the budget the scores come from, for the title.
    """
    methods = list(scores)
    fig, axes = plt.subplots(max(1, len(methods)), 1, figsize=(8, 1.6 * max(1, len(methods)) + 1.2), squeeze=False)
    if not methods or drop_one is None:
        note(axes[0, 0], "needs scores.csv files and drop_one.csv (causal LM workflow)")
        return fig
    layers = drop_one[drop_one["unit"] != "none"].sort_values("position")
    order = list(layers["unit"])
    intact = drop_one.loc[drop_one["unit"] == "none", "perplexity"]
    x = np.arange(len(order))
    for ax, method in zip(axes[:, 0], methods):
        values = scores[method].drop_duplicates("unit").set_index("unit").reindex(order)["score"].to_numpy(float)
        span = np.nanmax(values) - np.nanmin(values)
        scaled = (values - np.nanmin(values)) / span if span > 0 else np.zeros_like(values)
        ax.bar(x, scaled, color=method_color(method, methods), width=0.7)
        ax.set_ylabel(method_label(method), rotation=0, ha="right", va="center")
        ax.set_ylim(0, 1.05)
        twin = ax.twinx()
        twin.plot(x, layers["perplexity"].to_numpy(float), "k-o", markersize=3)
        if not intact.empty:
            twin.axhline(float(intact.iloc[0]), color="0.5", linestyle=":", linewidth=1)
        twin.set_yscale("log")
        twin.set_ylabel("ppl without it", fontsize=7)
    axes[-1, 0].set_xticks(x, order, rotation=90, fontsize=7)
    fig.suptitle(
        "Criterion scores (bars) and perplexity with the layer removed (line; dotted: intact)"
        + ("" if budget is None else f", scores at {budget}")
    )
    fig.tight_layout()
    return fig
