"""Robust accuracy vs epsilon per attack, and corruption accuracy per group and severity."""

from __future__ import annotations

import numpy as np
import results_tree as rt
from results_tree import assert_written

from layerprune.figures import (
    FigureInputs,
    make_figures,
    robustness_adversarial,
    robustness_corruptions,
)
from layerprune.figures.inputs import BASELINE_KEY, read_robustness

ADV = ("attack", "epsilon", "robust_accuracy")
CORR = ("corruption", "group", "severity", "accuracy")


def test_adversarial_panel_per_attack_baseline_curve(tree):
    tables = read_robustness(tree.adversarial, ADV)
    assert BASELINE_KEY in tables and ("cka", "blocks2", 1) in tables
    fig = robustness_adversarial(tables)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [a for a, _, _ in rt.ATTACKS]
    baseline_line = panels[0].lines[0]  # baseline is drawn first, set a little to the left of the others
    eps = rt.ATTACKS[0][2]
    np.testing.assert_allclose(baseline_line.get_xdata(), eps, atol=0.06 * max(eps))
    np.testing.assert_allclose(baseline_line.get_ydata(), [100 * rt.adv_accuracy(0.0, e, "fgsm") for e in eps])
    xs = {round(float(line.get_xdata()[0]), 9) for line in panels[0].lines}
    assert len(xs) == len(panels[0].lines)  # no two models' markers share a position
    assert panels[1].get_xlabel() == "epsilon (l2)"
    # 1 baseline + 2 methods x 2 budgets (seeds averaged)
    assert len(panels[0].lines) == 1 + len(rt.METHODS) * len(rt.BUDGETS)


def test_corruptions_panel_per_group_mean_over_seeds(tree):
    tables = read_robustness(tree.corruptions, CORR)
    fig = robustness_corruptions(tables)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [g for _, g in rt.CORRUPTIONS]
    cka_line = panels[0].lines[1]  # baseline, then cka blocks2
    drops = [rt.BASE_TOP1 - rt.finetuned_top1("cka", "blocks2", s) for s in (0, 1)]
    want = [100 * np.mean([rt.corruption_accuracy(d, "gaussian_noise", sev) for d in drops]) for sev in (1, 3, 5)]
    np.testing.assert_allclose(cka_line.get_ydata(), want)


def test_missing_and_partial_inputs_do_not_crash(tree):
    assert "no adversarial.csv" in robustness_adversarial({}).axes[0].texts[0].get_text()
    assert "no corruptions.csv" in robustness_corruptions({}).axes[0].texts[0].get_text()
    only_runs = read_robustness(tree.adversarial[1:], ADV)  # no baseline
    robustness_adversarial(only_runs)
    tables = read_robustness(tree.corruptions, CORR)
    tables[BASELINE_KEY] = tables[BASELINE_KEY].assign(accuracy=np.nan)
    robustness_corruptions(tables)


def test_written_in_every_format(tree, tmp_path):
    names = ("robustness_adversarial", "robustness_corruptions")
    given = FigureInputs(adversarial=tree.adversarial, corruptions=tree.corruptions)
    assert_written(make_figures(given, tmp_path, only=names, formats=["png", "pdf"], dpi=40), names, tmp_path)
