"""SGLP's segmentation under both protocols: the reference's backtracking counterexample, the 5%-loss-drop rule for
the number of segments, and the column-sum input with the stem. Expected values are computed here by exhaustive
search over cut positions, not by the DP under test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from layerprune.segmentation import (
    choose_k,
    choose_k_loss_drop,
    column_sum_series,
    fisher_segments,
    paper_segments,
)


def _loss(series: np.ndarray, cuts: list[tuple[int, int]]) -> float:
    return float(sum(((series[a:b] - series[a:b].mean()) ** 2).sum() for a, b in cuts))


def _brute(series, k: int) -> tuple[float, list[tuple[int, int]]]:
    """Best segmentation of a 1-D series into k segments by trying every set of cut positions."""
    series = np.asarray(series, dtype=float)
    best = (np.inf, [])
    for inner in itertools.combinations(range(1, len(series)), k - 1):
        bounds = [0, *inner, len(series)]
        cuts = list(itertools.pairwise(bounds))
        loss = _loss(series, cuts)
        if loss < best[0] - 1e-12:
            best = (loss, cuts)
    return best


def test_reference_backtracking_counterexample():
    # The SGLP reference returns [(0, 2), (2, 4)] on this input; the optimum is [(0, 3), (3, 4)].
    x = np.array([6.0, 5.0, 5.0, 9.0])
    reference_cuts = [(0, 2), (2, 4)]
    assert _loss(x, reference_cuts) == pytest.approx(0.5 + 8.0)  # (6-5.5)^2*2 + (5-7)^2 + (9-7)^2
    optimum_loss, optimum_cuts = _brute(x, 2)
    assert optimum_cuts == [(0, 3), (3, 4)]
    assert optimum_loss == pytest.approx(2 / 3)  # (6-16/3)^2 + 2 (5-16/3)^2
    assert fisher_segments(x, 2) == optimum_cuts


def _expected_loss_drop_k(series, k_max: int = 6, min_drop: float = 0.05) -> int:
    losses = [_brute(series, k)[0] for k in range(1, min(k_max, len(series)) + 1)]
    k = 1
    while k < len(losses) and losses[k] < (1 - min_drop) * losses[k - 1]:
        k += 1
    return k


@pytest.mark.parametrize(
    "series",
    [
        [0.0, 0.0, 1.0, 1.0, 5.0, 5.0, 5.0, 9.0],
        [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02],
        np.random.default_rng(3).normal(size=9).tolist(),
    ],
)
def test_loss_drop_rule_matches_exhaustive_search(series):
    assert choose_k_loss_drop(series) == _expected_loss_drop_k(series)


def test_loss_drop_rule_stops_at_six_segments():
    # Ten far-apart levels: every added segment removes most of what is left, yet the rule stops at 6.
    series = np.repeat(np.arange(10) * 100.0, 2)
    assert choose_k_loss_drop(series) == 6
    assert choose_k_loss_drop(series, k_max=3) == 3
    assert choose_k(series, threshold=0.01) > 6  # the threshold rule is not capped


def test_loss_drop_rule_differs_from_threshold_rule():
    # One big step and a small one: the 5% rule takes the small one, the 90%-explained rule does not need it.
    series = [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 11.0, 11.0]
    assert _expected_loss_drop_k(series) == choose_k_loss_drop(series) == 3
    assert choose_k(series, threshold=0.1) == 2


def test_loss_drop_rule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_drop"):
        choose_k_loss_drop([1.0, 2.0], min_drop=1.0)
    with pytest.raises(ValueError, match="k_max"):
        choose_k_loss_drop([1.0, 2.0], k_max=0)


def test_constant_series_is_one_segment():
    assert choose_k_loss_drop([2.0, 2.0, 2.0]) == 1


def _matrix(positions: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 1.0, size=(positions, positions))
    m = (a + a.T) / 2
    np.fill_diagonal(m, 1.0)
    return m


def test_column_sums_include_the_stem():
    m = _matrix(5, 0)
    expected = [sum(m[i, j] for i in range(5)) for j in range(5)]
    assert np.allclose(column_sum_series(m), expected)
    with pytest.raises(ValueError, match="NaN"):
        column_sum_series(np.full((2, 2), np.nan))


def test_paper_segments_segment_column_sums_and_drop_the_stem():
    m = _matrix(8, 1)
    positions = ["stem", *[f"layer{i}" for i in range(7)]]
    result = paper_segments(positions, positions[1:], m)
    series = m.sum(axis=0)
    k = _expected_loss_drop_k(series)
    _, cuts = _brute(series, k)
    assert result["k"] == k
    assert result["position_segments"] == [list(c) for c in cuts]
    # Unit segments: the same cuts over positions 1..7, shifted by the stem, the stem-only segment dropped.
    expected_units = [[positions[p] for p in range(a, b) if p > 0] for a, b in cuts]
    assert result["segment_units"] == [u for u in expected_units if u]
    flat = [u for seg in result["segment_units"] for u in seg]
    assert flat == positions[1:]


def test_stem_alone_leaves_one_fewer_unit_segment():
    # The stem's column differs strongly from every unit's: it becomes a segment of its own.
    m = np.full((5, 5), 0.9)
    m[0, :] = m[:, 0] = 0.1
    m[0, 0] = 1.0
    m[3:, 3:] = 0.5
    np.fill_diagonal(m, 1.0)
    positions = ["stem", "u0", "u1", "u2", "u3"]
    result = paper_segments(positions, positions[1:], m)
    assert result["position_segments"][0] == [0, 1]
    assert len(result["segments"]) == result["k"] - 1
    assert result["segment_units"][0][0] == "u0"
