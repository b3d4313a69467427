"""Data sets, transforms and deterministic subsets."""

from layerprune.data.sources import (
    SOURCES,
    ArrayImageDataset,
    DatasetInfo,
    build_dataset,
    dataset_info,
    seeded_subset,
)

__all__ = [
    "SOURCES",
    "ArrayImageDataset",
    "DatasetInfo",
    "build_dataset",
    "dataset_info",
    "seeded_subset",
]
