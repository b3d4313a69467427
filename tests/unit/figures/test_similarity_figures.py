"""The CKA heatmap with Fisher segments and the per-unit criterion scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import results_tree as rt
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle
from results_tree import assert_written

from layerprune.figures import (
    FigureInputs,
    cka_segments,
    criterion_scores,
    make_figures,
)
from layerprune.figures.inputs import read_cka, read_scores, read_segments


def test_read_cka_orders_stem_then_units_and_is_symmetric(tree):
    cka = read_cka(tree.cka)
    assert list(cka.index) == ["stem", *rt.UNITS] == list(cka.columns)
    np.testing.assert_allclose(cka.to_numpy(), cka.to_numpy().T)
    np.testing.assert_allclose(np.diag(cka.to_numpy()), 1.0)


def test_segment_boxes_are_offset_by_the_stem_row(tree):
    fig = cka_segments(read_cka(tree.cka), read_segments(tree.segments))
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 2 * 3  # an outline and a dashed box per segment
    corners = sorted({(b.get_x(), b.get_width()) for b in boxes})
    assert corners == [(0.5, 3), (3.5, 3), (6.5, 3)]  # units 0..2 are heatmap rows 1..3
    assert "k = 3" in ax.get_title()


def test_cka_without_segments_or_matrix(tree):
    fig = cka_segments(read_cka(tree.cka), None)
    assert "no segmentation" in fig.axes[0].get_title()
    fig = cka_segments(None, None)
    assert "no CKA matrix" in fig.axes[0].texts[0].get_text()


def test_segments_must_match_the_matrix(tree, tmp_path):
    bad = tmp_path / "segments.json"
    bad.write_text(json.dumps({"units": ["x", "y"], "segments": [[0, 2]], "k": 1}))
    with pytest.raises(ValueError, match="absent from the CKA matrix"):
        cka_segments(read_cka(tree.cka), read_segments(bad))
    bad.write_text(json.dumps({"units": ["x"], "segments": [[0, 2]], "k": 1}))
    with pytest.raises(ValueError, match="within the 1 units"):
        read_segments(bad)


def test_criterion_scores_marks_removed_units(tree):
    scores, budget = read_scores(tree.scores)
    assert budget == "blocks2" and set(scores) == set(rt.METHODS)
    fig = criterion_scores(scores, budget, read_segments(tree.segments))
    for ax, method in zip(fig.axes, scores):
        black = [p for p in ax.patches if to_hex(p.get_facecolor()) == "#000000"]
        assert len(black) == rt.N_REMOVED["blocks2"], method
        assert len(ax.patches) == len(rt.UNITS)
    scores, budget = read_scores(tree.scores, "macs40")
    assert int(scores["cka"]["removed"].sum()) == rt.N_REMOVED["macs40"]
    with pytest.raises(ValueError, match="budget 'macs99'"):
        read_scores(tree.scores, "macs99")


def test_criterion_scores_without_files():
    scores, budget = read_scores([])
    fig = criterion_scores(scores, budget)
    assert "no scores.csv" in fig.axes[0].texts[0].get_text()


def test_written_in_every_format(tree, tmp_path):
    names = ("cka_segments", "criterion_scores")
    given = FigureInputs(cka=tree.cka, segments=tree.segments, scores=tree.scores)
    assert_written(make_figures(given, tmp_path, only=names, formats=["png", "pdf"], dpi=40), names, tmp_path)
