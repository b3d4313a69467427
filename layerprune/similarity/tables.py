"""Tidy tables (and a quick heatmap) from the extraction artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from layerprune.io import atomic_path
from layerprune.similarity.distances import get_distance
from layerprune.similarity.extract import Representations

__all__ = ["candidate_distances", "matrix_table", "plot_matrix"]


def matrix_table(names: Sequence[str], matrix: np.ndarray) -> pd.DataFrame:
    """``unit_a, unit_b, cka``: one row per ordered pair (the full square, for easy pivoting)."""
    a, b = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    return pd.DataFrame(
        {
            "unit_a": np.asarray(names)[a.ravel()],
            "unit_b": np.asarray(names)[b.ravel()],
            "cka": matrix.ravel(),
        }
    )


def candidate_distances(reps: Representations, metrics: Sequence[str], protocol: str = "layerprune") -> pd.DataFrame:
    """``unit, metric, distance`` between intact and bypassed penultimate features, for every
    removable candidate and metric (the Consensus criterion votes over these); ``protocol``
    ``paper`` uses Consensus's reference definitions where they differ (``get_distance``)."""
    rows = []
    for metric in metrics:
        distance = get_distance(metric, protocol)
        for unit in reps.candidates:
            value = distance(reps.intact, reps.bypassed_of(unit), labels=reps.labels)
            rows.append({"unit": unit, "metric": metric, "distance": float(value)})
    return pd.DataFrame(rows, columns=["unit", "metric", "distance"])


def plot_matrix(names: Sequence[str], matrix: np.ndarray, path: str | Path) -> None:
    """A plain heatmap of the matrix (the figures stage draws the annotated version)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    fig.colorbar(image, ax=ax, label="linear CKA")
    ax.set_title("unit-by-unit CKA")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
