"""Each criterion against random at the same budget, from a workflow's ``summary.csv``: the tables of docs/reproduction.md.

For every (budget, method) it prints top-1 before and after fine-tuning (mean ± sample std over seeds, with the range),
and the paired difference to random fine-tuned with the same seed (random's seed also draws its units, so the pairing
removes the fine-tuning noise the two share, not random's choice of units). A criterion "beats random" in the last
column only where every seed's difference is positive; the columns say how large and how spread the differences are,
no test of significance is attempted on three seeds.

Usage: python bench/compare_to_random.py results/<experiment>/summary.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from layerprune.summary import budget_sort_key, method_label, read_summary

PAIRED = "fine-tuned − random, same seed (pts): mean [per seed]"


def _spread(values: pd.Series) -> str:
    """Mean ± std (min-max, n) in accuracy points; one value (or identical values) without the spread."""
    values = values.dropna() * 100
    if len(values) == 0:
        return "–"
    if len(values) == 1 or values.nunique() == 1:
        return f"{values.iloc[0]:.1f} (n={len(values)}, identical)" if len(values) > 1 else f"{values.iloc[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} ({values.min():.1f}–{values.max():.1f}, n={len(values)})"


def compare(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (budget, method): accuracy before/after fine-tuning and the paired difference to random."""
    runs = summary[summary["method"] != "baseline"]
    wide = runs.pivot_table(index=["budget", "method", "seed"], columns="stage", values="top1").reset_index()
    macs = runs.groupby(["budget", "method"])["macs_reduction"].mean()
    rows = []
    for (budget, method), group in wide.groupby(["budget", "method"]):
        row = {
            "budget": budget,
            "method": method_label(method),
            "MACs ↓ (%)": f"{100 * macs[(budget, method)]:.1f}",
            "top-1 pruned (%)": _spread(group["pruned"]),
            "top-1 fine-tuned (%)": _spread(group["finetuned"]),
        }
        if method == "random":
            row[PAIRED] = "–"
        else:
            reference = wide[(wide["budget"] == budget) & (wide["method"] == "random")].set_index("seed")["finetuned"]
            paired = (group.set_index("seed")["finetuned"] - reference).dropna() * 100
            each = ", ".join(f"{v:+.1f}" for v in paired)
            verdict = "all seeds ahead" if (paired > 0).all() else "all seeds behind" if (paired < 0).all() else "mixed"
            row[PAIRED] = f"{paired.mean():+.1f} [{each}] {verdict}" if len(paired) else "–"
        rows.append(row)
    table = pd.DataFrame(rows)
    # the criteria in the order of the summary (the config's), random last
    methods = [method_label(m) for m in dict.fromkeys(runs["method"]) if m != "random"] + [method_label("random")]
    return (
        table.assign(_budget=table["budget"].map(budget_sort_key), _method=table["method"].map(methods.index))
        .sort_values(["_budget", "_method"])
        .drop(columns=["_budget", "_method"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path, help="summary.csv written by `layerprune summarize`")
    args = parser.parse_args()
    summary = read_summary(args.summary)
    base = summary[summary["method"] == "baseline"].iloc[0]
    print(f"Baseline: top-1 {100 * base['top1']:.2f}% on {int(base['n_test'])} test images\n")
    print(compare(summary).to_markdown(index=False))


if __name__ == "__main__":
    main()
