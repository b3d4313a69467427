"""Aggregation of corruption accuracies: per corruption, group and overall, with CE and mCE relative to a baseline
(Hendrycks & Dietterich, 2019). Pandas only: the summary reads it without torch."""

from __future__ import annotations

import logging

import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["corruption_summary"]


def corruption_summary(df: pd.DataFrame, baseline_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Aggregate ``evaluate_corruptions`` output: mean accuracy per corruption, per group and overall, plus CE/mCE.

    Following Hendrycks & Dietterich (2019), the corruption error of corruption c is
    ``CE_c = sum_s err_{s,c} / sum_s err_baseline_{s,c}`` (errors summed over severities), the group CE is the
    mean of its corruptions' CE, and ``mCE`` (the ``overall`` row) is the mean CE over corruptions. A pruned model is
    naturally compared with its unpruned parent as baseline (CE < 1: more robust than the parent).

    Where the baseline makes no error on a corruption (likely on small subsets and mild corruptions), its CE is
    undefined: it is NaN, and the group CE and mCE are means over the corruptions where CE is defined; the column
    ``ce_corruptions`` counts them (NaN CE only when it is 0). The paper's mCE has no such case, so compare mCEs
    only between runs with the same count.

    Args:
        df: rows ``corruption, group, severity, accuracy, n``.
        baseline_df: the same table for the baseline model, covering every (corruption, severity) of ``df``; when
            None the ``ce`` column is omitted (a model relative to itself would be 1.0 by definition).

    Returns:
        DataFrame with columns ``level`` ("corruption", "group" or "overall"), ``name`` (corruption, group, or "all"),
        ``group`` (the group; "all" for the overall row), ``accuracy`` (mean over severities, and over corruptions for
        group/overall rows: the overall row's accuracy is the mean corruption accuracy), ``error`` (1 - accuracy) and,
        with a baseline, ``ce`` and ``ce_corruptions`` (corruptions of the row with a defined CE).

    Raises:
        ValueError: missing columns, or a baseline lacking some (corruption, severity) of ``df``.
    """
    needed = {"corruption", "group", "severity", "accuracy"}
    for what, table in (("df", df), ("baseline_df", baseline_df)):
        if table is not None and not needed <= set(table.columns):
            raise ValueError(
                f"{what} lacks columns {sorted(needed - set(table.columns))}; pass the output of evaluate_corruptions"
            )
    if df.empty:
        raise ValueError("df has no rows; evaluate at least one corruption and severity")
    per_c = df.groupby("corruption", sort=False).agg(group=("group", "first"), accuracy=("accuracy", "mean"))
    ce: pd.Series | None = None
    if baseline_df is not None:
        keys = ["corruption", "severity"]
        merged = df[[*keys, "accuracy"]].merge(
            baseline_df[[*keys, "accuracy"]], on=keys, how="left", suffixes=("", "_baseline")
        )
        missing = merged[merged["accuracy_baseline"].isna()]
        if not missing.empty:
            pairs = list(missing[keys].itertuples(index=False, name=None))
            raise ValueError(
                f"baseline_df lacks (corruption, severity) pairs {pairs}; evaluate the baseline on the "
                "same corruptions and severities"
            )
        sums = (
            merged.assign(err=1 - merged["accuracy"], err_b=1 - merged["accuracy_baseline"])
            .groupby("corruption", sort=False)[["err", "err_b"]]
            .sum()
        )
        defined = sums["err_b"] > 0
        if not defined.all():
            logger.warning(
                "baseline has zero error on corruptions %s, so CE is undefined there; mCE is the mean over the "
                "other %d corruptions (column ce_corruptions); use more images for the paper's mCE",
                list(sums.index[~defined]),
                int(defined.sum()),
            )
        ce = (sums["err"] / sums["err_b"]).where(defined)
    rows = []
    for name, row in per_c.iterrows():
        rows.append(
            {
                "level": "corruption",
                "name": name,
                "group": row["group"],
                "accuracy": row["accuracy"],
                **({"ce": ce[name], "ce_corruptions": int(pd.notna(ce[name]))} if ce is not None else {}),
            }
        )
    for group in dict.fromkeys(per_c["group"]):
        members = per_c.index[per_c["group"] == group]
        rows.append(
            {
                "level": "group",
                "name": group,
                "group": group,
                "accuracy": per_c.loc[members, "accuracy"].mean(),
                **(
                    {"ce": ce[members].mean(), "ce_corruptions": int(ce[members].notna().sum())}
                    if ce is not None
                    else {}
                ),
            }
        )
    rows.append(
        {
            "level": "overall",
            "name": "all",
            "group": "all",
            "accuracy": per_c["accuracy"].mean(),
            **({"ce": ce.mean(), "ce_corruptions": int(ce.notna().sum())} if ce is not None else {}),
        }
    )
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("accuracy") + 1, "error", 1 - out["accuracy"])
    return out
