"""CIFAR-10-C corruptions: shapes, determinism, severity ordering, grayscale support, evaluation and summary tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from layerprune.robustness import (
    CORRUPTIONS,
    GROUPS,
    SEVERITIES,
    corrupt,
    corrupt_dataset,
    corruption_summary,
    evaluate_corruptions,
    save_corruption_grid,
)

RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
}


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_the_benchmark_has_15_corruptions_in_4_groups() -> None:
    assert len(CORRUPTIONS) == 15
    assert {g: len(names) for g, names in GROUPS.items()} == {"noise": 3, "blur": 4, "weather": 4, "digital": 4}
    assert sorted(n for names in GROUPS.values() for n in names) == sorted(CORRUPTIONS)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_keeps_shape_dtype_and_grows_with_severity(name, cifar_samples) -> None:
    images = cifar_samples[:8]
    diffs = []
    for severity in SEVERITIES:
        out = corrupt_dataset(images, name, severity, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
        diffs.append(_mad(out, images))
    assert diffs[0] > 0.3, f"{name} severity 1 leaves the images (almost) unchanged: {diffs}"
    if name == "elastic_transform":
        # By design of the original parameters, severity 1 is a pure random affine warp of up to 0.08 x side
        # (2.6 px at 32x32), larger in pixel terms than severity 5's 0.03 x side warp, so the pixel difference is
        # not monotone. What grows is the local elastic displacement: an affine warp keeps a linear ramp linear,
        # the elastic field does not.
        rows, cols = np.mgrid[0:32, 0:32]
        ramp = np.repeat((4 * rows + 3 * cols + 10).astype(np.uint8)[..., None], 3, axis=2)
        design = np.c_[rows[6:-6, 6:-6].ravel(), cols[6:-6, 6:-6].ravel(), np.ones(20 * 20)]

        def nonlinearity(severity: int) -> float:
            out = corrupt(ramp, name, severity, seed=0)[6:-6, 6:-6, 0].ravel().astype(np.float64)
            residual = out - design @ np.linalg.lstsq(design, out, rcond=None)[0]
            return float(np.abs(residual).mean())

        assert nonlinearity(1) < 0.5 < 2 * nonlinearity(1) < nonlinearity(5)
    else:
        assert diffs[-1] > diffs[0], f"{name}: mean abs difference per severity {diffs}"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_deterministic_for_a_seed(name, cifar_samples) -> None:
    image = cifar_samples[3]
    a = corrupt(image, name, 3, seed=7)
    b = corrupt(image, name, 3, seed=7)
    c = corrupt(image, name, 3, seed=8)
    np.testing.assert_array_equal(a, b)
    if name in RANDOM:
        assert not np.array_equal(a, c), f"{name} ignores its seed"
    else:
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("shape", [(16, 16, 1), (28, 28, 1), (20, 24, 3)])
def test_grayscale_and_other_sizes_work(name, shape) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = corrupt(image, name, 5, seed=0)
    assert out.shape == shape and out.dtype == np.uint8
    assert _mad(out, image) > 0


def test_blurs_preserve_a_constant_image() -> None:
    # Their kernels are normalised: a flat grey image stays flat grey (catches mis-normalised kernels).
    flat = np.full((32, 32, 3), 128, dtype=np.uint8)
    for name in ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "pixelate", "elastic_transform"):
        for severity in SEVERITIES:
            np.testing.assert_allclose(corrupt(flat, name, severity, seed=1), 128, atol=1, err_msg=name)


def test_contrast_follows_its_formula(cifar_samples) -> None:
    x = cifar_samples[0].astype(np.float64) / 255
    mean = x.mean(axis=(0, 1), keepdims=True)
    expected = np.rint(np.clip((x - mean) * 0.15 + mean, 0, 1) * 255)
    np.testing.assert_array_equal(corrupt(cifar_samples[0], "contrast", 5, seed=0), expected)


def test_dataset_seeds_differ_per_image_and_are_reproducible(cifar_samples) -> None:
    twins = np.repeat(cifar_samples[:1], 2, axis=0)
    out = corrupt_dataset(twins, "gaussian_noise", 3, seed=5)
    assert not np.array_equal(out[0], out[1])  # each index gets its own noise
    np.testing.assert_array_equal(out, corrupt_dataset(twins, "gaussian_noise", 3, seed=5))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("fog_machine", 1), "unknown corruption 'fog_machine'"),
        (("fog", 0), r"severity 0 .* invalid"),
        (("fog", 6), r"severity 6 .* invalid"),
    ],
)
def test_bad_names_and_severities_error(args, match, cifar_samples) -> None:
    with pytest.raises(ValueError, match=match):
        corrupt(cifar_samples[0], *args, seed=0)


def test_bad_images_error(cifar_samples) -> None:
    with pytest.raises(ValueError, match="uint8"):
        corrupt(cifar_samples[0].astype(np.float32) / 255, "fog", 1, seed=0)
    with pytest.raises(ValueError, match="channels last"):
        corrupt(cifar_samples[0].transpose(2, 0, 1).copy(), "fog", 1, seed=0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        corrupt_dataset(cifar_samples[0], "fog", 1, seed=0)


def test_evaluate_corruptions_matches_a_manual_evaluation(digits_setup) -> None:
    images, labels = digits_setup.images_uint8[:80], digits_setup.labels[:80]
    df = evaluate_corruptions(
        digits_setup.model,
        images,
        labels,
        mean=digits_setup.mean,
        std=digits_setup.std,
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 5],
        seed=2,
        batch_size=32,
    )
    assert list(df.columns) == ["corruption", "group", "severity", "accuracy", "n"]
    assert list(zip(df.corruption, df.severity)) == [
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
        ("contrast", 1),
        ("contrast", 5),
    ]
    assert list(df.group) == ["noise", "noise", "digital", "digital"] and set(df.n) == {80}
    x = torch.from_numpy(corrupt_dataset(images, "contrast", 5, seed=2)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        manual = digits_setup.model((x - digits_setup.mean[0]) / digits_setup.std[0]).argmax(1) == labels
    assert df.accuracy.iloc[3] == pytest.approx(manual.float().mean().item())
    assert df.accuracy.iloc[0] > 0.8  # mild noise barely hurts a working model


def test_evaluate_corruptions_needs_normalisation(digits_setup) -> None:
    with pytest.raises(ValueError, match="model checkpoint has no normalisation metadata"):
        evaluate_corruptions(
            digits_setup.model,
            digits_setup.images_uint8[:4],
            digits_setup.labels[:4],
            mean=None,
            std=None,
            corruptions=["fog"],
            severities=[1],
        )


def _table(acc: dict[tuple[str, int], float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"corruption": c, "group": CORRUPTIONS[c], "severity": s, "accuracy": a, "n": 100}
            for (c, s), a in acc.items()
        ]
    )


def test_summary_computes_mean_accuracy_ce_and_mce() -> None:
    model = _table(
        {
            ("gaussian_noise", 1): 0.8,
            ("gaussian_noise", 2): 0.6,
            ("shot_noise", 1): 0.9,
            ("shot_noise", 2): 0.7,
            ("fog", 1): 0.5,
            ("fog", 2): 0.5,
        }
    )
    base = _table(
        {
            ("gaussian_noise", 1): 0.9,
            ("gaussian_noise", 2): 0.7,
            ("shot_noise", 1): 0.9,
            ("shot_noise", 2): 0.7,
            ("fog", 1): 0.75,
            ("fog", 2): 0.75,
        }
    )
    s = corruption_summary(model, base).set_index(["level", "name"])
    assert s.loc[("corruption", "gaussian_noise"), "accuracy"] == pytest.approx(0.7)
    assert s.loc[("corruption", "gaussian_noise"), "ce"] == pytest.approx((0.2 + 0.4) / (0.1 + 0.3))
    assert s.loc[("corruption", "shot_noise"), "ce"] == pytest.approx(1.0)
    assert s.loc[("corruption", "fog"), "ce"] == pytest.approx(2.0)
    assert s.loc[("group", "noise"), "ce"] == pytest.approx((1.5 + 1.0) / 2)
    assert s.loc[("group", "noise"), "accuracy"] == pytest.approx(0.75)
    assert s.loc[("overall", "all"), "ce"] == pytest.approx((1.5 + 1.0 + 2.0) / 3)  # mCE
    assert s.loc[("overall", "all"), "accuracy"] == pytest.approx((0.7 + 0.8 + 0.5) / 3)
    assert s.loc[("overall", "all"), "error"] == pytest.approx(1 - (0.7 + 0.8 + 0.5) / 3)


def test_summary_without_baseline_has_no_ce_and_incomplete_baseline_errors() -> None:
    model = _table({("fog", 1): 0.5, ("fog", 2): 0.4})
    s = corruption_summary(model)
    assert "ce" not in s.columns and list(s.level) == ["corruption", "group", "overall"]
    with pytest.raises(ValueError, match=r"lacks \(corruption, severity\) pairs \[\('fog', 2\)\]"):
        corruption_summary(model, _table({("fog", 1): 0.5}))


def test_grid_png_is_written_atomically(tmp_path, cifar_samples) -> None:
    path = tmp_path / "grid.png"
    save_corruption_grid(cifar_samples[:2], path, corruptions=["fog", "pixelate"], severities=[1, 5], seed=0)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > img.height > 50
    assert os.listdir(tmp_path) == ["grid.png"]  # no temporary file left behind


def test_the_examples_figure_has_the_permissions_of_every_other_result(tmp_path: Path) -> None:
    """It was written 0600 (mkstemp's mode), unreadable to the group, while every other result is 0644."""
    from layerprune.io import write_text
    from layerprune.robustness import save_corruption_grid

    images = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    figure = tmp_path / "corruption_examples.png"
    save_corruption_grid(images, figure, corruptions=["contrast"], severities=[1])
    other = write_text(tmp_path / "other.txt", "x")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert os.stat(figure).st_mode & 0o777 == os.stat(other).st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corruption_examples.png", "other.txt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
