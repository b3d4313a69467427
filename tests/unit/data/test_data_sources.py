"""Data sets by name: sizes, shapes, determinism, and errors that say where the data should be."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from layerprune.data import SOURCES, build_dataset, dataset_info, seeded_subset

FASHION_ROOT = Path(SOURCES["fashion-mnist"].default_root)
DIGITS = {"name": "digits"}


def test_digits_split_sizes_shapes_and_labels() -> None:
    train, test = build_dataset(DIGITS, "train"), build_dataset(DIGITS, "test")
    assert (len(train), len(test)) == (1437, 360)  # 1797 images, 20% held out
    image, label = test[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    counts = np.bincount(test.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: about 36 per class
    assert (len(build_dataset({**DIGITS, "test_fraction": 0.5}, "test"))) == 899


def test_digits_split_is_deterministic_by_seed() -> None:
    a, b = build_dataset(DIGITS, "test"), build_dataset(DIGITS, "test")
    assert a.targets == b.targets
    assert np.array_equal(a.images, b.images)
    other = build_dataset({**DIGITS, "split_seed": 1}, "test")
    assert not np.array_equal(a.images, other.images)


def test_normalize_false_gives_pixels_in_unit_interval_and_true_standardizes() -> None:
    raw = build_dataset(DIGITS, "test", normalize=False)
    norm = build_dataset(DIGITS, "test")
    pixels = torch.stack([raw[i][0] for i in range(50)])
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0 and pixels.max() > 0.9
    mean, std = SOURCES["digits"].mean[0], SOURCES["digits"].std[0]
    torch.testing.assert_close(norm[3][0], (raw[3][0] - mean) / std)
    assert norm[3][0].min() < 0


def test_seeded_subset_is_deterministic_and_depends_on_the_seed() -> None:
    data = build_dataset(DIGITS, "train")
    a, b, c = seeded_subset(data, 100, 0), seeded_subset(data, 100, 0), seeded_subset(data, 100, 1)
    assert len(a) == 100 and a.indices == b.indices
    assert a.indices != c.indices
    assert len(set(a.indices)) == 100
    everything = seeded_subset(data, 10_000, 0)
    assert sorted(everything.indices) == list(range(len(data)))
    with pytest.raises(ValueError, match="subset size must be >= 1, got 0"):
        seeded_subset(data, 0, 0)


def test_configured_subset_uses_split_seed() -> None:
    subset = build_dataset({**DIGITS, "test_subset": 50, "split_seed": 2}, "test")
    assert len(subset) == 50
    assert subset.indices == seeded_subset(build_dataset({**DIGITS, "split_seed": 2}, "test"), 50, 2).indices


def test_dataset_info_is_the_checkpoint_preprocessing() -> None:
    info = dataset_info({**DIGITS, "image_size": 20})
    assert info.preprocessing() == {
        "dataset": "digits",
        "mean": [SOURCES["digits"].mean[0]],
        "std": [SOURCES["digits"].std[0]],
        "input_size": [1, 20, 20],
        "num_classes": 10,
    }
    assert build_dataset({**DIGITS, "image_size": 20}, "test")[0][0].shape == (1, 20, 20)
    with pytest.raises(ValueError, match="need 1 values for digits"):
        dataset_info({**DIGITS, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]})


def test_unknown_data_set_and_split_are_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.name: 'mnist' is not one of \[.*'digits'"):
        build_dataset({"name": "mnist"}, "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        build_dataset(DIGITS, "val")


def test_fashion_mnist_missing_root_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        build_dataset({"name": "fashion-mnist", "root": str(tmp_path)}, "test")
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in str(err.value)


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason=f"{FASHION_ROOT} absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_package() -> None:
    train, test = build_dataset({"name": "fashion-mnist"}, "train"), build_dataset({"name": "fashion-mnist"}, "test")
    assert (len(train), len(test)) == (60_000, 10_000)
    image, label = test[0]
    assert image.shape == (1, 28, 28)
    assert label == 9  # the first test image of Fashion-MNIST is an ankle boot
    assert np.bincount(test.targets).tolist() == [1000] * 10


def test_imagefolder_missing_folder_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="not found") as err:
        build_dataset({"name": "imagefolder", "root": str(root), "cache_dir": str(tmp_path / "cache")}, "test")
    assert str(root / "test") in str(err.value)
    with pytest.raises(ValueError, match="data.root is required"):
        build_dataset({"name": "imagefolder", "num_classes": 3}, "test")


def _image_tar(root: Path, split: str, classes: dict[str, int]) -> None:
    """``root/<split>.tar`` holding ``<split>/<class>/<i>.png``: the layout of ../shared/data/cifar10-jpeg."""
    staging = root / "staging"
    rng = np.random.default_rng(0)
    for cls, n in classes.items():
        (staging / split / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(staging / split / cls / f"{i:04d}.png")
    with tarfile.open(root / f"{split}.tar", "w") as tar:
        tar.add(staging / split, arcname=split)


def test_imagefolder_from_tar_unpacks_once_into_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "toyset", tmp_path / "cache"
    root.mkdir()
    _image_tar(root, "test", {"cat": 3, "dog": 2, "frog": 4})  # no train.tar: the test split must not need it
    cfg = {"name": "imagefolder", "root": str(root), "image_size": 8, "cache_dir": str(cache)}

    data = build_dataset(cfg, "test")
    assert len(data) == 9
    assert data.classes == ["cat", "dog", "frog"]
    assert data.targets == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    image, label = data[3]
    assert image.shape == (3, 8, 8) and label == 1
    unpacked = cache / "toyset" / "test"
    assert sorted(p.name for p in (unpacked / "dog").iterdir()) == ["0000.png", "0001.png"]
    assert [p.name for p in (cache / "toyset").iterdir()] == ["test"]  # no temporary folder left

    def no_second_unpack(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tar was unpacked a second time")

    monkeypatch.setattr(tarfile, "open", no_second_unpack)
    again = build_dataset({**cfg, "test_subset": 4}, "test")
    assert len(again) == 4
    assert dataset_info(cfg, "test").num_classes == 3


def test_imagefolder_unpacked_by_a_concurrent_job_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs that start on the same tar at once (the workflow runs jobs in parallel): the
    second to finish finds the first's folder in place, keeps it, and leaves no temporary."""
    from layerprune.data import sources

    root, cache = tmp_path / "toyset", tmp_path / "cache"
    root.mkdir()
    _image_tar(root, "test", {"cat": 2, "dog": 1})
    real_open = tarfile.open

    def open_after_the_other_job(path: object, *args: object, **kwargs: object) -> tarfile.TarFile:
        with real_open(path) as other:  # the other job finishes its unpack first
            other.extractall(cache / "toyset", filter="data")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(tarfile, "open", open_after_the_other_job)
    folder = sources._unpack(root / "test.tar", cache / "toyset")
    assert folder == cache / "toyset" / "test"
    assert sorted(p.name for p in folder.iterdir()) == ["cat", "dog"]
    assert [p.name for p in (cache / "toyset").iterdir()] == ["test"]


@pytest.mark.parametrize(
    ("shape", "size"), [((8, 8), 16), ((28, 28), 28), ((32, 32, 3), 32), ((12, 12, 3), 32), ((64, 64, 3), 32)]
)
@pytest.mark.parametrize("augment", [False, True])
def test_array_transform_matches_torchvision(shape: tuple[int, ...], size: int, augment: bool) -> None:
    """The in-memory data sets' transform gives torchvision's result (within the one grey
    level that PIL's uint8 resize rounds to) and draws the same random crops and flips."""
    from torchvision import transforms

    from layerprune.data import ArrayTransform

    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    mean = (0.3,) * (1 if len(shape) == 2 else 3)
    std = (0.4,) * len(mean)
    steps = [transforms.Resize((size, size))]
    if augment:
        steps += [transforms.RandomCrop(size, padding=max(1, size // 8)), transforms.RandomHorizontalFlip()]
    reference = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])
    ours = ArrayTransform(size, mean, std, augment=augment, flip=True)
    for seed in range(4):
        torch.manual_seed(seed)
        expected = reference(Image.fromarray(image))
        torch.manual_seed(seed)
        got = ours(image)
        assert got.shape == expected.shape == (len(mean), size, size)
        grey_levels = (got - expected).abs().max().item() * std[0] * 255
        assert grey_levels <= 1.0 + 1e-4
