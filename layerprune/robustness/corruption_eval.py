"""A model's accuracy on corrupted copies of a test set (the kernels are in :mod:`layerprune.robustness.corruptions`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from layerprune.robustness._common import check_normalisation
from layerprune.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    check_images,
    check_name_severity,
    corrupt_dataset,
)

logger = logging.getLogger(__name__)

__all__ = ["accuracy", "evaluate_corruptions"]


def _to_model_input(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> normalised float ``(N, C, H, W)``."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


@torch.no_grad()
def accuracy(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    device: torch.device,
) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        x = _to_model_input(images[start : start + batch_size], mean, std).to(device)
        pred = model(x).argmax(dim=1).cpu()
        correct += int((pred == labels[start : start + batch_size]).sum())
    return correct / len(images)


def evaluate_corruptions(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray | torch.Tensor | Sequence[int],
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Accuracy of ``model`` on corrupted copies of a test set (CIFAR-10-C protocol).

    Each (corruption, severity) pair corrupts all images with ``corrupt_dataset(images, name, severity, seed)``;
    images are then scaled to [0, 1] and normalised with ``mean``/``std`` exactly as the model was trained.

    Args:
        model: classifier mapping normalised ``(n, C, H, W)`` to logits ``(n, num_classes)``; evaluated in eval mode
            (its previous mode is restored afterwards).
        images: clean uint8 ``(N, H, W, C)``.
        labels: ``(N,)`` integer class labels.
        mean: per-channel mean of the model's input normalisation (for pixels in [0, 1]).
        std: per-channel standard deviation, same length.
        corruptions: names from ``CORRUPTIONS``; all 15 when None.
        severities: subset of 1..5.
        seed: base seed for the random corruptions.
        batch_size: images per forward pass.
        device: where the model runs.

    Returns:
        Tidy DataFrame with one row per (corruption, severity): ``corruption, group, severity, accuracy, n``.

    Raises:
        ValueError: missing or mis-sized normalisation, unknown corruption, bad severity, mismatched labels.
    """
    check_images(images, 4, "images")
    mean, std = check_normalisation(mean, std, images.shape[-1])
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for name in names:
        for severity in severities:
            check_name_severity(name, severity)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if labels_t.numel() != len(images):
        raise ValueError(f"got {labels_t.numel()} labels for {len(images)} images; pass one label per image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    rows = []
    try:
        for name in names:
            for severity in severities:
                corrupted = corrupt_dataset(images, name, severity, seed)
                acc = accuracy(model, corrupted, labels_t, mean, std, batch_size, device)
                logger.info("corruption %s severity %d: accuracy %.4f (n=%d)", name, severity, acc, len(images))
                rows.append(
                    {
                        "corruption": name,
                        "group": CORRUPTIONS[name],
                        "severity": int(severity),
                        "accuracy": acc,
                        "n": len(images),
                    }
                )
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=["corruption", "group", "severity", "accuracy", "n"])
