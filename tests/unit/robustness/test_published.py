"""The real CIFAR-10-C, CIFAR-10.1 and CIFAR-10.2 files, read in their published layouts (synthesised small here)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from layerprune.cli import main
from layerprune.robustness.corrupted_set import (
    CorruptedSet,
    first_test_images,
    load_cifar10c,
    make_corrupted_set,
    save_corrupted_set_grid,
)
from layerprune.robustness.natural_shift import evaluate_ood_sets
from layerprune.robustness.published import load_ood_set, read_cifar10c

N = 12  # images per severity block in the synthetic files (10,000 in the real ones)
DIGITS = {"name": "digits"}


def _cifar10c(root, names, *, n=N, shape=(32, 32, 3), labels=None) -> dict[str, np.ndarray]:
    """Write ``labels.npy`` and ``<name>.npy`` as CIFAR-10-C ships them: 5 severity blocks of ``n`` images stacked,
    each image's pixels encoding (corruption, severity, index), labels repeated per severity."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n) if labels is None else np.asarray(labels)
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))  # the published file is uint8
    arrays = {}
    for c, name in enumerate(names):
        data = np.empty((5 * n, *shape), np.uint8)
        for s in range(5):
            for i in range(n):
                data[s * n + i] = (c * 50 + s * 10 + i) % 256
        np.save(root / f"{name}.npy", data)
        arrays[name] = data
    return {"labels": labels, **arrays}


def test_read_cifar10c_takes_the_first_images_of_each_severity_block(tmp_path) -> None:
    files = _cifar10c(tmp_path, ["fog", "contrast"])
    labels, keys, corrupted = read_cifar10c(tmp_path, ["contrast", "fog"], [1, 3, 5], 7)
    assert keys == [("contrast", 1), ("contrast", 3), ("contrast", 5), ("fog", 1), ("fog", 3), ("fog", 5)]
    assert corrupted.shape == (6, 7, 32, 32, 3) and corrupted.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == files["labels"][:7].tolist()
    for k, (name, severity) in enumerate(keys):
        start = (severity - 1) * N
        np.testing.assert_array_equal(corrupted[k], files[name][start : start + 7])


def test_load_cifar10c_keeps_the_real_clean_images_and_checks_them(tmp_path) -> None:
    files = _cifar10c(tmp_path, ["fog"])
    clean = np.full((5, 32, 32, 3), 200, np.uint8)
    data = load_cifar10c(tmp_path, ["fog"], [2], clean, files["labels"][:5])
    np.testing.assert_array_equal(data.clean, clean)  # not zeros
    np.testing.assert_array_equal(data.corrupted[0], files["fog"][N : N + 5])
    assert data.labels.tolist() == files["labels"][:5].tolist()
    wrong = files["labels"][:5].copy()
    wrong[0] = (wrong[0] + 1) % 10
    with pytest.raises(ValueError, match=r"1 of the first 5 labels in .*labels\.npy differ .* published order"):
        load_cifar10c(tmp_path, ["fog"], [2], clean, wrong)
    with pytest.raises(ValueError, match=r"are \(32, 32, 3\) but the configured test images are \(16, 16, 1\)"):
        load_cifar10c(tmp_path, ["fog"], [2], np.zeros((5, 16, 16, 1), np.uint8), files["labels"][:5])


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing_file", r"lacks \['snow\.npy'\].*zenodo"),
        ("too_many", r"corruption_size=13 exceeds the 12 images per severity"),
        ("float", r"CIFAR-10-C files are uint8"),
    ],
)
def test_read_cifar10c_errors_say_what_is_wrong(tmp_path, setup, match) -> None:
    _cifar10c(tmp_path, ["fog"])
    names, size = ["fog"], 4
    if setup == "missing_file":
        names = ["fog", "snow"]
    elif setup == "too_many":
        size = N + 1
    else:
        np.save(tmp_path / "fog.npy", np.zeros((5 * N, 32, 32, 3), np.float32))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_cifar10c(tmp_path, names, [1], size)


def test_corrupt_cli_with_real_files_writes_the_grid_from_the_loaded_images(tmp_path) -> None:
    # the digits test split stands in for CIFAR-10: files in the published layout, made for its first images
    images, labels = first_test_images(DIGITS, N)
    _cifar10c(tmp_path, ["fog", "contrast"], shape=images.shape[1:], labels=labels)
    out, grid = tmp_path / "corrupted.npz", tmp_path / "grid.png"
    argv = ["corrupt", "--data", '{"name": "digits"}', "--corruptions", "fog", "contrast", "--severities", "1", "4",
            "--size", "5", "--cifar10c-root", str(tmp_path), "--out", str(out), "--grid", str(grid)]  # fmt: skip
    assert main(argv) == 0
    data = CorruptedSet.load(out)
    np.testing.assert_array_equal(data.clean, images[:5])
    assert data.labels.tolist() == labels[:5].tolist()
    assert data.keys == [("fog", 1), ("fog", 4), ("contrast", 1), ("contrast", 4)]
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.width > img.height > 50


def test_grid_of_a_set_shows_its_stored_images(tmp_path, monkeypatch) -> None:
    clean = np.zeros((4, 8, 8, 1), np.uint8)
    corrupted = np.stack([np.full((4, 8, 8, 1), v, np.uint8) for v in (10, 20, 30, 40)])
    data = CorruptedSet(clean, np.zeros(4, np.int64), [("fog", 1), ("fog", 2), ("snow", 1), ("snow", 2)], corrupted)
    drawn = {}
    monkeypatch.setattr(
        "layerprune.robustness.corrupted_set.draw_corruption_grid",
        lambda c, rows, severities, path: drawn.update(clean=c, rows=rows, severities=severities),
    )
    save_corrupted_set_grid(data, tmp_path / "g.png", n_images=2)
    assert drawn["severities"] == [1, 2] and list(drawn["rows"]) == ["fog", "snow"]
    assert drawn["clean"].shape == (2, 8, 8, 1)
    assert [int(b[0, 0, 0, 0]) for b in drawn["rows"]["snow"]] == [30, 40]


def test_generated_corruptions_of_non_32_images_warn(caplog) -> None:
    images = np.zeros((2, 16, 16, 1), np.uint8)
    with caplog.at_level(logging.WARNING, logger="layerprune.robustness.corrupted_set"):
        make_corrupted_set(images, np.zeros(2, np.int64), ["contrast"], [1], 0)
    assert "16x16 images with the CIFAR-10-C severity parameters, which are set for 32x32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="layerprune.robustness.corrupted_set"):
        make_corrupted_set(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64), ["contrast"], [1], 0)
    assert "severity parameters" not in caplog.text


def _ood_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose top-left red pixel encodes the label (20 grey levels a class), for the model below."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
    images[:, 0, 0, 0] = labels * 20 + 5
    return images, labels


class _PixelClassifier(nn.Module):
    """Predicts the class encoded in the top-left red pixel (inputs normalised with mean 0, std 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = x[:, 0, 0, 0] * 255 / 20  # (n,)
        return -(code[:, None] - torch.arange(10, dtype=x.dtype) - 0.25).abs()


def _write_ood(tmp_path):
    c101, c102 = tmp_path / "c101", tmp_path / "c102"
    c101.mkdir()
    c102.mkdir()
    x1, y1 = _ood_images(20, 1)
    np.save(c101 / "cifar10.1_v6_data.npy", x1)
    np.save(c101 / "cifar10.1_v6_labels.npy", y1.astype(np.int64))
    x2, y2 = _ood_images(30, 2)
    y2_file = y2.copy()
    y2_file[:6] = (y2_file[:6] + 1) % 10  # 6 of 30 labelled as another class: accuracy 0.8
    np.savez(c102 / "cifar102_test.npz", images=x2, labels=y2_file.astype(np.uint8))
    return c101, c102, (x1, y1), (x2, y2_file)


def test_ood_sets_load_in_their_published_layouts(tmp_path) -> None:
    c101, c102, (x1, y1), (x2, y2) = _write_ood(tmp_path)
    images, labels = load_ood_set("cifar10.1", c101)
    np.testing.assert_array_equal(images, x1)
    assert labels.dtype == np.int64 and labels.tolist() == y1.tolist()
    images, labels = load_ood_set("cifar10.2", c102)
    np.testing.assert_array_equal(images, x2)
    assert labels.tolist() == y2.tolist()


def test_ood_errors_name_the_path_and_the_source(tmp_path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"lacks \['cifar102_test\.npz'\].*github\.com/modestyachts/cifar-10\.2"
    ):
        load_ood_set("cifar10.2", tmp_path)
    np.savez(tmp_path / "cifar102_test.npz", data=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"has arrays \['data'\]"):
        load_ood_set("cifar10.2", tmp_path)
    with pytest.raises(ValueError, match=r"unknown natural-shift test set 'cifar10.3'"):
        load_ood_set("cifar10.3", tmp_path)


def test_evaluate_ood_sets_gives_a_tidy_table(tmp_path) -> None:
    c101, c102, _, _ = _write_ood(tmp_path)
    sets = [{"name": "cifar10.1", "path": str(c101)}, {"name": "cifar10.2", "path": str(c102)}]
    table = evaluate_ood_sets(_PixelClassifier(), sets, mean=[0, 0, 0], std=[1, 1, 1], input_size=[3, 32, 32],
                              batch_size=7)  # fmt: skip
    expected = pd.DataFrame({"dataset": ["cifar10.1", "cifar10.2"], "accuracy": [1.0, 0.8], "n": [20, 30]})
    pd.testing.assert_frame_equal(table, expected)
    with pytest.raises(ValueError, match=r"takes input_size \[1, 16, 16\]"):
        evaluate_ood_sets(_PixelClassifier(), sets, mean=[0], std=[1], input_size=[1, 16, 16])
