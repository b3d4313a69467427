"""Figures drawn from ``summary.csv``: accuracy vs MAC reduction, the Pareto view, energy, and the
cross-experiment comparison. Each function takes the summary DataFrame(s) and returns a Figure (see
:func:`layerprune.figures.style.save_figure`); values are means over seeds with the std as error bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from layerprune.figures.style import BASELINE_COLOR, figure_style, method_color, note
from layerprune.summary import budget_sort_key, final_rows, method_label

__all__ = ["accuracy_vs_macs", "compare_experiments", "energy", "pareto"]

_STAGE_STYLE = {"finetuned": ("-", "o", "fine-tuned"), "pruned": ("--", "x", "pruned, before fine-tuning")}


def _methods(summary: pd.DataFrame) -> list[str]:
    return sorted(m for m in summary["method"].dropna().unique() if m != "baseline")


def _budgets(summary: pd.DataFrame) -> list[str]:
    return sorted((b for b in summary["budget"].dropna().unique() if b != "none"), key=budget_sort_key)


def _mean_by_budget(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean and std over seeds of ``columns`` per budget (NaN-safe: NaN seeds are left out)."""
    grouped = rows.groupby("budget", sort=False)[list(columns)]
    out = grouped.mean().join(grouped.std().add_suffix("_std"))
    return out.reset_index()


def _accuracy_panel(ax: Axes, summary: pd.DataFrame, title: str | None = None) -> bool:
    """Draws accuracy change vs MAC reduction on ``ax``; returns False (after a note) when there is nothing."""
    runs = summary[summary["stage"].isin(_STAGE_STYLE)].dropna(subset=["macs_reduction", "top1_delta"])
    if runs.empty:
        note(ax, "no pruned runs in this summary")
        return False
    methods = _methods(summary)
    for method in methods:
        for stage, (ls, marker, _) in _STAGE_STYLE.items():
            rows = runs[(runs["method"] == method) & (runs["stage"] == stage)]
            if rows.empty:
                continue
            agg = _mean_by_budget(rows, ["macs_reduction", "top1_delta"]).sort_values("macs_reduction")
            yerr = agg["top1_delta_std"].to_numpy()
            ax.errorbar(
                100 * agg["macs_reduction"].to_numpy(float),
                agg["top1_delta"].to_numpy(float),
                yerr=None if np.all(np.isnan(yerr)) else np.nan_to_num(yerr),
                color=method_color(method, methods),
                linestyle=ls,
                marker=marker,
                markersize=4,
                linewidth=1.4 if stage == "finetuned" else 1.0,
                capsize=2,
            )
    base = summary[summary["stage"] == "baseline"]
    ax.axhline(0.0, color=BASELINE_COLOR, linewidth=0.8)
    ax.plot([0], [0], marker="*", color=BASELINE_COLOR, markersize=9, linestyle="none")
    if not base.empty:
        ax.annotate(
            f"baseline {100 * float(base['top1'].iloc[0]):.2f}%",
            (0, 0),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlabel("MAC reduction (%)")
    ax.set_ylabel("top-1 change (accuracy points)")
    if title:
        ax.set_title(title)
    return True


def _legend_handles(methods: Sequence[str], stages: Sequence[str]) -> list[Line2D]:
    handles = [Line2D([], [], color=method_color(m, methods), linewidth=2, label=method_label(m)) for m in methods]
    handles += [
        Line2D([], [], color="0.4", linestyle=_STAGE_STYLE[s][0], marker=_STAGE_STYLE[s][1], label=_STAGE_STYLE[s][2])
        for s in stages
    ]
    handles.append(Line2D([], [], color=BASELINE_COLOR, marker="*", linestyle="none", label="baseline"))
    return handles


@figure_style()
def accuracy_vs_macs(summary: pd.DataFrame) -> Figure:
    """Top-1 change (points, vs the baseline) against MAC reduction (%), one line per method over its budgets:
    fine-tuned solid, straight after pruning dashed, the baseline at (0, 0)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if _accuracy_panel(ax, summary, "Accuracy change vs MAC reduction"):
        stages = [s for s in _STAGE_STYLE if (summary["stage"] == s).any()]
        ax.legend(handles=_legend_handles(_methods(summary), stages), loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


@figure_style()
def compare_experiments(summaries: Mapping[str, pd.DataFrame]) -> Figure:
    """Accuracy change vs MAC reduction, one panel per experiment (shared axes), for cross-experiment reading."""
    n = max(1, len(summaries))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1.8, 3.8), sharey=True, squeeze=False)
    if not summaries:
        note(axes[0, 0], "no summaries to compare")
        return fig
    methods = sorted({m for s in summaries.values() for m in _methods(s)})
    stages: set[str] = set()
    for ax, (name, summary) in zip(axes[0], summaries.items()):
        _accuracy_panel(ax, summary, name)
        stages |= set(summary["stage"])
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    fig.legend(
        handles=_legend_handles(methods, [s for s in _STAGE_STYLE if s in stages]),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
    fig.tight_layout()
    return fig


def _final_means(summary: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per (method, budget), the mean over seeds of the last stage's ``columns``; the baseline row first."""
    final = final_rows(summary)
    cols = list(columns)
    agg = final.groupby(["method", "budget"], sort=False)[cols].mean().reset_index()
    agg["_order"] = [(m, budget_sort_key(b)) for m, b in zip(agg["method"], agg["budget"])]
    agg = agg.sort_values("_order").drop(columns="_order")
    base = summary[summary["stage"] == "baseline"][["method", "budget", *cols]]
    return pd.concat([base, agg], ignore_index=True)


def _pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (lower or equal cost and higher or equal accuracy)."""
    order = np.lexsort((-acc, cost))  # by cost, ties by accuracy descending
    front, best = [], -math.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.array(front, dtype=int)


@figure_style()
def pareto(summary: pd.DataFrame) -> Figure:
    """Top-1 (%) against latency (ms) and against parameters: every (method, budget) and the baseline, with the
    Pareto front (no other model is both cheaper and more accurate) as a grey step line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    table = _final_means(summary, ["top1", "latency_ms", "params"])
    methods = _methods(summary)
    budgets = _budgets(summary)
    markers = ("o", "s", "^", "D", "v", "P")
    for ax, (col, label) in zip(axes, (("latency_ms", "latency (ms)"), ("params", "parameters"))):
        rows = table.dropna(subset=["top1", col])
        if rows.empty:
            note(ax, f"no {label} measured")
            continue
        for _, r in rows.iterrows():
            is_base = r["method"] == "baseline"
            ax.scatter(
                r[col],
                100 * r["top1"],
                color=method_color(r["method"], methods),
                marker="*" if is_base else markers[budgets.index(r["budget"]) % len(markers)],
                s=120 if is_base else 36,
                zorder=3,
                edgecolors="white",
                linewidths=0.5,
            )
        idx = _pareto_front(rows[col].to_numpy(float), rows["top1"].to_numpy(float))
        front = rows.iloc[idx]
        ax.step(front[col], 100 * front["top1"], where="post", color="0.5", linewidth=1, zorder=2)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"Accuracy vs {label}")
    handles = [Line2D([], [], marker="*", color=BASELINE_COLOR, linestyle="none", markersize=10, label="baseline")]
    handles += [
        Line2D([], [], marker="o", color=method_color(m, methods), linestyle="none", label=method_label(m))
        for m in methods
    ]
    handles += [
        Line2D([], [], marker=markers[i % len(markers)], color="0.4", linestyle="none", label=b)
        for i, b in enumerate(budgets)
    ]
    handles.append(Line2D([], [], color="0.5", label="Pareto front"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def _run_label(method: str, budget: str) -> str:
    return "Baseline" if method == "baseline" else f"{method_label(method)} · {budget}"


def _energy_panel(ax: Axes, table: pd.DataFrame, col: str, ref: float, ref_label: str, unit: str, what: str) -> None:
    """Horizontal bars of ``col`` per model, each annotated with its change relative to ``ref`` in percent."""
    rows = table.dropna(subset=[col])
    if rows.empty:
        note(ax, f"{what}: not tracked (emissions disabled or stage not run)")
        return
    methods = sorted(m for m in table["method"].unique() if m != "baseline")
    labels = [_run_label(m, b) for m, b in zip(rows["method"], rows["budget"])]
    values = rows[col].to_numpy(float)
    colors = [method_color(m, methods) for m in rows["method"]]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color=colors, height=0.7)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(unit)
    ax.set_title(what)
    ax.grid(axis="y", visible=False)
    if not math.isnan(ref) and ref > 0:
        ax.axvline(ref, color=BASELINE_COLOR, linewidth=0.8, linestyle=":")
        for yi, v, m in zip(y, values, rows["method"]):
            if m == "baseline":
                continue
            change = 100 * (v - ref) / ref
            ax.annotate(
                f"{change:+.0f}% vs {ref_label}",
                (v, yi),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=6.5,
            )
    ax.set_xlim(0, 1.35 * float(np.nanmax(values)) if np.nanmax(values) > 0 else 1)


@figure_style()
def energy(summary: pd.DataFrame) -> Figure:
    """Energy (kWh) and CO2 (kg) of inference over the test set and of fine-tuning, baseline vs pruned models.

    Inference bars are annotated with the change against the baseline's inference; fine-tuning bars against the
    baseline's training (the cost pruning plus fine-tuning saves over training anew). The footer names the power
    source (CodeCarbon estimates CPU power where no RAPL/NVML counters exist).
    """
    cols = ["inference_energy_kwh", "inference_co2_kg", "finetune_energy_kwh", "finetune_co2_kg"]
    table = _final_means(summary, [*cols, "train_energy_kwh", "train_co2_kg"])
    base = summary[summary["stage"] == "baseline"]

    def base_value(col: str) -> float:
        return float(base[col].iloc[0]) if not base.empty and col in base else math.nan

    fig, axes = plt.subplots(2, 2, figsize=(11, 0.28 * len(table) * 2 + 3))
    _energy_panel(
        axes[0, 0],
        table,
        "inference_energy_kwh",
        base_value("inference_energy_kwh"),
        "baseline",
        "kWh",
        "Inference energy",
    )
    _energy_panel(
        axes[1, 0], table, "inference_co2_kg", base_value("inference_co2_kg"), "baseline", "kg CO2-eq", "Inference CO2"
    )
    ft = table.copy()
    is_base = ft["method"] == "baseline"
    # the baseline's bar in the fine-tuning column is its full training, the reference for fine-tuning costs
    ft.loc[is_base, "finetune_energy_kwh"] = ft.loc[is_base, "train_energy_kwh"]
    ft.loc[is_base, "finetune_co2_kg"] = ft.loc[is_base, "train_co2_kg"]
    _energy_panel(
        axes[0, 1],
        ft,
        "finetune_energy_kwh",
        base_value("train_energy_kwh"),
        "training",
        "kWh",
        "Fine-tuning energy (baseline: training)",
    )
    _energy_panel(
        axes[1, 1],
        ft,
        "finetune_co2_kg",
        base_value("train_co2_kg"),
        "training",
        "kg CO2-eq",
        "Fine-tuning CO2 (baseline: training)",
    )
    sources = summary["energy_source"].dropna().astype(str) if "energy_source" in summary else pd.Series([], dtype=str)
    parts = sorted({p.strip() for s in sources for p in s.split(";") if p.strip()})
    if parts:
        fig.text(0.01, 0.0, "CPU power source: " + "; ".join(parts), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    return fig
