"""A one-process CPU run is bit for bit what it was before data-parallel training existed.

The digests below are the sha256 of the weights (``fit_digits_helper.weights_digest``) that commit c834b24 (the
last commit before the shared training orchestration and DDP) produced for these exact runs, with torch 2.14.1 on an
x86-64 CPU at one thread. Other torch builds may pick other kernels, so the test only runs on that version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fit_digits_helper import CONFIG, digits, init_model, weights_digest

from layerprune.baseline import make_baseline
from layerprune.cli import main
from layerprune.models import load_checkpoint
from layerprune.train import fit

RECORDED_TORCH = "2.14.1"
BEFORE = {
    "fit": "b7baa2d1aa996503cb1080c08704dffb235f998f8592caac7501ee6b3afd0ca3",
    "baseline": "062024f77479ce3e35711dce5c4237fbddc632e355bd421a665c7c91144719cd",
    "finetune": "7366fca8d7b48b31d2d357d4a884b8af0ab2f5d8aa3ebbb6df1cc8fd521915de",
}
DATA = {"name": "digits", "train_subset": 128, "test_subset": 64}
MODEL = {"arch": "resnet20", "blocks_per_stage": [1, 1, 1]}
TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05, "max_steps_per_epoch": 2}
FINETUNE = {"enabled": True, "epochs": 2, "batch_size": 32, "lr": 0.01, "max_steps_per_epoch": 2}

pytestmark = pytest.mark.skipif(
    torch.__version__.split("+")[0] != RECORDED_TORCH, reason=f"digests recorded with torch {RECORDED_TORCH}"
)


@pytest.fixture
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_fit_weights_equal_the_recorded_one_process_run(tmp_path: Path) -> None:
    train_set, test_set = digits()
    model = init_model()
    fit(model, train_set, test_set, CONFIG, tmp_path, device="cpu", progress=False)
    assert weights_digest(model) == BEFORE["fit"]


@pytest.mark.usefixtures("one_thread")
def test_baseline_and_finetune_stages_equal_the_recorded_runs(tmp_path: Path) -> None:
    make_baseline(DATA, MODEL, TRAIN, out_model=tmp_path / "m.pt", workdir=tmp_path / "w", log_csv=tmp_path / "l.csv",
                  emissions_csv=None, country_iso_code="USA", seed=0)  # fmt: skip
    assert weights_digest(load_checkpoint(tmp_path / "m.pt").model) == BEFORE["baseline"]
    code = main(["finetune", "--model", str(tmp_path / "m.pt"), "--data", json.dumps(DATA), "--finetune",
                 json.dumps(FINETUNE), "--seed", "3", "--out", str(tmp_path / "f.pt"), "--workdir", str(tmp_path / "fw"),
                 "--log-csv", str(tmp_path / "fl.csv"), "--no-emissions", "--emissions", str(tmp_path / "e.csv"),
                 "--threads", "1"])  # fmt: skip
    assert code == 0
    assert weights_digest(load_checkpoint(tmp_path / "f.pt").model) == BEFORE["finetune"]
