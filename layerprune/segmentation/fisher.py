"""Fisher's optimal partition of an ordered sequence of vectors into contiguous segments.

SGLP (Similarity-Guided Layer Partition pruning, 2024) splits a network's units into contiguous segments of
mutually similar units by running Fisher's (1958) optimal segmentation on the rows of the unit-by-unit CKA
matrix, then prunes the least important units of every segment. This module is the segmentation step: pure
functions on a NumPy array, no model, no file I/O.

Reference: W. D. Fisher, "On Grouping for Maximum Homogeneity", JASA 53(284), 1958.
https://doi.org/10.1080/01621459.1958.10501479

Loss of a segment ``[a, b)`` of the rows ``x_a .. x_{b-1}`` of ``X`` (shape ``(L, d)``) is its within-segment sum of
squared deviations from the segment mean, ``sum_t ||x_t - mean||^2``; the loss of a segmentation is the sum over its
segments. :func:`fisher_segments` finds the segmentation into exactly ``k`` contiguous segments with the smallest
loss, by exact dynamic programming.

Note on the published SGLP code: its backtracking step is wrong (it does not follow the stored argmin split
points back from ``(k, L)``), and it usually returns (nearly) evenly spaced cuts whatever the input, so the segments
it reports are not the optimum of the loss it computes. Results that depend on its segments are therefore close
to "evenly spaced segments", not to Fisher's. Here the split point of every ``(j, b)`` cell is stored and followed
back from the full sequence, and the tests check the result against exhaustive search over all cut positions.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_THRESHOLD",
    "choose_k",
    "fisher_segments",
    "optimal_losses",
    "segment_cost",
]

logger = logging.getLogger(__name__)

#: Default of :func:`choose_k`: the segments must explain at least 90% of the spread of the rows.
DEFAULT_THRESHOLD = 0.1  # = the schema's pruning.segment_threshold (tests/unit/test_config_pruning.py checks it)


def _as_matrix(X: ArrayLike) -> np.ndarray:
    """Validate ``X`` and return it as a float64 ``(L, d)`` array, centred on its column means.

    Centring changes no segment cost (costs are deviations from segment means) but removes a large common offset
    (CKA values all sit near 1), which keeps the prefix-sum formula free of cancellation.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(
            f"X must be a 1-D array of length L or a 2-D (L, d) array of L row vectors, got ndim={arr.ndim} "
            f"(shape {arr.shape}); flatten or select the rows to segment"
        )
    if arr.shape[0] == 0:
        raise ValueError("X has no rows (L = 0); pass at least one row to segment")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(
            f"X contains non-finite values (first at index {bad}); fix or drop the NaN/inf entries, e.g. a unit "
            "whose activations were constant gives an undefined CKA"
        )
    return arr - arr.mean(axis=0, keepdims=True)


def _check_k(k: int, n_rows: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer number of segments, got {k!r}")
    if k < 1 or k > n_rows:
        raise ValueError(
            f"{name}={k} is out of range: the number of segments must be between 1 and the number of rows L={n_rows}"
        )


def _cost_matrix(arr: np.ndarray) -> np.ndarray:
    """Loss of every segment ``[a, b)``, from prefix sums of rows and of squared norms.

    Args:
        arr: ``(L, d)`` centred rows.

    Returns:
        ``(L + 1, L + 1)`` array ``C`` with ``C[a, b]`` the loss of rows ``a .. b-1`` for ``a < b`` (``inf``
        elsewhere, so that empty or reversed segments are never chosen).

    ``sum ||x_t - m||^2 = sum ||x_t||^2 - ||sum x_t||^2 / n``; with prefix sums ``S`` (rows) and ``Q`` (squared
    norms) each segment costs O(d), O(L^2 d) in all, after which the DP looks costs up in O(1).
    """
    n_rows = arr.shape[0]
    S = np.zeros((n_rows + 1, arr.shape[1]))
    np.cumsum(arr, axis=0, out=S[1:])
    Q = np.zeros(n_rows + 1)
    np.cumsum(np.einsum("ij,ij->i", arr, arr), out=Q[1:])
    a, b = np.triu_indices(n_rows + 1, k=1)
    seg_sum = S[b] - S[a]
    cost = (Q[b] - Q[a]) - np.einsum("ij,ij->i", seg_sum, seg_sum) / (b - a)
    C = np.full((n_rows + 1, n_rows + 1), np.inf)
    # Rounding can leave a tiny negative value for a zero-spread segment; a loss is never negative.
    C[a, b] = np.maximum(cost, 0.0)
    return C


def _dp(arr: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Fisher's dynamic programme.

    Returns:
        ``D`` of shape ``(k_max + 1, L + 1)``, ``D[j, b]`` the smallest loss of splitting rows ``0 .. b-1`` into
        ``j`` non-empty contiguous segments (``inf`` where impossible), and ``split`` of the same shape,
        ``split[j, b]`` the start of the last segment in that optimum. Ties go to the smallest start, so the result
        is deterministic. O(k_max L^2) time after the O(L^2 d) cost table.
    """
    n_rows = arr.shape[0]
    C = _cost_matrix(arr)
    D = np.full((k_max + 1, n_rows + 1), np.inf)
    split = np.zeros((k_max + 1, n_rows + 1), dtype=np.int64)
    D[0, 0] = 0.0
    for j in range(1, k_max + 1):
        # The last segment [a, b) needs j - 1 rows before it (one per earlier segment): a >= j - 1.
        for b in range(j, n_rows + 1):
            starts = np.arange(j - 1, b)
            totals = D[j - 1, starts] + C[starts, b]
            best = int(np.argmin(totals))
            D[j, b] = totals[best]
            split[j, b] = starts[best]
    return D, split


def fisher_segments(X: ArrayLike, k: int) -> list[tuple[int, int]]:
    """Optimal partition of the rows of ``X`` into ``k`` contiguous segments.

    Args:
        X: ``(L, d)`` rows in their natural order (for SGLP: row ``i`` is unit ``i``'s CKA with every unit), or a
            1-D array of length ``L`` (``d = 1``).
        k: number of segments, ``1 <= k <= L``.

    Returns:
        ``k`` half-open ``(start, stop)`` pairs, in order, that cover ``range(L)`` exactly and minimise the total
        within-segment sum of squared deviations from each segment's mean. Among equal-loss optima the one whose
        last segment starts earliest (recursively) is returned.

    Raises:
        ValueError: if ``X`` is not 1-D/2-D, is empty or has non-finite entries, or if ``k`` is not in ``[1, L]``.
    """
    arr = _as_matrix(X)
    n_rows = arr.shape[0]
    _check_k(k, n_rows)
    _, split = _dp(arr, int(k))
    segments: list[tuple[int, int]] = []
    stop = n_rows
    for j in range(int(k), 0, -1):
        start = int(split[j, stop])
        segments.append((start, stop))
        stop = start
    if stop != 0:  # pragma: no cover - guards the DP's invariant, not user input
        raise RuntimeError(f"backtracking ended at row {stop}, not 0; this is a bug in fisher_segments")
    segments.reverse()
    return segments


def segment_cost(X: ArrayLike, segments: list[tuple[int, int]]) -> float:
    """Total within-segment sum of squared deviations of a given segmentation.

    Args:
        X: ``(L, d)`` or length-``L`` array, as for :func:`fisher_segments`.
        segments: half-open ``(start, stop)`` pairs that must cover ``range(L)`` contiguously and in order.

    Returns:
        The loss that :func:`fisher_segments` minimises (0.0 when every segment is constant).

    Raises:
        ValueError: if ``X`` is invalid or the segments are empty, overlap, leave gaps or are out of order.
    """
    arr = _as_matrix(X)
    n_rows = arr.shape[0]
    if len(segments) == 0:
        raise ValueError(f"segments is empty; give (start, stop) pairs covering range({n_rows})")
    expected_start = 0
    total = 0.0
    for start, stop in segments:
        if start != expected_start or stop <= start:
            raise ValueError(
                f"segment ({start}, {stop}) breaks the partition: segments must be non-empty, contiguous and "
                f"ordered, this one should start at {expected_start}; got {list(segments)}"
            )
        block = arr[start:stop]
        total += float(((block - block.mean(axis=0)) ** 2).sum())
        expected_start = stop
    if expected_start != n_rows:
        raise ValueError(f"segments end at {expected_start} but X has L={n_rows} rows; the last stop must be {n_rows}")
    return total


def optimal_losses(X: ArrayLike, k_max: int) -> np.ndarray:
    """Optimal total loss for every number of segments ``k = 1 .. k_max``, from one DP table.

    Args:
        X: ``(L, d)`` or length-``L`` array.
        k_max: largest number of segments, ``1 <= k_max <= L``.

    Returns:
        ``(k_max,)`` float array; entry ``k - 1`` is the loss of ``fisher_segments(X, k)``. It is non-increasing in
        ``k``, entry 0 is the total sum of squares of the rows about their mean, and it reaches 0 at ``k = L``.

    Raises:
        ValueError: as :func:`fisher_segments`, with ``k_max`` in place of ``k``.
    """
    arr = _as_matrix(X)
    _check_k(k_max, arr.shape[0], name="k_max")
    D, _ = _dp(arr, int(k_max))
    return D[1:, arr.shape[0]].copy()


def choose_k(X: ArrayLike, k_max: int | None = None, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Choose the number of segments: the smallest ``k`` whose segments explain ``1 - threshold`` of the spread.

    Rule: with ``loss(k)`` from :func:`optimal_losses`, return the smallest ``k`` such that
    ``loss(k) <= threshold * loss(1)``. Since ``loss(1)`` is the total sum of squares of the rows about their mean,
    ``loss(k) / loss(1)`` is the fraction of that spread left *within* segments (``1 - R^2`` of the piecewise-constant
    fit), so the default ``threshold = 0.1`` asks for the fewest segments that explain at least 90% of the variation
    between rows, the usual "elbow" of the explained-variance curve. Unlike a maximum-curvature rule it needs no
    smoothing, is defined for any ``L >= 1`` and is monotone in ``threshold`` (a larger threshold never gives more
    segments).

    Args:
        X: ``(L, d)`` or length-``L`` array, as for :func:`fisher_segments`.
        k_max: largest ``k`` considered (default ``L``); ``1 <= k_max <= L``.
        threshold: fraction of ``loss(1)`` allowed to remain, in ``[0, 1)``.

    Returns:
        The chosen ``k``. It is 1 when all rows are equal (``loss(1) == 0``). If no ``k <= k_max`` meets the rule,
        ``k_max`` is returned and a warning is logged (with ``k_max = L`` the rule is always met, since
        ``loss(L) = 0``).

    Raises:
        ValueError: if ``X``/``k_max`` are invalid or ``threshold`` is outside ``[0, 1)``.
    """
    arr = _as_matrix(X)
    n_rows = arr.shape[0]
    if not (isinstance(threshold, (int, float, np.floating)) and 0.0 <= float(threshold) < 1.0):
        raise ValueError(
            f"threshold={threshold!r} must be a fraction in [0, 1): the share of the k=1 loss allowed to remain "
            f"(default {DEFAULT_THRESHOLD})"
        )
    k_max = n_rows if k_max is None else k_max
    losses = optimal_losses(arr, k_max)
    total = losses[0]
    if total <= 0.0:
        return 1
    # A relative tolerance keeps rounding noise (losses of ~1e-16 that should be 0) from deciding the answer.
    meets = np.flatnonzero(losses <= threshold * total + 1e-12 * total)
    if meets.size == 0:
        logger.warning(
            "no k <= k_max=%d brings the loss below %.3g of the k=1 loss (best ratio %.3g); using k=%d. "
            "Raise k_max or threshold to get a data-driven choice.",
            k_max,
            threshold,
            losses[-1] / total,
            k_max,
        )
        return int(k_max)
    return int(meets[0]) + 1
