"""Data sets, transforms and deterministic subsets."""

from layerprune.data.loaders import calibration_loader
from layerprune.data.sources import (
    SOURCES,
    ArrayImageDataset,
    ArrayTransform,
    DatasetInfo,
    build_dataset,
    dataset_info,
    seeded_subset,
)

__all__ = [
    "SOURCES",
    "ArrayImageDataset",
    "ArrayTransform",
    "DatasetInfo",
    "build_dataset",
    "calibration_loader",
    "dataset_info",
    "seeded_subset",
]
