"""What each figure draws, checked on its data (not its pixels): every method is in every figure, the removed units
shown are each plan's, the stages sit on their own axes, and equal results are not drawn on top of each other."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import results_tree as rt
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer

from layerprune.criteria import criteria
from layerprune.figures import (
    FIGURE_DATA,
    FIGURES,
    FigureInputs,
    accuracy_vs_macs,
    criterion_scores,
    removed_units,
)
from layerprune.figures.inputs import read_robustness, read_scores, read_segments
from layerprune.figures.results import accuracy_data, energy_data, pareto_data, removed_units_data
from layerprune.figures.robustness import adversarial_data
from layerprune.figures.similarity import criterion_scores_data
from layerprune.figures.style import REMOVED_COLOR, method_color, method_marker


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def given(tree, summary_csv) -> FigureInputs:
    return FigureInputs(
        summary=summary_csv,
        segments=tree.segments,
        scores=tree.scores,
        adversarial=tree.adversarial,
        corruptions=tree.corruptions,
    )


def test_every_method_is_in_every_figures_data(given):
    # every figure that compares methods has a data table; cka_segments (the baseline's matrix),
    # compare_experiments (accuracy_vs_macs per experiment), and shortcut and the language-model figures (off by
    # default; no accessor yet) have none
    assert set(FIGURES) - set(FIGURE_DATA) == {
        "cka_segments",
        "compare_experiments",
        "shortcut",
        "perplexity_vs_layers",
        "scores_vs_drop_one",
    }
    for name, build in FIGURE_DATA.items():
        data = build(given)
        assert set(rt.METHODS) <= set(data["method"]), name


def test_removed_units_match_each_plan(tree, summary):
    units = read_segments(tree.segments)["units"]
    data = removed_units_data(summary, units)
    for method in rt.METHODS:
        for budget in rt.BUDGETS:
            cells = data[(data["method"] == method) & (data["budget"] == budget)]
            assert list(cells["unit"]) == rt.UNITS  # every unit, in forward order
            plans = [
                set(
                    json.loads((tree.root / "pruned" / method / budget / f"seed{s}" / "plan.json").read_text())[
                        "removed"
                    ]
                )
                for s in (0, 1)
            ]
            assert plans[0] == plans[1] == set(rt.removed_units(method, budget))
            assert set(cells.loc[cells["removed_fraction"] == 1.0, "unit"]) == plans[0]
            assert set(cells.loc[cells["removed_fraction"] == 0.0, "unit"]) == set(rt.UNITS) - plans[0]
    fig = removed_units(summary, units)
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (len(rt.UNITS), len(rt.METHODS))
    first = data[data["budget"] == rt.BUDGETS[0]]
    want = first.pivot(index="unit", columns="method", values="removed_fraction").loc[rt.UNITS, list(rt.METHODS)]
    np.testing.assert_array_equal(np.asarray(grid), want.to_numpy())


def test_seeds_that_disagree_show_as_a_fraction(summary):
    varied = summary.copy()
    row = varied.index[(varied["stage"] == "pruned") & (varied["method"] == "cka") & (varied["seed"] == 1)][0]
    budget = varied.loc[row, "budget"]
    varied.loc[row, "removed_units"] = "layer1.1"
    data = removed_units_data(varied)
    cell = data[(data["method"] == "cka") & (data["budget"] == budget) & (data["unit"] == "layer1.1")]
    assert float(cell["removed_fraction"].iloc[0]) == 0.5


def test_accuracy_stages_on_their_own_axes_with_seed_spread(summary):
    data = accuracy_data(summary)
    assert set(data["stage"]) == {"pruned", "finetuned"}
    row = data[(data["stage"] == "finetuned") & (data["method"] == "cka") & (data["budget"] == "blocks2")].iloc[0]
    deltas = [100 * (rt.finetuned_top1("cka", "blocks2", s) - rt.BASE_TOP1) for s in (0, 1)]
    assert row["top1_delta"] == pytest.approx(np.mean(deltas))
    assert row["top1_delta_std"] == pytest.approx(np.std(deltas, ddof=1))
    assert row["macs_reduction_pct"] == pytest.approx(20.0)
    fig = accuracy_vs_macs(summary)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Straight after pruning (before fine-tuning)", "After fine-tuning"]
    pruned_ax, tuned_ax = fig.axes
    # the fine-tuned panel's axis spans its own values, not the pruned ones
    tuned = data[data["stage"] == "finetuned"]["top1_delta"]
    low, high = tuned_ax.get_ylim()
    assert low <= tuned.min() and high >= 0
    assert pruned_ax.get_ylim() != tuned_ax.get_ylim()


def test_equal_results_are_not_drawn_on_top_of_each_other(summary):
    same = summary.copy()
    for col in ("top1", "top1_delta"):  # give SGLP exactly CKA's results
        cka = same[same["method"] == "cka"][col].to_numpy()
        same.loc[same["method"] == "sglp", col] = cka
    fig = accuracy_vs_macs(same)
    tuned_ax = fig.axes[1]
    series = [c.lines[0] for c in tuned_ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(series) == len(rt.METHODS)
    np.testing.assert_allclose(series[0].get_ydata(), series[1].get_ydata())  # equal values...
    assert not np.allclose(series[0].get_xdata(), series[1].get_xdata())  # ...drawn side by side
    assert method_marker("cka") != method_marker("sglp")


def test_removed_highlight_differs_from_every_method_colour():
    known = [c.name for c in criteria()]
    colours = {to_hex(method_color(m, known)) for m in known}
    assert to_hex(REMOVED_COLOR) not in colours
    assert len({method_marker(m, known) for m in known}) == len(known)


def test_every_segment_boundary_is_drawn_even_at_unscored_units(tree):
    scores, budget = read_scores(tree.scores)
    # as in a real run: the first unit of each stage (downsampling) is not removable and gets no score
    scores = {m: f[~f["unit"].str.endswith(".0")] for m, f in scores.items()}
    segments = read_segments(tree.segments)  # boundaries start at layer2.0 and layer3.0
    bars, boundaries = criterion_scores_data(scores, segments)
    assert boundaries == [2.5, 5.5]
    assert list(dict.fromkeys(bars["unit"])) == rt.UNITS
    fig = criterion_scores(scores, budget, segments)
    for ax in fig.axes:
        dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert sorted(line.get_xdata()[0] for line in dotted) == boundaries
        black = [p for p in ax.patches if to_hex(p.get_facecolor()) == to_hex(REMOVED_COLOR)]
        assert len(black) == rt.N_REMOVED[budget]


def test_energy_and_pareto_data_carry_the_spread(summary):
    data = energy_data(summary)
    base = data[data["method"] == "baseline"].iloc[0]
    assert base["inference_mj"] == pytest.approx(1000 * rt.energy_j("baseline", "none")[1])
    flags = dict(zip(zip(data["method"], data["budget"]), data["within_spread"]))
    assert flags[("sglp", "blocks2")]  # overlaps the baseline's quartiles by construction
    assert not flags[("cka", "macs40")]
    cka = data[(data["method"] == "cka") & (data["budget"] == "macs40")].iloc[0]
    assert cka["inference_vs_baseline_pct"] == pytest.approx(-40.0)
    points = pareto_data(summary)
    row = points[(points["method"] == "cka") & (points["budget"] == "blocks2")].iloc[0]
    assert (row["latency_q1_ms"], row["latency_ms"], row["latency_q3_ms"]) == pytest.approx(
        rt.latency_ms("cka", "blocks2")
    )


def test_robustness_data_in_percent(tree):
    data = adversarial_data(read_robustness(tree.adversarial, ("attack", "epsilon", "robust_accuracy")))
    base = data[(data["method"] == "baseline") & (data["panel"] == "fgsm")]
    eps = rt.ATTACKS[0][2]
    np.testing.assert_allclose(base["x"], eps)
    np.testing.assert_allclose(base["y_pct"], [100 * rt.adv_accuracy(0.0, e, "fgsm") for e in eps])
    assert isinstance(data, pd.DataFrame) and set(data["method"]) == {"baseline", *rt.METHODS}
