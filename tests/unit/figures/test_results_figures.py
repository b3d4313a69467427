"""Figures drawn from summary.csv: what is plotted matches the summary, and NaN or absent values never crash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import results_tree as rt
from matplotlib.container import ErrorbarContainer

from layerprune.figures import accuracy_vs_macs, compare_experiments, energy, pareto


def _texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + " " + " ".join(t.get_text() for t in fig.texts)


def test_accuracy_vs_macs_plots_mean_over_seeds_per_method_and_stage(summary):
    fig = accuracy_vs_macs(summary)
    for ax, stage, top1 in zip(fig.axes, ("pruned", "finetuned"), (rt.pruned_top1, rt.finetuned_top1)):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == len(rt.METHODS)  # one marker series per method in each stage's panel
        first = bars[0].lines[0]  # cka (methods sorted), offset left of the true MAC reduction
        assert np.all(first.get_xdata() < [20.0, 40.0]) and np.all(first.get_xdata() > [16.0, 36.0]), stage
        expected = [np.mean([100 * (top1("cka", b, s) - rt.BASE_TOP1) for s in (0, 1)]) for b in rt.BUDGETS]
        np.testing.assert_allclose(first.get_ydata(), expected)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"CKA", "SGLP", "baseline"} <= set(labels)


def test_accuracy_vs_macs_without_runs_notes_instead_of_failing(summary):
    fig = accuracy_vs_macs(summary[summary["stage"] == "baseline"])
    assert "no pruned runs" in _texts(fig)


def test_energy_annotates_reductions_only_outside_the_spread(summary):
    text = _texts(energy(summary))
    assert "-40% vs baseline" in text and "-20% vs baseline" in text
    assert "within spread" in text  # sglp blocks2 overlaps the baseline's range
    assert "-2% vs baseline" not in text
    assert rt.CPU_SOURCE in text
    untracked = summary.copy()
    cols = [c for c in untracked.columns if c.endswith(("_kwh", "_kg"))]
    untracked[cols] = math.nan
    untracked[[c for c in untracked.columns if "j_per_image" in c]] = math.nan
    untracked["energy_source"] = None
    assert "not tracked" in _texts(energy(untracked))


def test_pareto_front_and_missing_latency(summary):
    fig = pareto(summary)
    latency_ax = fig.axes[0]
    front = latency_ax.lines[0]  # the step line
    # cheapest-most-accurate chain: cka macs40 (1.2 ms), cka blocks2 (1.6 ms), baseline (2.0 ms)
    np.testing.assert_allclose(front.get_xdata(), [1.2, 1.6, 2.0])
    no_latency = summary.assign(latency_ms=np.nan)
    fig = pareto(no_latency)
    assert "no latency measured" in _texts(fig)
    assert fig.axes[1].lines  # the params panel is still drawn


def test_compare_experiments_one_panel_each(summary):
    other = summary.assign(top1_delta=summary["top1_delta"] - 1.0)
    fig = compare_experiments({"a": summary, "b": other})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a", "b"]
    assert "no summaries" in _texts(compare_experiments({}))


def test_nan_heavy_summary_does_not_crash(summary):
    broken = summary.copy()
    broken.loc[broken.index[1::2], ["top1_delta", "macs_reduction", "latency_ms", "params"]] = np.nan
    for draw in (accuracy_vs_macs, energy, pareto):
        fig = draw(broken)
        assert fig.axes, draw.__name__
        for ax in fig.axes:  # nothing NaN is drawn: the rows without values are left out, not plotted as gaps
            for line in ax.lines:
                assert np.isfinite(np.asarray(line.get_xdata(), float)).all(), (draw.__name__, line)
                assert np.isfinite(np.asarray(line.get_ydata(), float)).all(), (draw.__name__, line)
    # the accuracy curves are the means over the seeds that kept their values, computed here with pandas
    kept = broken[broken["stage"].isin(["pruned", "finetuned"])].dropna(subset=["macs_reduction", "top1_delta"])
    assert 0 < len(kept) < len(summary[summary["stage"] != "baseline"])
    means = kept.groupby(["method", "stage", "budget"])[["macs_reduction", "top1_delta"]].mean()
    expected = np.array(sorted(zip(means["top1_delta"], 100 * means["macs_reduction"])))
    bars = [c for c in accuracy_vs_macs(broken).axes[0].containers if isinstance(c, ErrorbarContainer)]
    drawn = np.array(sorted(p for c in bars for p in zip(c.lines[0].get_ydata(), c.lines[0].get_xdata())))
    assert drawn.shape == expected.shape
    np.testing.assert_allclose(drawn[:, 0], expected[:, 0])  # the accuracy means exactly
    # the methods are set side by side around each true MAC reduction (15% of the axis in all, issue 18)
    half_span = 0.15 * expected[:, 1].max() / 2
    assert (np.abs(drawn[:, 1] - expected[:, 1]) <= half_span + 1e-9).all(), (drawn, expected)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_summary_round_trip_keeps_budget_strings(summary_csv):
    from layerprune.figures.inputs import read_summary

    back = read_summary(summary_csv)
    assert set(back["budget"]) == {"none", *rt.BUDGETS}
    assert isinstance(back, pd.DataFrame)
