"""A stage's emissions CSV describes that run alone, however often the command is run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from layerprune.cli import main
from layerprune.models import get_model, save_checkpoint

PREPROCESSING = {"dataset": "digits", "mean": [0.305], "std": [0.376], "input_size": [1, 16, 16], "num_classes": 10}


def test_rerunning_evaluate_replaces_its_emissions_rows(tmp_path: Path) -> None:
    model = save_checkpoint(
        tmp_path / "model.pt", get_model("resnet20", num_classes=10, in_channels=1), preprocessing=PREPROCESSING
    )
    emissions = tmp_path / "emissions_inference.csv"
    args = ["evaluate", "--model", str(model), "--data", '{"name": "digits", "image_size": 16, "test_subset": 64}',
            "--out", str(tmp_path / "metrics.json"), "--latency-repeats", "1", "--emissions", str(emissions),
            "--threads", "1"]  # fmt: skip
    for _ in range(2):
        assert main(args) == 0
        frame = pd.read_csv(emissions)
        assert len(frame) == 1 and frame["phase"].tolist() == ["inference"]
        assert (frame["energy_kwh"] > 0).all()
    assert main([*args, "--no-emissions"]) == 0
    assert pd.read_csv(emissions).empty  # tracking off: the header only, no stale row
