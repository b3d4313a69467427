"""The causal-LM config end to end: configs/llm-stories260k.yaml on the real stories260K and text in ../shared.

Kept small for CI (four criteria, one budget, 4,000 evaluation tokens); the config's own paths are made
absolute so that the run can happen in a temporary working directory.
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

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
METHODS = ["cka", "sglp", "greedy_loss", "angular_span"]  # one-shot, per-segment, iterative, span


@pytest.fixture(scope="module")
def lm_run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("lm-workflow")
    config = yaml.safe_load((REPO / "configs" / "llm-stories260k.yaml").read_text())
    for section, key in [
        ("model", "llama2c_checkpoint"),
        *[("data", k) for k in ("tokenizer", "train_text", "test_text", "ood_text")],
    ]:
        config[section][key] = str(shared_dir / Path(config[section][key]).relative_to("../shared"))
    config["methods"], config["budgets"] = METHODS, ["blocks1"]
    config["data"]["max_eval_tokens"] = 4000
    path = workdir / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(path), "--cores", "2",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    if result.returncode != 0:
        raise AssertionError(f"LM workflow failed:\n{result.stdout[-3000:]}\n{result.stderr[-8000:]}")
    return {"results": workdir / "results" / config["experiment"], "log": result.stderr}


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_baseline_is_the_imported_model_with_its_perplexities(lm_run: dict) -> None:
    base = _metrics(lm_run["results"] / "baseline")
    assert base["blocks_per_stage"] == [5] and base["params"] == 260_032
    assert base["macs"] == 423_168  # per token at seq_len 256 (tests/unit/lm checks the count by hand)
    assert 2.0 < base["perplexity"] < 6.0  # stories260K on TinyStories (3.9 on all of valid-b)
    assert base["ood_perplexity"] > 5 * base["perplexity"]  # Austen is far out of its domain
    assert math.isclose(base["perplexity"], math.exp(base["loss"]), rel_tol=1e-9)


def test_every_layer_removed_alone_raises_perplexity(lm_run: dict) -> None:
    drop = pd.read_csv(lm_run["results"] / "baseline" / "drop_one.csv")
    assert list(drop["unit"]) == ["none"] + [f"layers.{i}" for i in range(5)]
    intact = float(drop.loc[drop["unit"] == "none", "perplexity"].iloc[0])
    assert intact == pytest.approx(_metrics(lm_run["results"] / "baseline")["perplexity"], rel=1e-9)
    assert (drop.loc[drop["unit"] != "none", "perplexity"] > intact).all()


def test_each_criterion_prunes_heals_and_exports_a_loadable_model(lm_run: dict) -> None:
    from layerprune.lm import load_causal_lm

    base = _metrics(lm_run["results"] / "baseline")
    for method in METHODS:
        pruned = _metrics(lm_run["results"] / "pruned" / method / "blocks1" / "seed0")
        healed = _metrics(lm_run["results"] / "finetuned" / method / "blocks1" / "seed0")
        assert pruned["blocks_per_stage"] == [4] and pruned["perplexity"] > base["perplexity"]
        assert healed["blocks_per_stage"] == [4] and math.isfinite(healed["perplexity"])
        assert healed["macs"] == pruned["macs"] == base["macs"] - 78_080  # one decoder layer per token
        scores = pd.read_csv(lm_run["results"] / "pruned" / method / "blocks1" / "seed0" / "scores.csv")
        assert sorted(scores["unit"]) == [f"layers.{i}" for i in range(5)]
        exported = lm_run["results"] / "finetuned" / method / "blocks1" / "seed0" / "pretrained"
        assert (exported / "model.safetensors").is_file() and (exported / "tokenizer.json").is_file()
        assert load_causal_lm(exported).config.num_hidden_layers == 4


def test_summary_figures_and_no_robustness_for_a_language_model(lm_run: dict) -> None:
    results = lm_run["results"]
    summary = pd.read_csv(results / "summary.csv")
    assert summary["perplexity"].notna().all() and summary["ood_perplexity"].notna().all()
    assert len(summary) == 1 + 2 * len(METHODS)
    for name in ("perplexity_vs_layers", "scores_vs_drop_one", "cka_segments", "criterion_scores"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 0
    assert not (results / "robustness").exists()
    assert "robustness_eval" not in lm_run["log"] and "robustness_corrupt_data" not in lm_run["log"]
