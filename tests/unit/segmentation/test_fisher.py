"""Fisher optimal segmentation: exactness against brute force, structure recovery, choice of k, errors."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from layerprune.segmentation import (
    choose_k,
    fisher_segments,
    optimal_losses,
    segment_cost,
)


def _brute_force(X: np.ndarray, k: int) -> float:
    """Smallest loss over every placement of k - 1 cuts among the L - 1 gaps."""
    n_rows = len(X)
    best = np.inf
    for cuts in itertools.combinations(range(1, n_rows), k - 1):
        bounds = (0, *cuts, n_rows)
        segments = list(itertools.pairwise(bounds))
        best = min(best, segment_cost(X, segments))
    return best


def _clustered(sizes: list[int], d: int = 5, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    """Rows drawn around len(sizes) well-separated centres, in contiguous runs of the given sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(len(sizes), d))
    return np.concatenate([c + rng.normal(0.0, spread, size=(n, d)) for c, n in zip(centres, sizes)])


def _check_partition(segments: list[tuple[int, int]], n_rows: int, k: int) -> None:
    assert len(segments) == k
    assert segments[0][0] == 0 and segments[-1][1] == n_rows
    for (a, b), (c, _) in itertools.pairwise(segments):
        assert a < b == c
    assert segments[-1][0] < segments[-1][1]


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("seed", range(12))
def test_matches_exhaustive_search(seed: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(2, 10))
    X = rng.normal(size=(n_rows, d)) if d > 1 else rng.normal(size=n_rows)
    losses = optimal_losses(X, min(4, n_rows))
    for k in range(1, min(4, n_rows) + 1):
        segments = fisher_segments(X, k)
        _check_partition(segments, n_rows, k)
        exact = _brute_force(np.atleast_2d(X.T).T, k)
        # The returned segments achieve the optimum, and optimal_losses reports that same optimum.
        assert segment_cost(X, segments) == pytest.approx(exact, rel=1e-9, abs=1e-12)
        assert losses[k - 1] == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_losses_non_increasing_and_zero_at_L() -> None:
    X = np.random.default_rng(3).normal(size=(8, 4))
    losses = optimal_losses(X, 8)
    assert np.all(np.diff(losses) <= 1e-12)
    assert losses[0] == pytest.approx(((X - X.mean(0)) ** 2).sum())
    assert losses[-1] == pytest.approx(0.0, abs=1e-12)
    assert fisher_segments(X, 8) == [(i, i + 1) for i in range(8)]
    assert fisher_segments(X, 1) == [(0, 8)]


def test_recovers_uneven_block_structure_that_even_cuts_miss() -> None:
    sizes = [2, 7, 3]
    X = _clustered(sizes)
    segments = fisher_segments(X, 3)
    assert segments == [(0, 2), (2, 9), (9, 12)]
    even = [(0, 4), (4, 8), (8, 12)]
    assert segment_cost(X, segments) < 0.1 * segment_cost(X, even)


def test_recovers_blocks_of_a_cka_like_matrix() -> None:
    # A unit-by-unit similarity matrix with three diagonal blocks; the rows are what SGLP segments.
    bounds = [(0, 4), (4, 5), (5, 11)]
    S = np.full((11, 11), 0.2)
    for a, b in bounds:
        S[a:b, a:b] = 0.9
    np.fill_diagonal(S, 1.0)
    assert fisher_segments(S, 3) == bounds
    assert choose_k(S) == 3


def test_offset_does_not_change_result() -> None:
    # Costs are deviations from means: a large common offset (CKA values near 1) must not matter.
    X = _clustered([3, 4, 2], seed=5)
    assert fisher_segments(X + 1e6, 3) == fisher_segments(X, 3)


def test_choose_k_three_clusters() -> None:
    X = _clustered([4, 3, 5], seed=1)
    assert choose_k(X) == 3
    assert choose_k(X, k_max=6) == 3
    assert choose_k(X[:, 0]) in (2, 3)  # one coordinate may merge two centres; never more than the true count


def test_choose_k_constant_input_and_threshold_monotone() -> None:
    assert choose_k(np.ones((5, 2))) == 1
    X = np.random.default_rng(7).normal(size=(9, 3))
    ks = [choose_k(X, threshold=t) for t in (0.0, 0.05, 0.1, 0.3, 0.6, 0.9)]
    assert ks[0] == 9
    assert ks == sorted(ks, reverse=True)


def test_choose_k_falls_back_to_k_max_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    X = np.random.default_rng(2).normal(size=(9, 3))
    with caplog.at_level(logging.WARNING, logger="layerprune.segmentation.fisher"):
        assert choose_k(X, k_max=2, threshold=0.01) == 2
    assert "k_max" in caplog.text


@pytest.mark.parametrize(
    ("X", "k", "match"),
    [
        (np.zeros((4, 2)), 0, "between 1 and"),
        (np.zeros((4, 2)), 5, "between 1 and"),
        (np.zeros((4, 2)), 1.5, "integer"),
        (np.zeros((2, 2, 2)), 1, "ndim=3"),
        (np.zeros((0, 3)), 1, "no rows"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), 1, "non-finite"),
        (np.array([0.0, np.inf, 1.0]), 1, "non-finite"),
    ],
)
def test_fisher_segments_errors(X: np.ndarray, k: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fisher_segments(X, k)  # type: ignore[arg-type]


def test_other_errors() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="k_max"):
        optimal_losses(X, 5)
    with pytest.raises(ValueError, match="threshold"):
        choose_k(X, threshold=1.0)
    with pytest.raises(ValueError, match="should start at 2"):
        segment_cost(X, [(0, 2), (3, 4)])
    with pytest.raises(ValueError, match="last stop must be 4"):
        segment_cost(X, [(0, 2), (2, 3)])
    with pytest.raises(ValueError, match="empty"):
        segment_cost(X, [])
