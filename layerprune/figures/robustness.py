"""Robustness figures: robust accuracy against the attack budget epsilon (one panel per attack) and accuracy
under common corruptions per group and severity (one panel per group); baseline vs every pruned model, each a
mean over seeds."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from layerprune.figures.inputs import BASELINE_KEY, RunKey
from layerprune.figures.style import (
    BASELINE_COLOR,
    budget_linestyle,
    figure_style,
    method_color,
    note,
)
from layerprune.summary import budget_sort_key, method_label

__all__ = ["robustness_adversarial", "robustness_corruptions"]


def _by_model(tables: Mapping[RunKey, pd.DataFrame]) -> dict[tuple[str, str], pd.DataFrame]:
    """Seeds of a (method, budget) stacked together; the baseline under ``("baseline", "none")``."""
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for (method, budget, _seed), frame in tables.items():
        groups.setdefault((method, budget), []).append(frame)
    order = sorted(groups, key=lambda k: (k[0] != "baseline", k[0], budget_sort_key(k[1])))
    return {k: pd.concat(groups[k], ignore_index=True) for k in order}


def _panels(
    tables: Mapping[RunKey, pd.DataFrame],
    panel_col: str,
    draw: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]],
    xlabel: Callable[[pd.DataFrame], str],
    ylabel: str,
    title: str,
    missing: str,
    unit_range: bool,
) -> Figure:
    models = _by_model(tables)
    panels = list(dict.fromkeys(v for frame in models.values() for v in frame[panel_col].dropna()))
    n = max(1, len(panels))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 2.0, 2.9 * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    if not panels:
        note(axes[0, 0], missing)
        return fig
    methods = sorted({m for m, _ in models if m != "baseline"})
    budgets = sorted({b for m, b in models if m != "baseline"}, key=budget_sort_key)
    for ax, panel in zip(axes.flat, panels):
        for (method, budget), frame in models.items():
            part = frame[frame[panel_col] == panel]
            if part.empty:
                continue
            x, y = draw(part)
            is_base = (method, budget) == BASELINE_KEY[:2]
            ax.plot(
                x,
                y,
                color=method_color(method, methods),
                linestyle="-" if is_base else budget_linestyle(budget, budgets),
                linewidth=2.2 if is_base else 1.2,
                marker="o",
                markersize=3,
                zorder=3 if is_base else 2,
            )
        ax.set_title(str(panel))
        ax.set_xlabel(xlabel(pd.concat([f[f[panel_col] == panel] for f in models.values()])))
        ax.set_ylabel(ylabel)
        if unit_range:  # robust accuracy spans clean accuracy down to 0: show the whole scale
            ax.set_ylim(-0.02, 1.02)
        else:  # corruption accuracies of pruned models differ by points: let the axis zoom in
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = []
    if BASELINE_KEY[:2] in models:
        handles.append(Line2D([], [], color=BASELINE_COLOR, linewidth=2.2, label="baseline"))
    handles += [Line2D([], [], color=method_color(m, methods), label=method_label(m)) for m in methods]
    handles += [Line2D([], [], color="0.4", linestyle=budget_linestyle(b, budgets), label=b) for b in budgets]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _mean_curve(rows: pd.DataFrame, x: str, y: str) -> tuple[pd.Series, pd.Series]:
    curve = rows.groupby(x)[y].mean().sort_index()
    return pd.Series(curve.index), curve.reset_index(drop=True)


@figure_style()
def robustness_adversarial(tables: Mapping[RunKey, pd.DataFrame]) -> Figure:
    """Robust accuracy vs epsilon per attack (epsilon 0 = clean accuracy on the attacked subset).

    Args:
        tables: ``adversarial.csv`` (``attack, norm, epsilon, robust_accuracy``) per model
            (:func:`layerprune.figures.inputs.read_robustness`).
    """

    def xlabel(rows: pd.DataFrame) -> str:
        norms = rows["norm"].dropna().unique() if "norm" in rows else []
        return f"epsilon ({norms[0]})" if len(norms) == 1 else "epsilon"

    return _panels(
        tables,
        "attack",
        lambda rows: _mean_curve(rows, "epsilon", "robust_accuracy"),
        xlabel,
        "robust accuracy",
        "Adversarial robustness",
        "no adversarial.csv (robustness stage not run)",
        unit_range=True,
    )


@figure_style()
def robustness_corruptions(tables: Mapping[RunKey, pd.DataFrame], groups: Sequence[str] | None = None) -> Figure:
    """Accuracy per corruption group (mean over its corruptions) against severity.

    Args:
        tables: ``corruptions.csv`` (``corruption, group, severity, accuracy``) per model.
        groups: restrict to these groups (default: every group present).
    """
    if groups is not None:
        tables = {k: v[v["group"].isin(groups)] for k, v in tables.items()}
    return _panels(
        tables,
        "group",
        lambda rows: _mean_curve(rows, "severity", "accuracy"),
        lambda rows: "severity",
        "accuracy",
        "Accuracy under common corruptions",
        "no corruptions.csv (robustness stage not run)",
        unit_range=False,
    )
