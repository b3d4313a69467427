"""The segment stage's result: contiguous segments of the units from their CKA matrix (SGLP)."""

from __future__ import annotations

import numpy as np

from layerprune.segmentation.fisher import choose_k, fisher_segments, optimal_losses

__all__ = ["segment_units"]


def segment_units(units: list[str], matrix: np.ndarray, segments: str | int, threshold: float) -> dict:
    """Segments of the units (rows of the unit-by-unit CKA matrix, stem excluded), JSON-ready.

    Args:
        units: unit names, in network order.
        matrix: (n_units, n_units) linear CKA between the units' outputs.
        segments: the number of segments, or ``"auto"`` (the smallest k whose Fisher loss is at most
            ``threshold`` times the one-segment loss).
        threshold: the auto rule's threshold, in [0, 1).

    Returns:
        ``units``, ``k``, ``rule``, ``threshold``, ``segments`` (start, stop index pairs),
        ``segment_units`` (unit names per segment) and ``losses`` (optimal Fisher loss per k).

    Raises:
        ValueError: NaN entries, or a segment count outside 1..len(units).
    """
    if np.isnan(matrix).any():
        raise ValueError("the unit CKA matrix has undefined (NaN) entries; use a larger calibration.size or batch_size")
    k = choose_k(matrix, threshold=threshold) if segments == "auto" else int(segments)
    if not 1 <= k <= len(units):
        raise ValueError(f"pruning.segments={segments} must be between 1 and the {len(units)} units")
    bounds = fisher_segments(matrix, k)
    return {
        "units": units,
        "k": k,
        "rule": "auto: smallest k with loss(k) <= threshold * loss(1)" if segments == "auto" else "fixed",
        "threshold": threshold,
        "segments": [list(b) for b in bounds],
        "segment_units": [units[start:stop] for start, stop in bounds],
        "losses": optimal_losses(matrix, len(units)).tolist(),
    }
