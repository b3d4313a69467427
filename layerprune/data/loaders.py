"""DataLoaders the stages share."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from layerprune.data.sources import build_dataset, seeded_subset

__all__ = ["calibration_loader"]


def calibration_loader(data_cfg: dict, *, size: int, batch_size: int, seed: int = 0) -> DataLoader:
    """The seeded calibration subset of the *training* split, without augmentation, in a fixed order.

    Every criterion of one experiment sees the same images, so their scores are comparable.
    """
    dataset = seeded_subset(build_dataset(data_cfg, "train", augment=False), size, seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=torch.cuda.is_available())
