"""Accuracy under natural distribution shift: CIFAR-10.1 and CIFAR-10.2, new test sets drawn like CIFAR-10's.

Recht et al. (2019, https://arxiv.org/abs/1806.00451) and Lu et al. (2020, https://arxiv.org/abs/2012.02651)
collected new test images of CIFAR-10's classes following its original protocol; models lose several accuracy points
on them. The files are read in their published layouts (:mod:`layerprune.robustness.published`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from layerprune.robustness._common import check_normalisation
from layerprune.robustness.corruption_eval import accuracy
from layerprune.robustness.published import load_ood_set

logger = logging.getLogger(__name__)

__all__ = ["OOD_COLUMNS", "evaluate_ood_sets"]

#: Columns of ``ood.csv``.
OOD_COLUMNS = ["dataset", "accuracy", "n"]


def evaluate_ood_sets(
    model: torch.nn.Module,
    sets: Sequence[Mapping[str, str]],
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    input_size: Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Top-1 accuracy of ``model`` on each test set.

    Args:
        model: classifier of CIFAR-10's 10 classes taking normalised ``(n, 3, 32, 32)`` inputs.
        sets: the config's ``robustness.ood_sets``, ``[{"name": "cifar10.1", "path": folder}, ...]``.
        mean, std: the model's input normalisation for [0, 1] pixels (the checkpoint's preprocessing).
        input_size: the model's ``(C, H, W)`` (checkpoint preprocessing); checked against the images when given.
        batch_size: images per forward pass.
        device: where the model runs.

    Returns:
        Tidy DataFrame ``dataset, accuracy, n``, one row per set in the given order.

    Raises:
        FileNotFoundError: a set's files are missing (the message says where to get them).
        ValueError: bad files, or a model whose input is not 32x32 RGB.
    """
    device = torch.device(device)
    model = model.eval().to(device)
    rows = []
    for entry in sets:
        name, path = entry["name"], entry["path"]
        images, labels = load_ood_set(name, path)
        if input_size is not None and tuple(int(v) for v in input_size) != (images.shape[3], *images.shape[1:3]):
            raise ValueError(
                f"{name} images are {images.shape[1]}x{images.shape[2]} with {images.shape[3]} channels but the model "
                f"takes input_size {list(input_size)}; natural-shift sets need a CIFAR-10 model at 32x32"
            )
        mean_l, std_l = check_normalisation(mean, std, images.shape[-1])
        acc = accuracy(model, images, torch.as_tensor(labels), mean_l, std_l, batch_size, device)
        logger.info("%s (%s): accuracy %.4f (n=%d)", name, path, acc, len(labels))
        rows.append({"dataset": name, "accuracy": acc, "n": len(labels)})
    return pd.DataFrame(rows, columns=OOD_COLUMNS)
