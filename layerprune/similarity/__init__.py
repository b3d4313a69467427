"""Representational similarity of units: CKA (single pair, minibatch matrices) and distances for Consensus.

Pure functions on (n, ...) tensors or arrays, no file I/O. Feature extraction (hooks keyed by unit name) lives in
``layerprune.similarity.extract``.
"""

from __future__ import annotations

from layerprune.similarity._inputs import PRECISIONS, Precision
from layerprune.similarity.cka import linear_cka, rbf_cka
from layerprune.similarity.distances import (
    DISTANCES,
    bures_distance,
    cca_distance,
    cka_distance,
    get_distance,
    permutation_distance,
    procrustes_distance,
    wasserstein_distance_1d,
)
from layerprune.similarity.minibatch import (
    MODES,
    SGLP_BATCH_SIZE,
    MinibatchCKA,
    cka_matrix,
    sglp_cka_matrix,
)

__all__ = [
    "DISTANCES",
    "MODES",
    "PRECISIONS",
    "SGLP_BATCH_SIZE",
    "MinibatchCKA",
    "Precision",
    "bures_distance",
    "cca_distance",
    "cka_distance",
    "cka_matrix",
    "get_distance",
    "linear_cka",
    "permutation_distance",
    "procrustes_distance",
    "rbf_cka",
    "sglp_cka_matrix",
    "wasserstein_distance_1d",
]
