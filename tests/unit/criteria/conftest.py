"""Fixtures of the criteria tests: the trained digits ResNet-20 and its calibration artifacts."""

from __future__ import annotations

import pandas as pd
import pytest
from digits_resnet import (
    METRICS,
    calibration,
    calibration_representations,
    load_trained,
)
from torch.utils.data import DataLoader

from layerprune.models.checkpoint import Checkpoint
from layerprune.similarity.extract import Representations
from layerprune.similarity.tables import candidate_distances


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    """The trained model (session-wide; tests that modify it must load their own copy)."""
    return load_trained(tmp_path_factory)


@pytest.fixture(scope="session")
def calibration_batches() -> DataLoader:
    return calibration()


@pytest.fixture(scope="session")
def representations(tmp_path_factory: pytest.TempPathFactory) -> Representations:
    """The extraction artifact of the trained model on the :func:`calibration_batches`."""
    return calibration_representations(tmp_path_factory)


@pytest.fixture(scope="session")
def distances(representations: Representations) -> pd.DataFrame:
    """Tidy ``unit, metric, distance`` table, as the similarity stage writes it."""
    return candidate_distances(representations, METRICS)
