"""Contiguous segmentation of units from their similarity matrix (pure functions, no I/O)."""

from __future__ import annotations

from layerprune.segmentation.fisher import (
    DEFAULT_THRESHOLD,
    choose_k,
    fisher_segments,
    optimal_losses,
    segment_cost,
)
from layerprune.segmentation.segments import segment_units

__all__ = ["DEFAULT_THRESHOLD", "choose_k", "fisher_segments", "optimal_losses", "segment_cost", "segment_units"]
