"""The default workflow end to end, as a user runs it: `snakemake --cores all` on config.yaml.

It runs once per test session in a temporary working directory (the repository's
Snakefile, rules and config), first the baseline target alone, then everything, then
the report; the tests below read what it left.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from layerprune.summary import method_label

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
EXPERIMENT = CONFIG["experiment"]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(REPO / "config.yaml"), "--cores", "2", *args,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("workflow")
    baseline = snakemake(workdir, f"results/{EXPERIMENT}/baseline/metrics.json")
    everything = snakemake(workdir)
    report = snakemake(workdir, "--report", str(workdir / "report.html"))
    noop = snakemake(workdir, "--dry-run")
    return {"dir": workdir, "results": workdir / "results" / EXPERIMENT, "baseline": baseline,
            "all": everything, "report": report, "noop": noop}  # fmt: skip


def test_baseline_target_builds_only_the_baseline(run: dict) -> None:
    log = run["baseline"].stderr
    assert "baseline_train" in log and "evaluate_model" in log
    assert "prune_model" not in log and "finetune_model" not in log
    metrics = json.loads((run["results"] / "baseline" / "metrics.json").read_text())
    assert metrics["top1"] > 0.9  # ResNet-20 on digits reaches ~99% in the default epochs
    assert metrics["blocks_per_stage"] == [3, 3, 3]
    assert metrics["params"] > 0 and metrics["macs"] > 0 and metrics["latency_ms"] > 0


def test_every_method_and_budget_is_pruned_and_finetuned(run: dict) -> None:
    for method in CONFIG["methods"]:
        for budget in CONFIG["budgets"]:
            for stage in ("pruned", "finetuned"):
                folder = run["results"] / stage / method / budget / "seed0"
                metrics = json.loads((folder / "metrics.json").read_text())
                assert metrics["macs"] < json.loads((run["results"] / "baseline/metrics.json").read_text())["macs"]
            plan = json.loads((run["results"] / "pruned" / method / budget / "seed0" / "plan.json").read_text())
            assert plan["method"] == method and plan["budget"] == budget and plan["removed"]


def test_summary_has_a_row_per_scheduled_model_and_no_missing_values(run: dict) -> None:
    summary = pd.read_csv(run["results"] / "summary.csv")
    baseline = summary[summary["method"] == "baseline"]
    assert len(baseline) == 1
    finetuned = summary[summary["stage"] == "finetuned"]
    expected = {(m, b) for m in CONFIG["methods"] for b in CONFIG["budgets"]}
    assert set(zip(finetuned["method"], finetuned["budget"])) == expected
    assert len(finetuned) == len(expected)
    every_row = ("params", "params_reduction", "macs", "macs_reduction", "top1", "top1_delta",
                 "inference_energy_kwh", "inference_co2_kg")  # fmt: skip
    # baseline and fine-tuned models (the timing step times the compared models only)
    compared = ("adv_accuracy_mean", "corruption_accuracy_mean", "mce", "latency_ms", "latency_q1_ms", "latency_q3_ms")
    for column in every_row:
        assert not summary[column].isna().any(), column
    for column in (*compared, "finetune_energy_kwh", "finetune_co2_kg"):
        assert not finetuned[column].isna().any(), column
    for column in compared:
        assert not baseline[column].isna().any(), column
    assert (finetuned["macs_reduction"] > 0).all()


FIGURES = ("accuracy_vs_macs", "removed_units", "energy", "pareto", "cka_segments", "criterion_scores",
           "robustness_adversarial", "robustness_corruptions")  # fmt: skip


def test_figures_tables_and_report_exist_and_are_not_empty(run: dict) -> None:
    figures = sorted(p.name for p in (run["results"] / "figures").glob("*"))
    assert figures == sorted(f"{name}.{fmt}" for name in FIGURES for fmt in CONFIG["figures"]["formats"])
    tables = sorted(p.name for p in (run["results"] / "tables").glob("*"))
    assert tables == ["main.html", "main.md", "main.tex"]
    for path in [*(run["results"] / "figures").glob("*"), *(run["results"] / "tables").glob("*")]:
        assert path.stat().st_size > 0, path
    report = (run["dir"] / "report.html").read_text()
    for name in FIGURES:  # every figure is in the report, with its caption
        assert f"{name}.png" in report, name
    assert "config.html" in report  # the config it ran with
    assert "main.html" in report  # the main table, readable inside the report
    timed = pd.read_csv(run["results"] / "latency" / "latency.csv")
    assert len(timed) == 1 + len(CONFIG["methods"]) * len(CONFIG["budgets"])
    assert (timed["latency_q1_ms"] <= timed["latency_ms"]).all() and (
        timed["latency_ms"] <= timed["latency_q3_ms"]
    ).all()
    resolved = yaml.safe_load((run["results"] / "config.yaml").read_text())
    assert resolved["experiment"] == EXPERIMENT and resolved["methods"] == CONFIG["methods"]
    assert resolved["evaluation"]["latency_repeats"] == CONFIG["evaluation"]["latency_repeats"]
    assert "batch_size" in resolved["evaluation"]  # a schema default, filled in
    table = (run["results"] / "tables" / "main.md").read_text()
    for method in CONFIG["methods"]:
        assert method_label(method) in table, method


def test_emissions_are_logged_and_say_how_power_was_obtained(run: dict) -> None:
    frame = pd.read_csv(run["results"] / "baseline" / "emissions_train.csv")
    assert (frame["energy_kwh"] > 0).all()
    assert frame["cpu_power_source"].str.len().gt(0).all()


def test_rerun_does_nothing(run: dict) -> None:
    assert "Nothing to be done" in run["noop"].stdout + run["noop"].stderr


def test_changing_a_plotting_option_reruns_only_plotting(run: dict) -> None:
    result = snakemake(run["dir"], "--dry-run", "--config", "figures={formats: [png]}")
    output = result.stdout + result.stderr
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]  # rows after the header
    jobs = {line.split()[0] for line in table if line.strip()} - {"total", "all"}
    # the figures, and the report's record of the config (which did change); nothing upstream
    assert jobs - {"report_config"} and all(job.startswith("figures") for job in jobs - {"report_config"}), jobs


def test_robust_accuracy_at_epsilon_zero_is_clean_accuracy_and_monotone(run: dict) -> None:
    import torch

    from layerprune.config import validate_config
    from layerprune.models import load_checkpoint
    from layerprune.robustness.corrupted_set import test_images

    config = validate_config(CONFIG)
    section = config["robustness"]
    images, labels = test_images(config["data"], section["size"], section["seed"])
    ckpt = load_checkpoint(run["results"] / "baseline" / "model.pt")
    mean, std = (torch.tensor(ckpt.preprocessing[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        clean = float((ckpt.model(x).argmax(1) == torch.from_numpy(labels)).float().mean())
    frame = pd.read_csv(run["results"] / "robustness" / "baseline" / "adversarial.csv")
    for attack, group in frame.groupby("attack"):
        group = group.sort_values("epsilon")
        assert math.isclose(group["epsilon"].iloc[0], 0.0)
        assert group["robust_accuracy"].iloc[0] == pytest.approx(clean, abs=1e-12), attack
        assert group["robust_accuracy"].is_monotonic_decreasing, attack


def test_experiments_are_compared_in_one_figure_when_asked(run: dict) -> None:
    """``figures: {compare: [...]}`` draws this experiment beside others; only that figure is made."""
    other = run["dir"] / "results" / "other-experiment"
    other.mkdir()
    summary = pd.read_csv(run["results"] / "summary.csv")
    summary.assign(top1=summary["top1"] * 0.9).to_csv(other / "summary.csv", index=False)
    target = f"results/{EXPERIMENT}/figures/compare_experiments.png"
    result = snakemake(run["dir"], target, "--config", "figures={compare: [other-experiment]}")
    assert "figures_compare" in result.stderr
    assert "prune_model" not in result.stderr and "finetune_model" not in result.stderr
    assert (run["results"] / "figures" / "compare_experiments.png").stat().st_size > 0
