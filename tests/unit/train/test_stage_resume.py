"""The baseline and finetune stages resume only their own run, and their energy row covers the whole run.

Tiny real runs: a one-unit-per-stage ResNet-20 on a subset of the bundled digits, two short epochs (CPU, seconds).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from fit_digits_helper import weights_digest

from layerprune.baseline import make_baseline
from layerprune.cli import main
from layerprune.models import load_checkpoint

DATA = {"name": "digits", "train_subset": 128, "test_subset": 64}
MODEL = {"arch": "resnet20", "blocks_per_stage": [1, 1, 1]}
TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05, "max_steps_per_epoch": 2}


def _baseline(root: Path, workdir: Path, *, data: dict = DATA, seed: int = 0, emissions: Path | None = None) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    make_baseline(data, MODEL, TRAIN, out_model=root / "model.pt", workdir=workdir, log_csv=root / "log.csv",
                  emissions_csv=emissions, country_iso_code="FRA", seed=seed)  # fmt: skip
    ckpt = load_checkpoint(root / "model.pt")
    return {"train": ckpt.meta["train"], "digest": weights_digest(ckpt.model)}


def test_baseline_with_changed_data_config_retrains(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workdir = tmp_path / "state"
    stale = _baseline(tmp_path / "a", workdir)
    same = _baseline(tmp_path / "b", workdir)  # unchanged: the finished run is loaded
    assert same["train"]["resumed_from_epoch"] == TRAIN["epochs"] and same["digest"] == stale["digest"]

    changed = {**DATA, "train_subset": 96}
    with caplog.at_level(logging.WARNING, logger="layerprune.train.loop"):
        restarted = _baseline(tmp_path / "c", workdir, data=changed)
    assert "belongs to another run (the run inputs" in caplog.text
    assert restarted["train"]["resumed_from_epoch"] == 0
    assert restarted["digest"] != stale["digest"]
    assert restarted["digest"] == _baseline(tmp_path / "d", tmp_path / "clean", data=changed)["digest"]


def test_finetune_of_a_new_pruned_model_retrains(tmp_path: Path) -> None:
    parents = [_baseline(tmp_path / f"parent{seed}", tmp_path / f"state{seed}", seed=seed) for seed in (0, 1)]
    assert parents[0]["digest"] != parents[1]["digest"]
    parent = tmp_path / "pruned.pt"  # the path the workflow reuses when the pruned model is rebuilt
    finetune = json.dumps({"enabled": True, "epochs": 1, "batch_size": 32, "lr": 0.01, "max_steps_per_epoch": 2})

    def run(out: Path, workdir: Path) -> dict:
        code = main(["finetune", "--model", str(parent), "--data", json.dumps(DATA), "--finetune", finetune,
                     "--out", str(out / "model.pt"), "--workdir", str(workdir), "--log-csv", str(out / "log.csv"),
                     "--no-emissions", "--emissions", str(out / "emissions.csv"), "--threads", "1"])  # fmt: skip
        assert code in (0, None)
        ckpt = load_checkpoint(out / "model.pt")
        return {"finetune": ckpt.meta["finetune"], "digest": weights_digest(ckpt.model)}

    parent.write_bytes((tmp_path / "parent0" / "model.pt").read_bytes())
    first = run(tmp_path / "f1", tmp_path / "work")
    parent.write_bytes((tmp_path / "parent1" / "model.pt").read_bytes())  # pruned again, differently
    second = run(tmp_path / "f2", tmp_path / "work")
    assert second["finetune"]["resumed_from_epoch"] == 0
    assert second["digest"] != first["digest"]
    assert second["digest"] == run(tmp_path / "f3", tmp_path / "clean")["digest"]


def test_reloaded_finished_run_reports_the_energy_of_the_whole_run(tmp_path: Path) -> None:
    """A rerun that loads the finished state reports the training energy, not the ~0 kWh of loading it."""
    workdir = tmp_path / "state"
    _baseline(tmp_path / "a", workdir, emissions=tmp_path / "a" / "emissions.csv")
    _baseline(tmp_path / "b", workdir, emissions=tmp_path / "b" / "emissions.csv")
    first, reloaded = (pd.read_csv(tmp_path / name / "emissions.csv").iloc[0] for name in ("a", "b"))
    # the first process's totals up to its last checkpoint are carried into the reloaded run's row
    assert reloaded["energy_kwh"] > 0.5 * first["energy_kwh"] > 0
    assert reloaded["duration_s"] > 0.5 * first["duration_s"]
    assert reloaded["co2_kg"] > 0.5 * first["co2_kg"]
    n_samples = TRAIN["epochs"] * TRAIN["max_steps_per_epoch"] * TRAIN["batch_size"]
    assert (first["n_samples"], first["epochs"], first["resumed_from_epoch"]) == (n_samples, 2, 0)
    assert (reloaded["n_samples"], reloaded["epochs"], reloaded["resumed_from_epoch"]) == (n_samples, 2, 2)
    parts = reloaded[["cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh"]].sum()
    assert parts == pytest.approx(reloaded["energy_kwh"], rel=1e-6)
    assert torch.load(workdir / "last.pt", weights_only=True)["usage"]["energy_kwh"] > 0
