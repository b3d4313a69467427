"""SGLP's segmentation step under the paper protocol (the reference code's input and rule for the number of segments).

layerprune's default (``protocol: layerprune``, in ``layerprune segment``) segments the *rows* of the unit-by-unit
CKA matrix with the stem excluded and picks the smallest ``k`` whose segments explain 90% of their spread
(:func:`~layerprune.segmentation.fisher.choose_k`). The SGLP reference code instead

1. segments a 1-D series: the *column sums* of the CKA matrix over all its positions, the stem's output included
   (position 0), and
2. adds segments while one more cuts the optimal loss by more than 5%, at most 6
   (:func:`~layerprune.segmentation.fisher.choose_k_loss_drop`).

:func:`paper_segments` does that, with the exact Fisher DP (the reference's backtracking bug is not reproduced),
and maps the segments of positions back to units: the stem is not a unit, so it is dropped from the first segment
(a segment holding only the stem disappears, leaving ``k - 1`` unit segments). Why layerprune's default differs is
in docs/fidelity.md: a row keeps the whole similarity profile of a unit, while a column sum collapses it to one
number in which very different profiles can coincide, and the stem is never removable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprune.segmentation.fisher import (
    PAPER_MAX_SEGMENTS,
    PAPER_MIN_DROP,
    choose_k_loss_drop,
    fisher_segments,
    optimal_losses,
)

__all__ = ["SEGMENTATION_PROTOCOLS", "column_sum_series", "paper_segments"]

#: values of the config's ``pruning.protocol.sglp``
SEGMENTATION_PROTOCOLS = ("layerprune", "paper")


def column_sum_series(cka_matrix: np.ndarray) -> np.ndarray:
    """The reference's segmentation input: the sum of every column of the full CKA matrix (stem included).

    Args:
        cka_matrix: ``(P, P)`` CKA matrix over all positions (stem first, then the units in forward order).

    Returns:
        ``(P,)`` series; entry ``j`` is ``sum_i cka_matrix[i, j]``.

    Raises:
        ValueError: if the matrix is not square or has undefined (NaN) entries.
    """
    matrix = np.asarray(cka_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the CKA matrix must be square, got shape {matrix.shape}")
    if np.isnan(matrix).any():
        raise ValueError("the CKA matrix has undefined (NaN) entries; use a larger calibration.size or batch_size")
    return matrix.sum(axis=0)


def paper_segments(
    positions: Sequence[str],
    units: Sequence[str],
    cka_matrix: np.ndarray,
    *,
    k_max: int = PAPER_MAX_SEGMENTS,
    min_drop: float = PAPER_MIN_DROP,
) -> dict:
    """Segments of the units as the SGLP reference computes them (column sums with the stem, 5% rule up to 6).

    Args:
        positions: names of the rows/columns of ``cka_matrix`` (``["stem", *units]``).
        units: the units in forward order; every one must be in ``positions``.
        cka_matrix: ``(P, P)`` CKA matrix over ``positions``.
        k_max: most segments (the reference: 6).
        min_drop: relative loss drop an added segment must bring (the reference: 0.05).

    Returns:
        The ``segments.json`` content: ``units``, ``k`` (segments of positions), ``segments`` (``[start, stop)`` over
        ``units``), ``segment_units``, ``losses`` (optimal loss of the series for ``k = 1 .. k_max``), ``series``,
        ``positions``, ``position_segments``, ``rule`` and ``protocol``.

    Raises:
        ValueError: on a malformed matrix or units missing from ``positions``.
    """
    positions, units = list(positions), list(units)
    missing = [u for u in units if u not in positions]
    if missing:
        raise ValueError(f"units {missing} are not rows of the CKA matrix {positions}")
    series = column_sum_series(cka_matrix)
    if series.size != len(positions):
        raise ValueError(f"the CKA matrix has {series.size} rows but {len(positions)} position names")
    k = choose_k_loss_drop(series, k_max=k_max, min_drop=min_drop)
    bounds = fisher_segments(series, k)
    unit_index = {name: i for i, name in enumerate(units)}
    segments: list[list[int]] = []
    for start, stop in bounds:
        members = [unit_index[p] for p in positions[start:stop] if p in unit_index]
        if members:  # a segment holding only the stem is no unit segment
            segments.append([members[0], members[-1] + 1])
    return {
        "protocol": "paper",
        "units": units,
        "k": k,
        "rule": f"paper: add segments while the loss drops by more than {min_drop:g}, at most {k_max}",
        "threshold": min_drop,
        "segments": segments,
        "segment_units": [units[a:b] for a, b in segments],
        "losses": optimal_losses(series, min(k_max, series.size)).tolist(),
        "series": series.tolist(),
        "positions": positions,
        "position_segments": [list(b) for b in bounds],
    }
