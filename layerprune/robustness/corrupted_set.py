"""Corrupted test sets made once per experiment and reused for every model.

Generating the 15 x 5 CIFAR-10-C corruptions costs far more than evaluating a model on
them, and the corrupted images are the same for every model at a given seed, so the
workflow writes them once (``corrupted_test.npz``) and each model's evaluation is pure
inference. Users with the real CIFAR-10-C files load those instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from layerprune.data import build_dataset, seeded_subset
from layerprune.io import atomic_path
from layerprune.robustness._common import check_normalisation
from layerprune.robustness.corruption_eval import accuracy
from layerprune.robustness.corruption_grid import draw_corruption_grid
from layerprune.robustness.corruptions import CORRUPTIONS, corrupt_dataset
from layerprune.robustness.published import read_cifar10c

logger = logging.getLogger(__name__)

__all__ = [
    "CorruptedSet",
    "evaluate_corrupted_set",
    "first_test_images",
    "load_cifar10c",
    "make_corrupted_set",
    "save_corrupted_set_grid",
    "test_images",
]


@dataclass
class CorruptedSet:
    """Clean images, labels and every (corruption, severity) copy, all uint8 (N, H, W, C)."""

    clean: np.ndarray
    labels: np.ndarray
    keys: list[tuple[str, int]]
    corrupted: np.ndarray  # (K, N, H, W, C), K = len(keys)

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            np.savez_compressed(
                tmp,
                clean=self.clean,
                labels=self.labels,
                names=np.array([k[0] for k in self.keys]),
                severities=np.array([k[1] for k in self.keys], dtype=np.int64),
                corrupted=self.corrupted,
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> CorruptedSet:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run `layerprune corrupt` (rule robustness_corrupt_data)")
        with np.load(path, allow_pickle=False) as z:
            keys = list(zip(z["names"].tolist(), z["severities"].tolist()))
            return cls(z["clean"], z["labels"], keys, z["corrupted"])


def _as_uint8(dataset: torch.utils.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))  # type: ignore[arg-type]
    batch = torch.stack(images)  # (N, C, H, W) in [0, 1]
    return (
        (batch * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy(),
        np.asarray(labels, dtype=np.int64),
    )


def test_images(data_cfg: dict, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of the test split as uint8 (N, H, W, C) images and int labels."""
    return _as_uint8(seeded_subset(build_dataset(data_cfg, "test", augment=False, normalize=False), size, seed))


def first_test_images(data_cfg: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` images of the test split, in file order, as uint8 (N, H, W, C) images and int labels.

    CIFAR-10-C stacks the corrupted test images in this order, so these are their clean versions.
    """
    dataset = build_dataset(data_cfg, "test", augment=False, normalize=False)
    return _as_uint8(torch.utils.data.Subset(dataset, range(min(size, len(dataset)))))  # type: ignore[arg-type]


def make_corrupted_set(
    images: np.ndarray, labels: np.ndarray, corruptions: Sequence[str], severities: Sequence[int], seed: int
) -> CorruptedSet:
    """Corrupt uint8 ``images`` (N, H, W, C) with every (corruption, severity), seeded per image."""
    if images.shape[1:3] != (32, 32):
        logger.warning(
            "corrupting %dx%d images with the CIFAR-10-C severity parameters, which are set for 32x32 images "
            "(most are in pixels: blur radii, noise grain, fog and frost scale); severities are not comparable "
            "to the published CIFAR-10-C",
            images.shape[1],
            images.shape[2],
        )
    keys = [(name, int(s)) for name in corruptions for s in severities]
    stack = np.empty((len(keys), *images.shape), dtype=np.uint8)
    for k, (name, severity) in enumerate(keys):
        stack[k] = corrupt_dataset(images, name, severity, seed)
    return CorruptedSet(images, labels, keys, stack)


def load_cifar10c(
    root: str | Path,
    corruptions: Sequence[str],
    severities: Sequence[int],
    clean_images: np.ndarray,
    clean_labels: np.ndarray,
) -> CorruptedSet:
    """The real CIFAR-10-C (see :mod:`layerprune.robustness.published` for the layout) for the given clean images.

    Takes, for each (corruption, severity), the corrupted copies of the first ``len(clean_images)`` test images.

    Args:
        root: folder holding ``labels.npy`` and ``<corruption>.npy``.
        corruptions, severities: the blocks to load.
        clean_images: uint8 ``(N, 32, 32, 3)``, the first N images of the clean test set in file order
            (:func:`first_test_images`; the CIFAR-10-C files do not contain them).
        clean_labels: their labels ``(N,)``.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: files not in the published layout, or clean images that do not match them (another test set,
            another order or another image size).
    """
    labels, keys, corrupted = read_cifar10c(root, corruptions, severities, len(clean_images))
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    if corrupted.shape[2:] != clean_images.shape[1:]:
        raise ValueError(
            f"CIFAR-10-C images in {root} are {corrupted.shape[2:]} but the configured test images are "
            f"{clean_images.shape[1:]}; use the data set the corruptions were made from at its native size"
        )
    if not np.array_equal(labels, clean_labels):
        wrong = int((labels != clean_labels).sum())
        raise ValueError(
            f"{wrong} of the first {len(labels)} labels in {Path(root) / 'labels.npy'} differ from the configured test "
            "set's; CIFAR-10-C follows the CIFAR-10 test set in its published order (data.name: cifar10, or "
            "cifar100 for CIFAR-100-C)"
        )
    return CorruptedSet(clean_images, clean_labels, keys, corrupted)


def save_corrupted_set_grid(data: CorruptedSet, path: str | Path, n_images: int = 3) -> None:
    """PNG grid of the first ``n_images`` clean images and their stored corrupted copies (generated or loaded)."""
    severities = list(dict.fromkeys(s for _, s in data.keys))
    index = {key: k for k, key in enumerate(data.keys)}
    names = list(dict.fromkeys(name for name, _ in data.keys))
    rows = {name: [data.corrupted[index[(name, s)], :n_images] for s in severities] for name in names}
    draw_corruption_grid(data.clean[:n_images], rows, severities, path)


def evaluate_corrupted_set(
    model: torch.nn.Module,
    data: CorruptedSet,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Tidy ``corruption, group, severity, accuracy, n`` of ``model`` on every corrupted copy."""
    mean, std = check_normalisation(mean, std, data.corrupted.shape[-1])
    device = torch.device(device)
    model = model.eval().to(device)
    labels = torch.as_tensor(data.labels)
    rows = [
        {
            "corruption": name,
            "group": CORRUPTIONS[name],
            "severity": severity,
            "accuracy": accuracy(model, data.corrupted[k], labels, mean, std, batch_size, device),
            "n": len(labels),
        }
        for k, (name, severity) in enumerate(data.keys)
    ]
    return pd.DataFrame(rows, columns=["corruption", "group", "severity", "accuracy", "n"])
