"""mCE where the baseline makes no error on some corruptions: defined over the others, with their count."""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from layerprune.robustness.corruptions import CORRUPTIONS
from layerprune.robustness.mce import corruption_summary
from layerprune.summary import build_summary


def _table(acc: dict[tuple[str, int], float]) -> pd.DataFrame:
    rows = [
        {"corruption": c, "group": CORRUPTIONS[c], "severity": s, "accuracy": a, "n": 100} for (c, s), a in acc.items()
    ]
    return pd.DataFrame(rows)


MODEL = _table({("gaussian_noise", 1): 0.8, ("gaussian_noise", 2): 0.6, ("fog", 1): 0.9, ("fog", 2): 0.7,
                ("brightness", 1): 0.9, ("brightness", 2): 0.9})  # fmt: skip


def test_ce_is_nan_where_the_baseline_is_perfect_and_mce_averages_the_rest(caplog) -> None:
    base = _table({("gaussian_noise", 1): 0.9, ("gaussian_noise", 2): 0.7, ("fog", 1): 1.0, ("fog", 2): 1.0,
                   ("brightness", 1): 0.95, ("brightness", 2): 0.95})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="layerprune.robustness.corruptions"):
        s = corruption_summary(MODEL, base).set_index(["level", "name"])
    assert "zero error on corruptions ['fog']" in caplog.text
    ce_noise, ce_bright = (0.2 + 0.4) / (0.1 + 0.3), (0.1 + 0.1) / (0.05 + 0.05)
    assert math.isnan(s.loc[("corruption", "fog"), "ce"]) and s.loc[("corruption", "fog"), "ce_corruptions"] == 0
    assert s.loc[("corruption", "gaussian_noise"), "ce"] == pytest.approx(ce_noise)
    assert s.loc[("group", "weather"), "ce"] == pytest.approx(ce_bright)  # fog left out of its group too
    assert s.loc[("group", "weather"), "ce_corruptions"] == 1
    assert s.loc[("overall", "all"), "ce"] == pytest.approx((ce_noise + ce_bright) / 2)
    assert s.loc[("overall", "all"), "ce_corruptions"] == 2
    assert s.loc[("overall", "all"), "accuracy"] == pytest.approx((0.7 + 0.8 + 0.9) / 3)  # accuracy keeps fog


def test_mce_is_nan_only_when_no_corruption_has_a_baseline_error() -> None:
    perfect = MODEL.assign(accuracy=1.0)
    overall = corruption_summary(MODEL, perfect).query("level == 'overall'").iloc[0]
    assert math.isnan(overall["ce"]) and overall["ce_corruptions"] == 0


def _results_tree():
    path = Path(__file__).parents[1] / "figures" / "results_tree.py"
    spec = importlib.util.spec_from_file_location("results_tree", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("results_tree", module)
    spec.loader.exec_module(module)
    return module


def _summary(tree) -> pd.DataFrame:
    b = tree.baseline
    return build_summary(b["metrics"], tree.runs, baseline_corruptions=tree.corruptions[0])


def test_summary_records_the_corruptions_of_each_mce(tmp_path) -> None:
    rt = _results_tree()
    tree = rt.make_tree(tmp_path)
    full = _summary(tree)
    assert (full["mce_corruptions"].dropna() == len(rt.CORRUPTIONS)).all()
    # the baseline makes no error on fog: before, every run's mCE became NaN
    base_path = tree.corruptions[0]
    base = pd.read_csv(base_path)
    base.loc[base["corruption"] == "fog", "accuracy"] = 1.0
    base.to_csv(base_path, index=False)
    summary = _summary(tree)
    assert summary["mce_corruptions"].dtype == "Int64"
    baseline = summary[summary["stage"] == "baseline"].iloc[0]
    assert baseline["mce"] == 1.0 and baseline["mce_corruptions"] == len(rt.CORRUPTIONS) - 1
    finetuned = summary[summary["stage"] == "finetuned"]
    assert not finetuned["mce"].isna().any()
    assert (finetuned["mce_corruptions"] == len(rt.CORRUPTIONS) - 1).all()
    row = finetuned.iloc[0]
    run = pd.read_csv(tree.runs[0]["corruptions"])
    ces = []
    for corruption in ("gaussian_noise", "defocus_blur", "contrast"):
        err = (1 - run[run["corruption"] == corruption]["accuracy"]).sum()
        err_b = (1 - base[base["corruption"] == corruption]["accuracy"]).sum()
        ces.append(err / err_b)
    assert row["mce"] == pytest.approx(sum(ces) / 3)
    assert summary[summary["stage"] == "pruned"]["mce_corruptions"].isna().all()  # measured after fine-tuning

    base.loc[:, "accuracy"] = 1.0
    base.to_csv(base_path, index=False)
    summary = _summary(tree)
    runs = summary[summary["stage"] == "finetuned"]
    assert runs["mce"].isna().all() and (runs["mce_corruptions"] == 0).all()
