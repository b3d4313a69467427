"""Shared fixtures: a small CNN trained for a few seconds on scikit-learn's digits, and real CIFAR-10 samples.

Attacks on an untrained model are meaningless (its output is constant, so robust accuracy is 1.0 everywhere), hence
the short training run.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn


@dataclass
class DigitsSetup:
    model: nn.Module
    images: torch.Tensor  # (n, 1, 16, 16) float in [0, 1], held-out images
    labels: torch.Tensor  # (n,)
    mean: list[float]
    std: list[float]

    @property
    def images_uint8(self) -> np.ndarray:
        """(n, 16, 16, 1) uint8, the layout corruptions take."""
        return (self.images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)

    def clean_accuracy(self, n: int | None = None) -> float:
        x, y = self.images[:n], self.labels[:n]
        m = torch.tensor(self.mean).view(1, -1, 1, 1)
        s = torch.tensor(self.std).view(1, -1, 1, 1)
        with torch.no_grad():
            return float((self.model((x - m) / s).argmax(1) == y).float().mean())


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


@pytest.fixture(scope="session")
def digits_setup() -> DigitsSetup:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    mean, std = [float(x[train].mean())], [float(x[train].std())]
    torch.manual_seed(0)
    model = _tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = (x[train] - mean[0]) / std[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(5):  # epochs
            for idx in torch.randperm(len(train)).split(128):
                loss = F.cross_entropy(model(xt[idx]), y[train][idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    setup = DigitsSetup(model, x[test], y[test], mean, std)
    acc = setup.clean_accuracy()
    if acc < 0.9:  # the tests below assume a model that works; fail loudly rather than test noise
        raise RuntimeError(f"digits test model reached only {acc:.3f} test accuracy")
    return setup


@pytest.fixture(scope="session")
def cifar_samples() -> np.ndarray:
    """The 20 lossless CIFAR-10 test images bundled in foolbox's wheel, uint8 (20, 32, 32, 3)."""
    import foolbox

    files = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "cifar10_*.png")))
    if len(files) != 20:
        raise RuntimeError(f"expected 20 CIFAR-10 sample PNGs in foolbox's package data, found {len(files)}")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
