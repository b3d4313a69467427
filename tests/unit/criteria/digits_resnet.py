"""A small *trained* model shared by the criteria, pruning, extraction and stage-CLI tests.

ResNet-20 (three stages of three units, 1 input channel) trained for three epochs on scikit-learn's digits
upsampled to 16x16: a real model whose units matter unequally, so criteria give meaningful, distinct scores.
Training takes 10-20 s on one CPU thread, so the checkpoint is made once per pytest session and cached under
the session's base temp folder (every test file asks :func:`trained_checkpoint` for it; the first one trains).

Test files outside this folder import this module after putting its folder on ``sys.path``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from layerprune.data import build_dataset, calibration_loader, dataset_info
from layerprune.models import get_model, save_checkpoint
from layerprune.models.checkpoint import Checkpoint, load_checkpoint
from layerprune.similarity.extract import Representations, extract_representations
from layerprune.train import TrainConfig, fit, seed_everything

#: the data section every test of this model uses
DATA = {"name": "digits", "image_size": 16}
INPUT_SIZE = (1, 16, 16)
TRAIN = TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=0)
#: distances the consensus tests vote over
METRICS = ("cka", "procrustes", "cca")


def _train(path: Path) -> None:
    seed_everything(TRAIN.seed)
    model = get_model("resnet20", num_classes=10, in_channels=1)
    train_set = build_dataset(DATA, "train", augment=True)
    test_set = build_dataset(DATA, "test")
    with tempfile.TemporaryDirectory() as workdir:
        result = fit(
            model,
            train_set,
            test_set,
            TRAIN,
            Path(workdir),
            device="cpu",
            progress=False,
        )
    save_checkpoint(
        path,
        model.cpu(),
        preprocessing=dataset_info(DATA).preprocessing(),
        meta={"stage": "baseline", "test_top1": result.top1},
    )


def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the trained digits ResNet-20 checkpoint, training it on the first call of the session."""
    path = tmp_path_factory.getbasetemp() / "digits_resnet20" / "model.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _train(path)
    return path


def load_trained(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    """A fresh copy of the trained model (tests may modify it freely)."""
    return load_checkpoint(trained_checkpoint(tmp_path_factory))


def calibration(size: int = 256, batch_size: int = 64) -> DataLoader:
    """The seeded calibration batches (training split, no augmentation) the stages use."""
    return calibration_loader(DATA, size=size, batch_size=batch_size, seed=0)


def calibration_representations(
    tmp_path_factory: pytest.TempPathFactory,
) -> Representations:
    """Extraction of the trained model on :func:`calibration` (defaults), made once per session."""
    path = tmp_path_factory.getbasetemp() / "digits_resnet20" / "representations.npz"
    if not path.is_file():
        model = load_trained(tmp_path_factory).model
        extract_representations(model, calibration(), input_size=INPUT_SIZE, progress=False).save(path)
    return Representations.load(path)
