"""Corrupted test sets made once per experiment and reused for every model.

Generating the 15 x 5 CIFAR-10-C corruptions costs far more than evaluating a model on
them, and the corrupted images are the same for every model at a given seed, so the
workflow writes them once (``corrupted_test.npz``) and each model's evaluation is pure
inference. Users with the real CIFAR-10-C files load those instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from layerprune.data import build_dataset, seeded_subset
from layerprune.io import atomic_path
from layerprune.robustness._common import check_normalisation
from layerprune.robustness.corruptions import CORRUPTIONS, _accuracy, corrupt_dataset

__all__ = ["CorruptedSet", "evaluate_corrupted_set", "load_cifar10c", "make_corrupted_set", "test_images"]


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


def test_images(data_cfg: dict, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of the test split as uint8 (N, H, W, C) images and int labels."""
    dataset = seeded_subset(build_dataset(data_cfg, "test", augment=False, normalize=False), size, seed)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    batch = torch.stack(images)  # (N, C, H, W) in [0, 1]
    return (
        (batch * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy(),
        np.asarray(labels, dtype=np.int64),
    )


def make_corrupted_set(
    images: np.ndarray, labels: np.ndarray, corruptions: Sequence[str], severities: Sequence[int], seed: int
) -> CorruptedSet:
    keys = [(name, int(s)) for name in corruptions for s in severities]
    stack = np.empty((len(keys), *images.shape), dtype=np.uint8)
    for k, (name, severity) in enumerate(keys):
        stack[k] = corrupt_dataset(images, name, severity, seed)
    return CorruptedSet(images, labels, keys, stack)


def load_cifar10c(root: str | Path, corruptions: Sequence[str], severities: Sequence[int], size: int) -> CorruptedSet:
    """The real CIFAR-10-C (``<corruption>.npy``: 5 x 10,000 images by severity; ``labels.npy``).

    Takes the first ``size`` images of each severity block.
    """
    root = Path(root)
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise FileNotFoundError(
            f"{labels_path} not found; robustness.cifar10c_root must hold the CIFAR-10-C .npy files"
        )
    labels = np.load(labels_path)[:size].astype(np.int64)
    keys, blocks = [], []
    for name in corruptions:
        path = root / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found in robustness.cifar10c_root")
        data = np.load(path, mmap_mode="r")
        per = len(data) // 5
        for severity in severities:
            keys.append((name, int(severity)))
            blocks.append(np.asarray(data[(severity - 1) * per : (severity - 1) * per + size]))
    clean = np.zeros_like(blocks[0]) if blocks else np.zeros((0,), np.uint8)
    return CorruptedSet(clean, labels, keys, np.stack(blocks))


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
            "accuracy": _accuracy(model, data.corrupted[k], labels, mean, std, batch_size, device),
            "n": len(labels),
        }
        for k, (name, severity) in enumerate(data.keys)
    ]
    return pd.DataFrame(rows, columns=["corruption", "group", "severity", "accuracy", "n"])
