"""``layerprune finetune`` run again after its training finished (or was interrupted) reports the energy of the
whole fine-tuning, not only that of the last process (the baseline's equivalent is in tests/unit/train)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from layerprune.baseline import make_baseline
from layerprune.cli import main
from layerprune.config import validate_section

DATA = {"name": "digits", "train_subset": 128, "test_subset": 64}
FINETUNE = {"enabled": True, "epochs": 2, "batch_size": 32, "lr": 0.01, "max_steps_per_epoch": 2}


def test_finetune_energy_covers_the_processes_before_a_resume(tmp_path: Path) -> None:
    parent = tmp_path / "pruned.pt"
    sections = {"data": DATA, "model": {"arch": "resnet20", "blocks_per_stage": [1, 1, 1]},
                "train": {"epochs": 1, "max_steps_per_epoch": 1}}  # fmt: skip
    data, model, train = (validate_section(name, value) for name, value in sections.items())  # schema defaults
    make_baseline(data, model, train, out_model=parent, workdir=tmp_path / "base", log_csv=tmp_path / "base.csv")
    workdir = tmp_path / "work"

    def run(name: str) -> pd.Series:
        out = tmp_path / name
        code = main(["finetune", "--model", str(parent), "--data", json.dumps(DATA), "--finetune", json.dumps(FINETUNE),
                     "--out", str(out / "model.pt"), "--workdir", str(workdir), "--log-csv", str(out / "log.csv"),
                     "--emissions", str(out / "emissions.csv"), "--country", "FRA", "--threads", "1"])  # fmt: skip
        assert code == 0
        table = pd.read_csv(out / "emissions.csv")
        assert len(table) == 1 and table.loc[0, "phase"] == "finetune"
        return table.iloc[0]

    first = run("first")
    saved = torch.load(workdir / "last.pt", weights_only=True)["usage"]
    assert saved["energy_kwh"] > 0
    again = run("again")  # loads the finished state: no step is trained in this process
    assert again["resumed_from_epoch"] == FINETUNE["epochs"] and first["resumed_from_epoch"] == 0
    # the row carries the energy saved with the state (the first process's up to its last checkpoint, so at most
    # its whole row: the final evaluation and save come after), plus that of loading it. No ratio to the first row
    # is asserted: with 2 training steps, how much of the first row falls after the checkpoint depends on the load.
    assert first["energy_kwh"] >= saved["energy_kwh"] > 0
    assert again["energy_kwh"] >= saved["energy_kwh"]
    assert again["duration_s"] >= saved["duration_s"]
    # the same country, so the same carbon intensity: CO2 follows the carried energy
    assert again["co2_kg"] / again["energy_kwh"] == pytest.approx(first["co2_kg"] / first["energy_kwh"], rel=1e-6)
    assert again[["cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh"]].sum() == pytest.approx(
        again["energy_kwh"], rel=1e-6
    )
