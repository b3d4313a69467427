"""The quick shortcut experiment end to end (configs/shortcut-digits.yaml): every compared model is fine-tuned on
the biased digits and evaluated into robustness/<model>/shortcut.csv, whose metrics reach summary.csv and the
shortcut figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from layerprune.robustness.shortcut_table import METRICS, SHORTCUT_COLUMNS, read_shortcut

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG_FILE = REPO / "configs" / "shortcut-digits.yaml"
CONFIG = yaml.safe_load(CONFIG_FILE.read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("shortcut")
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(CONFIG_FILE), "--cores", "2",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    if result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return workdir / "results" / CONFIG["experiment"]


def _models() -> list[str]:
    runs = [f"finetuned/{m}/{b}/seed0" for m in CONFIG["methods"] for b in CONFIG["budgets"]]
    return ["baseline", *runs]


def test_every_compared_model_is_finetuned_on_the_biased_set_and_measured(results: Path) -> None:
    for model in _models():
        checkpoint = torch.load(results / "shortcut" / model / "model.pt", weights_only=True)
        assert checkpoint["meta"]["shortcut"]["rho"] == CONFIG["shortcut"]["rho"]
        assert checkpoint["meta"]["parent"].endswith(f"{model}/model.pt")
        values = read_shortcut(results / "robustness" / model / "shortcut.csv")
        assert all(0.0 <= values[m] <= 1.0 for m in METRICS if m != "reliance")
        assert values["reliance"] == pytest.approx(values["aligned_accuracy"] - values["conflicting_accuracy"])
        assert values["conflicting_accuracy"] + values["patch_follow_rate"] <= 1.0 + 1e-9
        assert values["clean_accuracy"] > 0.5  # a digits model, not chance (0.1)


def test_summary_and_figure_carry_the_shortcut_metrics(results: Path) -> None:
    summary = pd.read_csv(results / "summary.csv")
    last = summary[summary["stage"].isin(["baseline", "finetuned"])]
    assert len(last) == 1 + len(CONFIG["methods"]) * len(CONFIG["budgets"])
    assert not last[list(SHORTCUT_COLUMNS)].isna().any().any()
    baseline = read_shortcut(results / "robustness" / "baseline" / "shortcut.csv")
    row = summary[summary["stage"] == "baseline"].iloc[0]
    assert row["shortcut_reliance"] == pytest.approx(baseline["reliance"])
    assert (results / "figures" / "shortcut.png").stat().st_size > 5000
