"""The timing step: every model timed in rounds with one thread count, spread as quartiles, energy per image; and the
workflow rule that runs it alone."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from layerprune.cli import latency as latency_cli
from layerprune.models import get_model, save_checkpoint
from layerprune.timing import LATENCY_COLUMNS, TimingSettings, measure_models, model_key, within_spread

REPO = Path(__file__).resolve().parents[2]
SIZE = (1, 8, 8)
PRE = {"mean": [0.5], "std": [0.25], "input_size": list(SIZE), "num_classes": 10, "dataset": "digits"}


def _settings(**overrides) -> TimingSettings:
    base = {
        "batch_size": 4,
        "repeats": 3,
        "rounds": 2,
        "warmup": 1,
        "threads": 1,
        "energy_seconds": 0.0,
        "energy_windows": 1,
    }
    return TimingSettings(**{**base, **overrides})


def _model(blocks: list[int]) -> torch.nn.Module:
    return get_model("resnet20", num_classes=10, in_channels=1, blocks_per_stage=blocks).eval()


def test_every_model_timed_in_every_round_with_quartiles():
    models = {"big": _model([3, 3, 3]), "small": _model([1, 1, 1])}
    table = measure_models(models, SIZE, _settings(), emissions=False)
    assert list(table.columns) == list(LATENCY_COLUMNS)
    assert list(table["model"]) == ["big", "small"]
    assert (table["latency_passes"] == 2 * 3).all()  # rounds x repeats
    assert (table["latency_q1_ms"] <= table["latency_ms"]).all()
    assert (table["latency_ms"] <= table["latency_q3_ms"]).all()
    assert (table["latency_min_ms"] <= table["latency_q1_ms"]).all()
    assert (table["threads"] == 1).all() and torch.get_num_threads() == 1
    assert table["energy_j_per_image"].isna().all()  # tracking off


def test_energy_per_image_over_a_fixed_window(tmp_path):
    table = measure_models({"m": _model([1, 1, 1])}, SIZE, _settings(energy_seconds=0.5, energy_windows=2))
    row = table.iloc[0]
    assert row["energy_images"] >= 2 * 4 and row["energy_images"] % 4 == 0  # whole batches in two windows
    assert row["energy_j_per_image"] > 0
    assert row["energy_q1_j_per_image"] <= row["energy_j_per_image"] <= row["energy_q3_j_per_image"]
    assert isinstance(row["cpu_power_source"], str)


def test_settings_and_keys_are_checked():
    with pytest.raises(ValueError, match="rounds=0"):
        _settings(rounds=0)
    with pytest.raises(ValueError, match="energy_seconds"):
        _settings(energy_seconds=-1)
    assert model_key("r/exp/baseline/model.pt")["model"] == "baseline"
    key = model_key("r/exp/finetuned/cka/blocks2/seed3/model.pt")
    assert (key["model"], key["stage"], key["seed"]) == ("finetuned/cka/blocks2/seed3", "finetuned", 3)
    with pytest.raises(ValueError, match="seed<N>"):
        model_key("somewhere/model.pt")


def test_within_spread_is_overlap_of_ranges():
    assert within_spread(2.0, 1.9, 2.1, 2.05, 2.0, 2.2)
    assert not within_spread(1.5, 1.4, 1.6, 2.0, 1.9, 2.1)
    assert not within_spread(float("nan"), 1.0, 2.0, 1.5, 1.0, 2.0)


def test_cli_writes_one_row_per_model(tmp_path):
    exp = tmp_path / "results" / "exp"
    paths = [
        save_checkpoint(exp / "baseline" / "model.pt", _model([3, 3, 3]), preprocessing=PRE),
        save_checkpoint(exp / "finetuned/cka/blocks2/seed0/model.pt", _model([3, 2, 2]), preprocessing=PRE),
    ]
    parser = argparse.ArgumentParser()
    latency_cli.register(parser.add_subparsers(dest="command"))
    evaluation = (
        '{"latency_batch_size": 2, "latency_repeats": 2, "latency_rounds": 1, "latency_warmup": 0,'
        ' "latency_threads": 1, "energy_seconds": 0, "energy_windows": 1}'
    )
    out = tmp_path / "latency.csv"
    args = parser.parse_args(
        ["latency", "--models", *map(str, paths), "--evaluation", evaluation, "--out", str(out), "--no-emissions"]
    )
    args.func(args)
    table = pd.read_csv(out)
    assert list(table["model"]) == ["baseline", "finetuned/cka/blocks2/seed0"]
    assert list(table["method"]) == ["baseline", "cka"] and (table["latency_passes"] == 2).all()
    twice = parser.parse_args(
        ["latency", "--models", str(paths[0]), str(paths[0]), "--evaluation", evaluation, "--out", str(out)]
    )
    with pytest.raises(ValueError, match="twice"):
        twice.func(twice)


_RULE_RESOURCES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, ResourceSettings
repo, workdir = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi() as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=3),
        config_settings=ConfigSettings(configfiles=[repo / "config.yaml"]),
        snakefile=repo / "Snakefile",
        workdir=workdir,
    )._workflow
    rule = workflow.get_rule("evaluate_latency")
    print(json.dumps({name: rule.resources[name].value for name in ("_cores", "timing_slot")}))
"""


def test_rule_runs_alone_with_the_serialising_resource(tmp_path):
    """On 3 cores the timing rule claims all 3 (so Snakemake starts nothing beside it) and the resource
    timing_slot; a dry run shows it times the baseline and every fine-tuned model, and no pruned one."""
    script = subprocess.run(
        [sys.executable, "-c", _RULE_RESOURCES, str(REPO), str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr[-2000:]
    resources = json.loads(script.stdout.strip().splitlines()[-1])
    assert resources["_cores"] == 3 and resources["timing_slot"] == 1
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config.yaml"), "--cores", "3", "--dry-run", "--printshellcmds",
         "results/quick-digits/latency/latency.csv"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    command = next(line for line in result.stdout.splitlines() if line.startswith("Shell command: layerprune latency"))
    assert "results/quick-digits/baseline/model.pt" in command
    assert command.count("/finetuned/") == 8 * 2  # every method at both budgets, one seed
    assert "/pruned/" not in command
