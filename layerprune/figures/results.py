"""Figures drawn from ``summary.csv``: accuracy vs MAC reduction, the Pareto view, energy, and the
cross-experiment comparison. Each function takes the summary DataFrame(s) and returns a Figure (see
:func:`layerprune.figures.style.save_figure`); values are means over seeds with the std as error bars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from layerprune.figures.style import (
    BASELINE_COLOR,
    figure_style,
    method_color,
    method_marker,
    method_offsets,
    note,
)
from layerprune.summary import budget_sort_key, final_rows, method_label

__all__ = [
    "accuracy_data",
    "accuracy_vs_macs",
    "compare_experiments",
    "energy",
    "energy_data",
    "pareto",
    "pareto_data",
    "removed_units",
    "removed_units_data",
]

_STAGE_TITLES = {
    "pruned": "Straight after pruning (before fine-tuning)",
    "finetuned": "After fine-tuning",
}


def _methods(summary: pd.DataFrame) -> list[str]:
    return sorted(m for m in summary["method"].dropna().unique() if m != "baseline")


def _budgets(summary: pd.DataFrame) -> list[str]:
    return sorted((b for b in summary["budget"].dropna().unique() if b != "none"), key=budget_sort_key)


def accuracy_data(summary: pd.DataFrame) -> pd.DataFrame:
    """The points of :func:`accuracy_vs_macs`: per (stage, method, budget), the mean over seeds of the MAC reduction
    (%) and of the top-1 change (points against the baseline), its std over seeds (NaN with one seed), the seed
    count and the units removed (as in ``summary.csv``; the seeds' distinct sets joined by `` | ``).

    Returns:
        DataFrame with ``stage, method, budget, n_seeds, macs_reduction_pct, top1_delta, top1_delta_std,
        removed_units``, stages in pipeline order, methods by name, budgets in order.
    """
    runs = summary[summary["stage"].isin(_STAGE_TITLES)].dropna(subset=["macs_reduction", "top1_delta"])
    rows = []
    for (stage, method, budget), group in runs.groupby(["stage", "method", "budget"], sort=False):
        removed = group["removed_units"] if "removed_units" in group else pd.Series([], dtype=str)
        rows.append(
            {
                "stage": stage,
                "method": method,
                "budget": budget,
                "n_seeds": len(group),
                "macs_reduction_pct": 100 * float(group["macs_reduction"].mean()),
                "top1_delta": float(group["top1_delta"].mean()),
                "top1_delta_std": float(group["top1_delta"].std()) if len(group) > 1 else math.nan,
                "removed_units": " | ".join(dict.fromkeys(str(v) for v in removed.dropna())),
            }
        )
    columns = [
        "stage",
        "method",
        "budget",
        "n_seeds",
        "macs_reduction_pct",
        "top1_delta",
        "top1_delta_std",
        "removed_units",
    ]
    data = pd.DataFrame(rows, columns=columns)
    order = {s: i for i, s in enumerate(_STAGE_TITLES)}
    key = [(order[r.stage], r.method, budget_sort_key(r.budget)) for r in data.itertuples()]
    return data.iloc[sorted(range(len(data)), key=key.__getitem__)].reset_index(drop=True)


_ACCURACY_FOOTNOTE = (
    "Dotted lines: each budget's MAC reduction; the methods' markers are set side by side around it so equal values"
    " stay visible (their x offset is not a cost difference). Bars: ±1 std over seeds (fine-tuning noise, and for"
    " random also its draw of units)."
)


def _accuracy_panel(ax: Axes, data: pd.DataFrame, methods: Sequence[str], title: str, base_top1: float) -> None:
    """One stage's accuracy change vs MAC reduction: a marker per (method, budget), methods side by side."""
    # the methods side by side around each true MAC reduction: 15% of the axis in all, wide enough for 8 markers
    span = 0.15 * max(1.0, float(data["macs_reduction_pct"].max()) if not data.empty else 1.0)
    offsets = method_offsets(methods, span)
    for method in methods:
        rows = data[data["method"] == method].sort_values("macs_reduction_pct")
        if rows.empty:
            continue
        yerr = rows["top1_delta_std"].to_numpy(float)
        ax.errorbar(
            rows["macs_reduction_pct"].to_numpy(float) + offsets[method],
            rows["top1_delta"].to_numpy(float),
            yerr=None if np.all(np.isnan(yerr)) else np.nan_to_num(yerr),
            color=method_color(method, methods),
            marker=method_marker(method, methods),
            markersize=6,
            markeredgecolor="white",
            markeredgewidth=0.5,
            linestyle="none",
            capsize=2,
        )
    # the true MAC reductions, around which the methods are set side by side
    for x in sorted(set(data["macs_reduction_pct"].round(6))):
        ax.axvline(x, color="0.8", linestyle=":", linewidth=0.8, zorder=0)
    ax.axhline(0.0, color=BASELINE_COLOR, linewidth=0.8)
    ax.plot([0], [0], marker="*", color=BASELINE_COLOR, markersize=10, linestyle="none")
    if not math.isnan(base_top1):
        ax.annotate(f"baseline {base_top1:.2f}%", (0, 0), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlabel("MAC reduction (%)")
    ax.set_ylabel("top-1 change vs baseline (percentage points)")
    ax.set_title(title)


def _legend_handles(methods: Sequence[str]) -> list[Line2D]:
    handles = [
        Line2D(
            [],
            [],
            color=method_color(m, methods),
            marker=method_marker(m, methods),
            linestyle="none",
            label=method_label(m),
        )
        for m in methods
    ]
    handles.append(Line2D([], [], color=BASELINE_COLOR, marker="*", markersize=9, linestyle="none", label="baseline"))
    return handles


def _base_top1(summary: pd.DataFrame) -> float:
    base = summary[summary["stage"] == "baseline"]
    return 100 * float(base["top1"].iloc[0]) if not base.empty else math.nan


@figure_style()
def accuracy_vs_macs(summary: pd.DataFrame) -> Figure:
    """Top-1 change (percentage points vs the baseline) against MAC reduction (%): one panel per stage (straight
    after pruning; after fine-tuning), each with its own y-axis, so a few points' difference after fine-tuning is
    not squeezed by the large drops before it. Every (method, budget) is a marker of the method's colour and shape,
    the methods set side by side by a small horizontal offset so equal values stay visible; bars are the std over
    seeds."""
    data = accuracy_data(summary)
    stages = [s for s in _STAGE_TITLES if (data["stage"] == s).any()]
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(5.0 * max(1, len(stages)) + 1.6, 4.2), squeeze=False)
    if not stages:
        note(axes[0, 0], "no pruned runs in this summary")
        return fig
    methods = _methods(summary)
    for ax, stage in zip(axes[0], stages):
        _accuracy_panel(ax, data[data["stage"] == stage], methods, _STAGE_TITLES[stage], _base_top1(summary))
    fig.legend(handles=_legend_handles(methods), loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Accuracy change vs MAC reduction")
    fig.text(0.01, 0.0, _ACCURACY_FOOTNOTE, fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    return fig


@figure_style()
def compare_experiments(summaries: Mapping[str, pd.DataFrame]) -> Figure:
    """Accuracy change vs MAC reduction of each experiment's final models (fine-tuned where fine-tuning ran), one
    panel per experiment, for cross-experiment reading."""
    n = max(1, len(summaries))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1.8, 3.8), squeeze=False)
    if not summaries:
        note(axes[0, 0], "no summaries to compare")
        return fig
    methods = sorted({m for s in summaries.values() for m in _methods(s)})
    for ax, (name, summary) in zip(axes[0], summaries.items()):
        data = accuracy_data(summary)
        if data.empty:
            note(ax, f"{name}: no pruned runs")
            continue
        last = "finetuned" if (data["stage"] == "finetuned").any() else "pruned"
        _accuracy_panel(ax, data[data["stage"] == last], methods, name, _base_top1(summary))
    fig.legend(handles=_legend_handles(methods), loc="center left", bbox_to_anchor=(1.0, 0.5))
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


def pareto_data(summary: pd.DataFrame) -> pd.DataFrame:
    """The points of :func:`pareto`: the baseline and per (method, budget) the mean over seeds of the final models'
    top-1 (%), latency (median and quartiles, ms per batch) and parameters."""
    cols = ["top1", "latency_ms", "latency_q1_ms", "latency_q3_ms", "params"]
    table = _final_means(summary, [c for c in cols if c in summary])
    table = table.reindex(columns=["method", "budget", *cols])
    table["top1_pct"] = 100 * table["top1"]
    return table.drop(columns="top1")


@figure_style()
def pareto(summary: pd.DataFrame) -> Figure:
    """Top-1 (%) against latency (ms per batch, bars: interquartile range of the timing step) and against
    parameters: the baseline and every (method, budget), a marker per method (colour and shape) and budget (fill),
    with the Pareto front (no other model is both cheaper and more accurate) as a grey step line. Methods are set
    side by side by a small horizontal offset (at most 1.5% of the axis range) so equal models stay visible."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    table = pareto_data(summary)
    methods = _methods(summary)
    budgets = _budgets(summary)
    for ax, (col, label) in zip(axes, (("latency_ms", "latency (ms per batch)"), ("params", "parameters"))):
        rows = table.dropna(subset=["top1_pct", col])
        if rows.empty:
            note(ax, f"no {label.split(' (')[0]} measured")
            continue
        values = rows[col].to_numpy(float)
        span = 0.03 * float(np.nanmax(values) - np.nanmin(values) or np.nanmax(values))
        offsets = method_offsets(methods, span)
        idx = _pareto_front(values, rows["top1_pct"].to_numpy(float))
        front = rows.iloc[idx]
        ax.step(front[col], front["top1_pct"], where="post", color="0.6", linewidth=1, zorder=1)
        for _, r in rows.iterrows():
            is_base = r["method"] == "baseline"
            x = float(r[col]) + (0.0 if is_base else offsets.get(r["method"], 0.0))
            xerr = None
            if col == "latency_ms" and not pd.isna(r["latency_q1_ms"]):
                xerr = [[float(r[col]) - float(r["latency_q1_ms"])], [float(r["latency_q3_ms"]) - float(r[col])]]
            filled = is_base or budgets.index(r["budget"]) % 2 == 0
            color = method_color(r["method"], methods)
            ax.errorbar(
                [x],
                [r["top1_pct"]],
                xerr=xerr,
                color=color,
                marker=method_marker(r["method"], methods),
                markersize=11 if is_base else 6,
                markerfacecolor=color if filled else "white",
                markeredgecolor=color,
                linestyle="none",
                elinewidth=0.8,
                capsize=2,
                zorder=3,
            )
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"Accuracy vs {label.split(' (')[0]}")
    handles = _legend_handles(methods)
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            color="0.4",
            markerfacecolor="0.4" if i % 2 == 0 else "white",
            linestyle="none",
            label=f"budget {b}",
        )
        for i, b in enumerate(budgets)
    ]
    handles.append(Line2D([], [], color="0.6", label="Pareto front"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def _run_label(method: str, budget: str) -> str:
    return "Baseline" if method == "baseline" else f"{method_label(method)} · {budget}"


def energy_data(summary: pd.DataFrame) -> pd.DataFrame:
    """The bars of :func:`energy`: the baseline and per (method, budget) the mean over seeds of the final models'
    inference energy per image (mJ, median and quartiles of the timing step's windows) and fine-tuning energy
    (kWh; the baseline's is its training), with ``inference_vs_baseline_pct`` and ``within_spread`` (True where the
    model's energy or latency interquartile range overlaps the baseline's: no measurable difference; CodeCarbon's
    estimated energy is power times time, so the time's spread applies to it)."""
    from layerprune.timing import within_spread

    cols = [
        "inference_j_per_image",
        "inference_q1_j_per_image",
        "inference_q3_j_per_image",
        "finetune_energy_kwh",
        "train_energy_kwh",
        "latency_ms",
        "latency_q1_ms",
        "latency_q3_ms",
    ]
    table = _final_means(summary, [c for c in cols if c in summary]).reindex(columns=["method", "budget", *cols])
    out = pd.DataFrame({"method": table["method"], "budget": table["budget"]})
    for name, col in (("mj", "inference_j_per_image"), ("q1_mj", "inference_q1_j_per_image")):
        out[f"inference_{name}"] = 1000 * table[col]
    out["inference_q3_mj"] = 1000 * table["inference_q3_j_per_image"]
    for col in ("latency_ms", "latency_q1_ms", "latency_q3_ms"):
        out[col] = table[col]
    is_base = table["method"] == "baseline"
    out["finetune_kwh"] = table["finetune_energy_kwh"].where(~is_base, table["train_energy_kwh"])
    base = out[is_base]
    ref = base.iloc[0] if not base.empty else None
    pct, flags = [], []
    for _, r in out.iterrows():
        if ref is None or r["method"] == "baseline" or pd.isna(ref["inference_mj"]) or not ref["inference_mj"]:
            pct.append(math.nan)
            flags.append(False)
            continue
        pct.append(100 * (r["inference_mj"] - ref["inference_mj"]) / ref["inference_mj"])
        energy_overlaps = within_spread(
            r["inference_mj"],
            r["inference_q1_mj"],
            r["inference_q3_mj"],
            ref["inference_mj"],
            ref["inference_q1_mj"],
            ref["inference_q3_mj"],
        )
        # estimated energy (no RAPL/NVML) is power times time: the time's spread applies to it too
        time_overlaps = within_spread(
            r["latency_ms"], r["latency_q1_ms"], r["latency_q3_ms"], ref["latency_ms"], ref["latency_q1_ms"],
            ref["latency_q3_ms"],
        )  # fmt: skip
        flags.append(energy_overlaps or time_overlaps)
    out["inference_vs_baseline_pct"] = pct
    out["within_spread"] = flags
    return out


def _bars(ax: Axes, data: pd.DataFrame, methods: Sequence[str], col: str, unit: str, title: str, missing: str) -> bool:
    rows = data.dropna(subset=[col])
    if rows.empty:
        note(ax, missing)
        return False
    y = np.arange(len(rows))[::-1]
    colors = [method_color(m, methods) for m in rows["method"]]
    xerr = None
    if col == "inference_mj":
        low = (rows[col] - rows["inference_q1_mj"]).clip(lower=0).fillna(0).to_numpy(float)
        high = (rows["inference_q3_mj"] - rows[col]).clip(lower=0).fillna(0).to_numpy(float)
        xerr = [low, high]
    ax.barh(y, rows[col].to_numpy(float), xerr=xerr, color=colors, height=0.7, capsize=2, ecolor="0.3")
    ax.set_yticks(y, [_run_label(m, b) for m, b in zip(rows["method"], rows["budget"])], fontsize=7)
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    top = float(np.nanmax(rows[col].to_numpy(float)))
    ax.set_xlim(0, 1.45 * top if top > 0 else 1)
    return True


@figure_style()
def energy(summary: pd.DataFrame) -> Figure:
    """Inference energy per image (mJ; bars: interquartile range over the timing step's fixed-length windows) of
    the baseline and every final model, and fine-tuning energy (kWh) of every pruned model beside the baseline's
    training. An inference bar states its change against the baseline only where the two spreads do not overlap;
    otherwise (or where the latency ranges overlap: estimated energy follows time) it says the difference is within the spread. The footer names the power source (CodeCarbon estimates
    CPU power where no RAPL/NVML counters exist)."""
    data = energy_data(summary)
    methods = _methods(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * len(data) + 2.2))
    if _bars(
        axes[0],
        data,
        methods,
        "inference_mj",
        "mJ per image",
        "Inference energy per image",
        "inference energy: not tracked (emissions disabled or timing step not run)",
    ):
        rows = data.dropna(subset=["inference_mj"])
        base_mj = rows.loc[rows["method"] == "baseline", "inference_mj"]
        if not base_mj.empty:
            axes[0].axvline(float(base_mj.iloc[0]), color=BASELINE_COLOR, linewidth=0.8, linestyle=":")
        for yi, (_, r) in zip(np.arange(len(rows))[::-1], rows.iterrows()):
            if r["method"] == "baseline" or pd.isna(r["inference_vs_baseline_pct"]):
                continue
            text = (
                "≈ baseline (within spread)"
                if r["within_spread"]
                else f"{r['inference_vs_baseline_pct']:+.0f}% vs baseline"
            )
            axes[0].annotate(
                text,
                (float(r["inference_q3_mj"]) if not pd.isna(r["inference_q3_mj"]) else float(r["inference_mj"]), yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=6.5,
            )
    _bars(
        axes[1],
        data,
        methods,
        "finetune_kwh",
        "kWh",
        "Fine-tuning energy (baseline: its training)",
        "fine-tuning energy: not tracked (emissions disabled or stage not run)",
    )
    sources = summary["energy_source"].dropna().astype(str) if "energy_source" in summary else pd.Series([], dtype=str)
    parts = sorted({p.strip() for s in sources for p in s.split(";") if p.strip()})
    if parts:
        fig.text(0.01, 0.0, "CPU power source: " + "; ".join(parts), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    return fig


def _unit_sort_key(unit: str) -> tuple:
    """Forward order of dotted unit names (``layer2.10`` after ``layer2.9``)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", unit))


def removed_units_data(summary: pd.DataFrame, units: Sequence[str] | None = None) -> pd.DataFrame:
    """The cells of :func:`removed_units`: per (budget, method, unit), the fraction of the method's seeds whose plan
    removed the unit (``summary.csv``'s ``removed_units``, copied from each ``plan.json``).

    Args:
        summary: the experiment's summary (pruned rows carry every plan).
        units: every unit in forward order (``segments.json``'s ``units``); None lists only units some plan removed.

    Returns:
        DataFrame with ``budget, method, unit, removed_fraction, n_seeds``: every (budget, method) has a row per unit.
    """
    plans = summary[summary["stage"] == "pruned"]
    removed_sets = {
        key: [set(str(v).split(";")) - {""} if isinstance(v, str) else set() for v in group["removed_units"]]
        for key, group in plans.groupby(["budget", "method"], sort=False)
    }
    if units is None:
        units = sorted({u for sets in removed_sets.values() for s in sets for u in s}, key=_unit_sort_key)
    rows = []
    for (budget, method), sets in sorted(removed_sets.items(), key=lambda kv: (budget_sort_key(kv[0][0]), kv[0][1])):
        for unit in units:
            rows.append(
                {
                    "budget": budget,
                    "method": method,
                    "unit": unit,
                    "removed_fraction": sum(unit in s for s in sets) / len(sets),
                    "n_seeds": len(sets),
                }
            )
    return pd.DataFrame(rows, columns=["budget", "method", "unit", "removed_fraction", "n_seeds"])


@figure_style()
def removed_units(summary: pd.DataFrame, units: Sequence[str] | None = None) -> Figure:
    """Which units each method removed, one panel per budget: units (forward order) by methods, a cell filled where
    the method's plan removed the unit (shaded by the fraction of seeds when there are several), so agreement
    between criteria reads along a row and identical plans as identical columns."""
    data = removed_units_data(summary, units)
    budgets = list(dict.fromkeys(data["budget"]))
    methods = _methods(summary)
    unit_order = list(dict.fromkeys(data["unit"]))
    n = max(1, len(budgets))
    height = max(3.0, 0.22 * len(unit_order) + 1.8)
    fig, axes = plt.subplots(1, n, figsize=(0.45 * len(methods) * n + 2.2 * n + 0.5, height), squeeze=False)
    if data.empty:
        note(axes[0, 0], "no plans in this summary (pruning stage not run)")
        return fig
    for ax, budget in zip(axes[0], budgets):
        part = data[data["budget"] == budget]
        grid = part.pivot_table(index="unit", columns="method", values="removed_fraction", aggfunc="mean")
        grid = grid.reindex(index=unit_order, columns=methods)
        ax.imshow(grid.to_numpy(float), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        counts = part.groupby("method")["removed_fraction"].sum().reindex(methods)
        labels = [f"{method_label(m)} ({c:g})" if not pd.isna(c) else method_label(m) for m, c in counts.items()]
        ax.set_xticks(range(len(methods)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(unit_order)), unit_order, fontsize=7)
        ax.set_xticks(np.arange(-0.5, len(methods)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(unit_order)), minor=True)
        ax.grid(which="minor", color="0.8", linewidth=0.5)
        ax.grid(which="major", visible=False)
        ax.tick_params(which="minor", length=0)
        for tick, method in zip(ax.get_xticklabels(), methods):
            tick.set_color(method_color(method, methods))
        ax.set_title(f"{budget}: units removed (count per method)")
    fig.suptitle("Removed units (filled: removed; grey: by some of the seeds)")
    fig.tight_layout()
    return fig
