"""The shortcut metrics as a table (torch-free, for the summary and the figures): the rows of ``shortcut.csv``
and the ``shortcut_*`` columns of ``summary.csv``. The metrics themselves are computed in
:mod:`layerprune.robustness.shortcut`."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["METRICS", "SHORTCUT_COLUMNS", "read_shortcut", "shortcut_columns"]

#: Rows of ``shortcut.csv`` (column ``metric``), in order. Accuracies and the patch-follow rate are fractions in
#: [0, 1]; reliance = aligned - conflicting accuracy, in [-1, 1].
METRICS = ("clean_accuracy", "aligned_accuracy", "conflicting_accuracy", "reliance", "patch_follow_rate")
#: Their columns in ``summary.csv``.
SHORTCUT_COLUMNS = tuple(f"shortcut_{m}" for m in METRICS)


def read_shortcut(path: str | Path) -> dict[str, float]:
    """The metrics of one ``shortcut.csv`` as ``{metric: value}`` (every name of :data:`METRICS`).

    Raises:
        FileNotFoundError: no such file. ValueError: a metric missing (not written by ``layerprune shortcut``).
    """
    from layerprune.io import read_table

    frame = read_table(path, ("metric", "value"))
    values = dict(zip(frame["metric"], frame["value"].astype(float)))
    missing = [m for m in METRICS if m not in values]
    if missing:
        raise ValueError(f"{path} lacks the metrics {missing}; rerun `layerprune shortcut` for it")
    return {m: values[m] for m in METRICS}


def shortcut_columns(path: str | Path | None) -> dict[str, float]:
    """The ``shortcut_*`` summary columns of one ``shortcut.csv``; NaN for every column when ``path`` is None."""
    values = read_shortcut(path) if path is not None else dict.fromkeys(METRICS, math.nan)
    return {f"shortcut_{m}": values[m] for m in METRICS}
