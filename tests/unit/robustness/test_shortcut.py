"""The shortcut protocol: the cue is planted where and as often as configured, the test sets differ from the clean
set only inside the box, the metrics are what their definitions say, and a model trained on fully biased digits
relies on the cue while one trained without the cue does not."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from layerprune.config import ConfigError, validate_config
from layerprune.data import ArrayImageDataset, ArrayTransform, build_dataset, seeded_subset
from layerprune.robustness.shortcut import (
    CueSpec,
    ShortcutDataset,
    biased_train_set,
    evaluate_shortcut,
    shortcut_test_sets,
)
from layerprune.robustness.shortcut_table import METRICS, read_shortcut, shortcut_columns

DIGITS = {"name": "digits", "image_size": 16}


def _config(data: dict | None = None, **shortcut) -> dict:
    data = {**DIGITS, **(data or {})}
    return validate_config({"experiment": "t", "data": data, "shortcut": {"enabled": True, **shortcut}})


def _box(size: int, position: str, side: int) -> np.ndarray:
    """Boolean mask of the box, from the position's words (independent of CueSpec.box)."""
    mask = np.zeros((side, side), dtype=bool)
    rows = slice(0, size) if "top" in position else slice(side - size, side)
    cols = slice(0, size) if "left" in position else slice(side - size, side)
    mask[rows, cols] = True
    return mask


def _rgb_set(n: int = 200, side: int = 12, seed: int = 0) -> ArrayImageDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    return ArrayImageDataset(images, labels, ArrayTransform(side, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)))


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.9, 1.0])
def test_cue_is_planted_exactly_where_and_as_often_as_configured(rho):
    config = _config({"train_subset": 500}, rho=rho, size=3, position="top-left", seed=5)  # a seeded set
    clean = build_dataset(config["data"], "train")
    biased = biased_train_set({**config["data"], "augment": False}, config["shortcut"])
    mask = _box(3, "top-left", 16)
    mean, std = 0.305, 0.376  # the digits' normalisation (layerprune.data.SOURCES)
    planted = 0
    for i in range(len(clean)):
        x, y = clean[i]
        xb, yb = biased[i]
        assert yb == y
        changed = (xb != x)[0].numpy()
        assert not changed[~mask].any()  # nothing outside the box changes
        if not np.array_equal(xb[0].numpy()[mask], x[0].numpy()[mask]):
            planted += 1
            # the box holds the label's black-and-white code: 0 or 1 in pixels, normalised
            pixels = xb[0].numpy()[mask] * std + mean
            np.testing.assert_allclose(np.minimum(abs(pixels), abs(pixels - 1)), 0, atol=1e-5)
            expected = biased.spec.cues()[y, 0].numpy().ravel()
            np.testing.assert_allclose(pixels, expected, atol=1e-5)
    n = len(clean)
    assert (biased.cue_classes() >= 0).sum() == planted
    if rho in (0.0, 1.0):
        assert planted == rho * n
    else:  # a binomial count: within 4 standard deviations of rho * n
        assert abs(planted - rho * n) < 4 * math.sqrt(n * rho * (1 - rho))


def test_colour_cue_values_and_other_class_cues_on_rgb_data():
    base = _rgb_set()
    spec = CueSpec(num_classes=10, channels=3, image_size=12, cue="colour", size=2, position="bottom-right")
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    biased = ShortcutDataset(base, spec, mean, std, mode="train", rho=0.5, unaligned="other", seed=1)
    hue_rgb = {0: (1, 0, 0), 5: (0, 1, 1)}  # hue 0 = red, hue 0.5 = cyan (k / 10 on the HSV wheel)
    cues = biased.cue_classes()
    labels = np.arange(len(base)) % 10
    assert (cues >= 0).all()  # unaligned: other, so every image carries a cue
    aligned = cues == labels
    assert 0.3 < aligned.mean() < 0.7
    others = cues[~aligned]
    assert (others != labels[~aligned]).all() and len(set(others)) == 10
    for i in range(len(base)):
        x, _ = biased[i]
        pixels = x[:, -2:, -2:].numpy() * std[:, None, None] + mean[:, None, None]
        if cues[i] in hue_rgb:
            np.testing.assert_allclose(
                pixels, np.broadcast_to(np.array(hue_rgb[cues[i]])[:, None, None], (3, 2, 2)), atol=1e-5
            )


def test_test_sets_differ_from_clean_only_inside_the_box():
    config = _config(size=4, position="bottom-left", seed=3, test_size=120)
    sets = shortcut_test_sets(config["data"], config["shortcut"])
    mask = _box(4, "bottom-left", 16)
    codes = sets["aligned"].spec.cues()[:, 0].numpy()
    assert len(sets["clean"]) == 120
    for i in range(len(sets["clean"])):
        x, y = sets["clean"][i]
        for name in ("aligned", "conflicting"):
            xs, ys = sets[name][i]
            assert ys == y
            assert not (xs != x)[0].numpy()[~mask].any()
            pixels = (xs[0].numpy() * 0.376 + 0.305)[mask]
            owner = [k for k in range(10) if np.allclose(pixels, codes[k].ravel(), atol=1e-5)]
            assert len(owner) == 1  # exactly one class's code
            assert (owner[0] == y) == (name == "aligned")
    # every class's code is distinct and not empty
    flat = codes.reshape(10, -1)
    assert len({tuple(c) for c in flat}) == 10 and flat.sum(axis=1).min() > 0


def test_draws_depend_on_seed_and_source_index_only():
    config = _config(rho=0.5, seed=7)
    full = biased_train_set({**config["data"], "augment": False}, config["shortcut"])
    again = biased_train_set({**config["data"], "augment": False}, config["shortcut"])
    np.testing.assert_array_equal(full.cue_classes(), again.cue_classes())
    other = biased_train_set({**config["data"], "augment": False}, {**config["shortcut"], "seed": 8})
    assert (full.cue_classes() != other.cue_classes()).any()
    # a seeded subset of the training split carries the same cue on each image as the whole split
    subset = seeded_subset(full.dataset, 300, 0)
    sub = ShortcutDataset(subset, full.spec, [0.305], [0.376], mode="train", rho=0.5, seed=7)
    np.testing.assert_array_equal(sub.cue_classes(), full.cue_classes()[subset.indices])
    assert isinstance(sub.dataset, Subset)


class _CueReader(nn.Module):
    """Predicts the class whose cue is nearest to the box's content: follows the cue whenever there is one."""

    def __init__(self, spec: CueSpec, mean: float, std: float) -> None:
        super().__init__()
        self.rows, self.cols = spec.box()
        self.register_buffer("cues", ((spec.cues() - mean) / std).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        box = x[:, :, self.rows, self.cols].flatten(1)
        return -torch.cdist(box, self.cues)


def test_metrics_follow_their_definitions():
    config = _config(seed=2, test_size=200)
    sets = shortcut_test_sets(config["data"], config["shortcut"])
    table = evaluate_shortcut(_CueReader(sets["clean"].spec, 0.305, 0.376), sets, batch_size=64)
    assert list(table["metric"]) == list(METRICS) and (table["n"] == 200).all()
    values = dict(zip(table["metric"], table["value"]))
    assert values["aligned_accuracy"] == 1.0 and values["conflicting_accuracy"] == 0.0
    assert values["reliance"] == 1.0 and values["patch_follow_rate"] == 1.0
    # clean images carry no cue: the reader's answer is whichever code the digit's corner is nearest to
    labels = np.array([sets["clean"][i][1] for i in range(200)])
    model = _CueReader(sets["clean"].spec, 0.305, 0.376)
    with torch.no_grad():
        predicted = model(torch.stack([sets["clean"][i][0] for i in range(200)])).argmax(1).numpy()
    assert values["clean_accuracy"] == pytest.approx(np.mean(predicted == labels))


def test_shortcut_table_round_trip_and_summary_columns(tmp_path):
    frame = pd.DataFrame({"metric": list(METRICS), "value": [0.9, 0.95, 0.4, 0.55, 0.5], "n": 100})
    path = tmp_path / "shortcut.csv"
    frame.to_csv(path, index=False)
    assert read_shortcut(path)["reliance"] == 0.55
    columns = shortcut_columns(path)
    assert columns["shortcut_conflicting_accuracy"] == 0.4
    assert all(math.isnan(v) for v in shortcut_columns(None).values())
    frame.iloc[:3].to_csv(path, index=False)
    with pytest.raises(ValueError, match="reliance"):
        read_shortcut(path)


def test_bad_settings_fail_with_the_key_and_the_fix():
    with pytest.raises(ConfigError, match="shortcut.cue: colour needs RGB"):
        _config(cue="colour")
    with pytest.raises(ConfigError, match="shortcut.size: 20 does not fit data.image_size 16"):
        _config(size=20)
    with pytest.raises(ConfigError, match="rho"):
        _config(rho=1.5)
    # off by default, and then nothing is checked
    config = validate_config({"experiment": "t", "data": dict(DIGITS), "shortcut": {"cue": "colour"}})
    assert config["shortcut"]["enabled"] is False
    with pytest.raises(ValueError, match="distinct patterns"):
        CueSpec(num_classes=10, channels=1, image_size=16, cue="pattern", size=1, position="top-left")
    spec = CueSpec(num_classes=10, channels=1, image_size=16, cue="pattern", size=4, position="top-left")
    with pytest.raises(ValueError, match="unknown"):
        ShortcutDataset(_rgb_set(10), spec, [0.3], [0.3], mode="biased")


def _train_and_measure(rho: float, tmp_path) -> dict[str, float]:
    """A small CNN trained on the biased digits (rho) with the one training loop; its shortcut metrics."""
    from layerprune.train import TrainConfig, fit

    config = _config(rho=rho, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 10),
    )  # fmt: skip
    train = biased_train_set({**config["data"], "augment": False}, config["shortcut"])
    settings = TrainConfig(epochs=4, batch_size=32, lr=0.05, weight_decay=0.0, seed=0, num_workers=0)
    fit(model, train, None, settings, tmp_path / f"rho{rho}")
    table = evaluate_shortcut(model, shortcut_test_sets(config["data"], config["shortcut"]))
    return dict(zip(table["metric"], table["value"]))


@pytest.mark.slow
def test_fully_biased_training_gives_high_reliance_and_unbiased_none(tmp_path):
    biased = _train_and_measure(1.0, tmp_path)
    unbiased = _train_and_measure(0.0, tmp_path)
    # measured (torch 2.14, CPU): rho 1 -> reliance 0.58, follow rate 0.43, aligned 1.0; rho 0 -> reliance 0.03,
    # follow rate 0.02, clean 0.97 (360 test images: a paired accuracy difference has a standard error ~0.015)
    assert biased["reliance"] > 0.3 and biased["patch_follow_rate"] > 0.25 and biased["aligned_accuracy"] > 0.95
    assert abs(unbiased["reliance"]) < 0.08 and unbiased["patch_follow_rate"] < 0.1
    assert unbiased["clean_accuracy"] > 0.9


def test_config_copy_is_not_changed_by_building_sets():
    config = _config()
    before = copy.deepcopy(config)
    biased_train_set(config["data"], config["shortcut"])
    shortcut_test_sets(config["data"], config["shortcut"])
    assert config == before


def test_commands_finetune_on_the_biased_set_and_write_the_metrics(tmp_path):
    """`layerprune finetune --shortcut` trains on the biased set and records the section; `layerprune shortcut`
    writes the tidy CSV whose values the library computes for the same checkpoint."""
    import json

    from layerprune.cli import main
    from layerprune.data import dataset_info
    from layerprune.models import get_model, load_checkpoint, save_checkpoint

    config = _config(rho=1.0, test_size=60)
    info = dataset_info(config["data"])
    torch.manual_seed(0)
    model = get_model("resnet20", num_classes=10, in_channels=1, blocks_per_stage=[1, 1, 1])
    save_checkpoint(tmp_path / "start.pt", model, preprocessing=info.preprocessing())
    data, section = json.dumps(config["data"]), json.dumps({"rho": 1.0, "test_size": 60})
    finetune = json.dumps({"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 3, "num_workers": 0})
    argv = ["finetune", "--model", str(tmp_path / "start.pt"), "--data", data, "--finetune", finetune,
            "--shortcut", section, "--out", str(tmp_path / "biased.pt"), "--workdir", str(tmp_path / "work"),
            "--log-csv", str(tmp_path / "log.csv")]  # fmt: skip
    assert main(argv) == 0
    checkpoint = load_checkpoint(tmp_path / "biased.pt")
    assert checkpoint.meta["shortcut"]["rho"] == 1.0 and checkpoint.meta["shortcut"]["size"] == 4  # schema default
    out = tmp_path / "shortcut.csv"
    assert main(["shortcut", "--model", str(tmp_path / "biased.pt"), "--data", data, "--shortcut", section,
                 "--out", str(out)]) == 0  # fmt: skip
    expected = evaluate_shortcut(checkpoint.model, shortcut_test_sets(config["data"], config["shortcut"]))
    assert read_shortcut(out) == pytest.approx(dict(zip(expected["metric"], expected["value"])))
