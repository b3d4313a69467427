"""A fake but consistent result tree (2 methods x 2 budgets x 2 seeds) and its summary, shared by the figure tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import results_tree as rt  # beside this file (pytest puts a conftest's folder on sys.path)

from layerprune.summary import build_summary, write_summary


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> rt.Tree:
    return rt.make_tree(tmp_path_factory.mktemp("figtree"), seeds=(0, 1))


@pytest.fixture(scope="session")
def summary(tree) -> pd.DataFrame:
    b = tree.baseline
    return build_summary(
        b["metrics"],
        tree.runs,
        baseline_train_emissions=b["train_emissions"],
        baseline_inference_emissions=b["inference_emissions"],
        baseline_adversarial=tree.adversarial[0],
        baseline_corruptions=tree.corruptions[0],
        latency=tree.latency,
    )


@pytest.fixture(scope="session")
def summary_csv(tree, summary) -> Path:
    return write_summary(tree.root / "summary.csv", summary)
