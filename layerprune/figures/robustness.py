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
    method_marker,
    method_offsets,
    note,
)
from layerprune.summary import budget_sort_key, method_label

__all__ = [
    "adversarial_data",
    "corruption_data",
    "robustness_adversarial",
    "robustness_corruptions",
    "robustness_data",
]


def _by_model(tables: Mapping[RunKey, pd.DataFrame]) -> dict[tuple[str, str], pd.DataFrame]:
    """Seeds of a (method, budget) stacked together; the baseline under ``("baseline", "none")``."""
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for (method, budget, _seed), frame in tables.items():
        groups.setdefault((method, budget), []).append(frame)
    order = sorted(groups, key=lambda k: (k[0] != "baseline", k[0], budget_sort_key(k[1])))
    return {k: pd.concat(groups[k], ignore_index=True) for k in order}


def robustness_data(tables: Mapping[RunKey, pd.DataFrame], panel_col: str, x: str, y: str) -> pd.DataFrame:
    """The points of a robustness figure: per (panel, model, x), the mean over seeds (and, for corruptions, over a
    group's corruptions) of ``y`` in percent.

    Returns:
        DataFrame with ``panel, method, budget, x, y_pct``; the baseline is method ``baseline``, budget ``none``.
    """
    rows = []
    for (method, budget), frame in _by_model(tables).items():
        for panel, part in frame.groupby(panel_col, sort=False):
            curve = part.groupby(x)[y].mean().sort_index()
            rows += [
                {"panel": panel, "method": method, "budget": budget, "x": float(xv), "y_pct": 100 * float(yv)}
                for xv, yv in curve.items()
            ]
    return pd.DataFrame(rows, columns=["panel", "method", "budget", "x", "y_pct"])


def _panels(
    data: pd.DataFrame,
    xlabel: Callable[[str], str],
    ylabel: str,
    title: str,
    missing: str,
    unit_range: bool,
) -> Figure:
    panels = list(dict.fromkeys(data["panel"]))
    n = max(1, len(panels))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 2.0, 2.9 * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    if not panels:
        note(axes[0, 0], missing)
        return fig
    methods = sorted({m for m in data["method"] if m != "baseline"})
    budgets = sorted({b for m, b in zip(data["method"], data["budget"]) if m != "baseline"}, key=budget_sort_key)
    models = list(dict.fromkeys(zip(data["method"], data["budget"])))
    for ax, panel in zip(axes.flat, panels):
        part = data[data["panel"] == panel]
        xs = part["x"].to_numpy(float)
        # side by side: the models' markers spread over 6% of the panel's x range, so equal curves stay visible
        offsets = method_offsets([f"{m}/{b}" for m, b in models], 0.06 * float(xs.max() - xs.min() or 1.0))
        for method, budget in models:
            curve = part[(part["method"] == method) & (part["budget"] == budget)]
            if curve.empty:
                continue
            is_base = (method, budget) == BASELINE_KEY[:2]
            ax.plot(
                curve["x"].to_numpy(float) + offsets[f"{method}/{budget}"],
                curve["y_pct"].to_numpy(float),
                color=method_color(method, methods),
                linestyle="-" if is_base else budget_linestyle(budget, budgets),
                linewidth=2.0 if is_base else 0.9,
                marker=method_marker(method, methods),
                markersize=6 if is_base else 4,
                alpha=1.0 if is_base else 0.85,
                zorder=3 if is_base else 2,
            )
        ax.set_title(str(panel))
        ax.set_xlabel(xlabel(str(panel)))
        ax.set_ylabel(ylabel)
        if unit_range:  # robust accuracy spans clean accuracy down to 0: show the whole scale
            ax.set_ylim(-2, 102)
        else:  # corruption accuracies of pruned models differ by points: let the axis zoom in
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = []
    if any(m == "baseline" for m, _ in models):
        handles.append(Line2D([], [], color=BASELINE_COLOR, marker="*", markersize=7, linewidth=2.0, label="baseline"))
    handles += [
        Line2D([], [], color=method_color(m, methods), marker=method_marker(m, methods), label=method_label(m))
        for m in methods
    ]
    handles += [Line2D([], [], color="0.4", linestyle=budget_linestyle(b, budgets), label=b) for b in budgets]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def adversarial_data(tables: Mapping[RunKey, pd.DataFrame]) -> pd.DataFrame:
    """Robust accuracy (%) per attack (``panel``), epsilon (``x``) and model; see :func:`robustness_data`."""
    return robustness_data(tables, "attack", "epsilon", "robust_accuracy")


def corruption_data(tables: Mapping[RunKey, pd.DataFrame], groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy (%) per corruption group (``panel``), severity (``x``) and model; see :func:`robustness_data`."""
    if groups is not None:
        tables = {k: v[v["group"].isin(groups)] for k, v in tables.items()}
    return robustness_data(tables, "group", "severity", "accuracy")


@figure_style()
def robustness_adversarial(tables: Mapping[RunKey, pd.DataFrame]) -> Figure:
    """Robust accuracy (%) vs epsilon per attack (epsilon 0 = clean accuracy on the attacked subset).

    Args:
        tables: ``adversarial.csv`` (``attack, norm, epsilon, robust_accuracy``) per model
            (:func:`layerprune.figures.inputs.read_robustness`).
    """
    norms = {}
    for frame in tables.values():
        if "norm" in frame:
            for attack, norm in zip(frame["attack"], frame["norm"]):
                norms.setdefault(str(attack), str(norm))

    def xlabel(attack: str) -> str:
        return f"epsilon ({norms[attack]})" if attack in norms else "epsilon"

    return _panels(
        adversarial_data(tables),
        xlabel,
        "robust accuracy (%)",
        "Adversarial robustness",
        "no adversarial.csv (robustness stage not run)",
        unit_range=True,
    )


@figure_style()
def robustness_corruptions(tables: Mapping[RunKey, pd.DataFrame], groups: Sequence[str] | None = None) -> Figure:
    """Accuracy (%) per corruption group (mean over its corruptions) against severity.

    Args:
        tables: ``corruptions.csv`` (``corruption, group, severity, accuracy``) per model.
        groups: restrict to these groups (default: every group present).
    """
    return _panels(
        corruption_data(tables, groups),
        lambda group: "severity",
        "accuracy (%)",
        "Accuracy under common corruptions",
        "no corruptions.csv (robustness stage not run)",
        unit_range=False,
    )
