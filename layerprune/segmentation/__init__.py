"""Contiguous segmentation of units from their similarity matrix (pure functions, no I/O)."""

from __future__ import annotations

from layerprune.segmentation.fisher import (
    DEFAULT_THRESHOLD,
    PAPER_MAX_SEGMENTS,
    PAPER_MIN_DROP,
    choose_k,
    choose_k_loss_drop,
    fisher_segments,
    optimal_losses,
    segment_cost,
)
from layerprune.segmentation.segments import segment_units
from layerprune.segmentation.sglp import SEGMENTATION_PROTOCOLS, column_sum_series, paper_segments

__all__ = [
    "DEFAULT_THRESHOLD",
    "PAPER_MAX_SEGMENTS",
    "PAPER_MIN_DROP",
    "SEGMENTATION_PROTOCOLS",
    "choose_k",
    "choose_k_loss_drop",
    "column_sum_series",
    "fisher_segments",
    "optimal_losses",
    "paper_segments",
    "segment_cost",
    "segment_units",
]
