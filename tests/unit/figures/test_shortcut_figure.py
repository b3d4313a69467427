"""The shortcut columns of summary.csv (joined from robustness/<model>/shortcut.csv) and their figure."""

from __future__ import annotations

import math

import pandas as pd
import results_tree as rt

from layerprune.figures import FigureInputs, make_figures
from layerprune.figures.shortcut import shortcut
from layerprune.robustness.shortcut_table import METRICS, SHORTCUT_COLUMNS
from layerprune.summary import SUMMARY_COLUMNS, build_summary, collect_runs, write_summary


def _write(path, aligned: float, conflicting: float) -> str:
    values = [0.8, aligned, conflicting, aligned - conflicting, 1 - conflicting - 0.05]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"metric": list(METRICS), "value": values, "n": 100}).to_csv(path, index=False)
    return str(path)


def test_shortcut_columns_join_the_last_row_of_each_run_and_the_figure_is_drawn(tmp_path):
    tree = rt.make_tree(tmp_path, robustness=False)
    base = _write(tree.root / "robustness/baseline/shortcut.csv", 0.95, 0.40)
    files, expected = [], {}
    for i, run in enumerate(tree.runs):
        conflicting = 0.5 + 0.05 * i
        folder = f"robustness/finetuned/{run['method']}/{run['budget']}/seed{run['seed']}"
        files.append(_write(tree.root / folder / "shortcut.csv", 0.9, conflicting))
        expected[(run["method"], run["budget"])] = 0.9 - conflicting
    flat = {k: [r[k] for r in tree.runs if k in r] for k in ("pruned_metrics", "plan", "finetuned_metrics")}
    runs = collect_runs(flat["pruned_metrics"], flat["plan"], flat["finetuned_metrics"], shortcut=files)
    summary = build_summary(tree.baseline["metrics"], runs, baseline_shortcut=base)
    assert set(SHORTCUT_COLUMNS) <= set(SUMMARY_COLUMNS) and list(summary.columns) == list(SUMMARY_COLUMNS)
    baseline = summary[summary["stage"] == "baseline"].iloc[0]
    assert math.isclose(baseline["shortcut_reliance"], 0.55)
    finetuned = summary[summary["stage"] == "finetuned"]
    for _, row in finetuned.iterrows():
        assert math.isclose(row["shortcut_reliance"], expected[(row["method"], row["budget"])])
    assert summary[summary["stage"] == "pruned"]["shortcut_reliance"].isna().all()  # measured on the last model
    path = write_summary(tmp_path / "summary.csv", summary)
    written = make_figures(FigureInputs(summary=path), tmp_path / "fig", only=["shortcut"], formats=["png"], dpi=40)
    assert written["shortcut"][0].stat().st_size > 5000
    # one bar pair per model (baseline + methods) in each budget's panel
    fig = shortcut(summary)
    n_models = 1 + summary.query("stage != 'baseline'")["method"].nunique()
    assert len(fig.axes) == summary.query("stage != 'baseline'")["budget"].nunique()
    assert all(len(ax.patches) == 2 * n_models for ax in fig.axes)


def test_without_shortcut_results_the_figure_says_so(summary):
    fig = shortcut(summary)
    assert "shortcut.enabled" in fig.axes[0].texts[0].get_text()
