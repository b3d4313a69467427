"""Readers of the result files the figures draw (tidy CSVs and JSON), with the checks that make errors readable.

Every reader returns None (or an empty mapping) for an input that is absent because its stage is disabled, so a
figure can skip that panel with a note; a file that exists but is malformed is an error naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from layerprune.io import read_json, read_table
from layerprune.summary import budget_sort_key, read_summary, run_key

__all__ = [
    "BASELINE_KEY",
    "RunKey",
    "read_cka",
    "read_drop_one",
    "read_robustness",
    "read_scores",
    "read_segments",
    "read_summaries",
    "read_summary",
]

logger = logging.getLogger(__name__)

#: (method, budget, seed) of a model; the baseline is ``("baseline", "none", None)``.
RunKey = tuple[str, str, "int | None"]
BASELINE_KEY: RunKey = ("baseline", "none", None)


def read_cka(path: str | Path | None) -> pd.DataFrame | None:
    """``unit_cka.csv`` (``unit_a, unit_b, cka``) as a square matrix, rows and columns in forward order.

    The order is that of first appearance in ``unit_a`` (the similarity stage writes ``stem`` then the units in
    forward order). Missing pairs are filled from the symmetric entry.

    Returns:
        (L + 1, L + 1) DataFrame indexed by unit names, or None without a path.
    """
    if path is None:
        return None
    tidy = read_table(Path(path), ("unit_a", "unit_b", "cka"))
    order = list(dict.fromkeys(list(tidy["unit_a"]) + list(tidy["unit_b"])))
    matrix = tidy.pivot_table(index="unit_a", columns="unit_b", values="cka", aggfunc="mean")
    matrix = matrix.reindex(index=order, columns=order)
    return matrix.combine_first(matrix.T).reindex(index=order, columns=order)


def read_segments(path: str | Path | None) -> dict[str, Any] | None:
    """``segments.json`` (``units``: names; ``segments``: [start, stop) over ``units``; ``k``), checked.

    Raises:
        ValueError: segments that are not contiguous ranges within ``units``.
    """
    if path is None:
        return None
    data = read_json(path)
    if not isinstance(data, dict) or "segments" not in data or "units" not in data:
        raise ValueError(f"{path} must hold 'units' and 'segments'; it is written by `layerprune segment`")
    n = len(data["units"])
    for seg in data["segments"]:
        if len(seg) != 2 or not 0 <= seg[0] < seg[1] <= n:
            raise ValueError(f"{path}: segment {seg} is not a [start, stop) range within the {n} units")
    return data


def read_scores(paths: Sequence[str | Path], budget: str | None = None) -> tuple[dict[str, pd.DataFrame], str | None]:
    """Per method, the ``scores.csv`` (``unit, stage, score, rank, removed``) of one budget and its lowest seed.

    Args:
        paths: ``pruned/<method>/<budget>/seed<N>/scores.csv`` files (any budgets and seeds).
        budget: the budget to show; None takes the first in budget order among the files.

    Returns:
        ``({method: scores}, budget)``; ``({}, None)`` without files.

    Raises:
        ValueError: ``budget`` not among the files' budgets.
    """
    keyed = {run_key(p): Path(p) for p in paths}
    if not keyed:
        return {}, None
    budgets = sorted({k[1] for k in keyed}, key=budget_sort_key)
    if budget is None:
        budget = budgets[0]
    elif budget not in budgets:
        raise ValueError(f"no scores.csv for budget {budget!r}; the files hold budgets {budgets}")
    chosen: dict[str, pd.DataFrame] = {}
    for (method, b, _seed), path in sorted(keyed.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        if b != budget or method in chosen:
            continue
        frame = read_table(path, ("unit", "score", "removed"))
        frame["removed"] = frame["removed"].astype(str).str.lower().isin(("true", "1", "1.0"))
        chosen[method] = frame
    return chosen, budget


def read_drop_one(path: str | Path | None) -> pd.DataFrame | None:
    """``drop_one.csv`` (``unit, position, perplexity, ...``), or None when not given."""
    if path is None:
        return None
    return read_table(path, ("unit", "position", "perplexity"))


def read_robustness(paths: Sequence[str | Path], needed: Sequence[str]) -> dict[RunKey, pd.DataFrame]:
    """Robustness CSVs keyed by model: ``robustness/baseline/<f>`` -> :data:`BASELINE_KEY`, others by run."""
    tables: dict[RunKey, pd.DataFrame] = {}
    for p in paths:
        path = Path(p)
        key: RunKey = BASELINE_KEY if path.parent.name == "baseline" else run_key(path)
        if key in tables:
            raise ValueError(f"two robustness files for {key}: pass each model's {path.name} once")
        tables[key] = read_table(path, needed)
    return tables


def read_summaries(paths: Sequence[str | Path] | Mapping[str, str | Path]) -> dict[str, pd.DataFrame]:
    """Several ``summary.csv`` keyed by experiment (the mapping's keys, else each file's folder name)."""
    items = paths.items() if isinstance(paths, Mapping) else ((Path(p).parent.name, p) for p in paths)
    out: dict[str, pd.DataFrame] = {}
    for name, path in items:
        if name in out:
            raise ValueError(f"two summaries named {name!r}; give experiments distinct folders (or names)")
        out[name] = read_summary(path)
    return out
