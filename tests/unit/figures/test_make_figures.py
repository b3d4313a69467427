"""Every named figure file is written, non-empty, in each format, by the library and by `layerprune figures`."""

from __future__ import annotations

import argparse

import pytest
from results_tree import assert_written

from layerprune.cli import figures as figures_cli
from layerprune.figures import FIGURES, FigureInputs, make_figures

SUMMARY_FIGURES = ("accuracy_vs_macs", "energy", "pareto", "removed_units", "compare_experiments", "shortcut")


def test_summary_figures_in_every_format(summary_csv, tmp_path):
    # the other figures are written in every format by test_similarity_figures / test_robustness_figures
    given = FigureInputs(summary=summary_csv, compare=[summary_csv])
    written = make_figures(given, tmp_path, only=SUMMARY_FIGURES, formats=["png", "pdf"], dpi=40)
    assert_written(written, SUMMARY_FIGURES, tmp_path)
    assert set(FIGURES) - set(SUMMARY_FIGURES) == {
        "cka_segments",
        "criterion_scores",
        "robustness_adversarial",
        "robustness_corruptions",
        "perplexity_vs_layers",  # test_language_figures
        "scores_vs_drop_one",
    }


def test_missing_inputs_still_write_the_asked_files(tmp_path):
    names = ["cka_segments", "criterion_scores", "robustness_adversarial", "robustness_corruptions"]
    written = make_figures(FigureInputs(), tmp_path, only=names, formats=["png"], dpi=40)
    assert [p.name for n in names for p in written[n]] == [f"{n}.png" for n in names]
    # without a summary, the default set leaves out the figures that need it
    assert set(make_figures(FigureInputs(), tmp_path / "d", formats=["png"], dpi=40)) == set(names)


def test_bad_requests_are_errors(summary_csv, tmp_path):
    with pytest.raises(ValueError, match="unknown figures"):
        make_figures(FigureInputs(summary=summary_csv), tmp_path, only=["nope"])
    with pytest.raises(ValueError, match="needs --summary"):
        make_figures(FigureInputs(), tmp_path, only=["energy"])
    with pytest.raises(ValueError, match="formats"):
        make_figures(FigureInputs(), tmp_path, only=["cka_segments"], formats=["gif"])


def test_cli_with_robustness_dir(tree, summary_csv, tmp_path):
    parser = argparse.ArgumentParser()
    figures_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "figures",
            "--summary",
            str(summary_csv),
            "--robustness-dir",
            str(tree.root / "robustness"),
            "--only",
            "robustness_adversarial",
            "pareto",
            "--out-dir",
            str(tmp_path),
            "--formats",
            "png",
            "--dpi",
            "40",
        ]
    )
    args.func(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.png", "robustness_adversarial.png"]
