"""The published CIFAR-10 ResNets in ../shared load into our architectures and classify real images.

This is the end-to-end check that the CIFAR ResNet (option-A shortcuts, module names), the
weight importer (``module.`` prefix, missing BN counters) and the image-folder data source
(tar unpacking, ImageNet normalisation the checkpoints were trained with) agree with the
real files. The JPEG re-encoding of ../shared costs about ten points against the published
accuracy (README of ../shared): on all 10,000 JPEG test images ResNet-20 scores 0.810 and
ResNet-56 0.832 (measured once); on the seeded 500 below, 0.800 / 0.818 / 0.828 / 0.834 for
ResNet-20/32/44/56. A broken import scores about 0.10.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from layerprune.data import build_dataset
from layerprune.models import get_model
from layerprune.models.checkpoint import load_external_weights

pytestmark = pytest.mark.shared
log = logging.getLogger(__name__)

# ResNet-20's full-set 0.810 less three binomial standard errors of a 500-image estimate
# (3 * sqrt(0.81 * 0.19 / 500) = 0.053): a floor that tolerates another subset, not a broken model.
TOP1_FLOOR = 0.75
SUBSET = 500


@pytest.fixture(scope="module")
def cifar10_test_subset(cifar10_jpeg_config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """500 seeded images of the JPEG CIFAR-10 test split, normalised, as one (500, 3, 32, 32) batch.

    Unpacks test.tar (10,000 JPEGs) once for the session into a temporary cache.
    """
    data = build_dataset({**cifar10_jpeg_config, "test_subset": SUBSET}, "test")
    assert len(data) == SUBSET
    assert len(data.dataset) == 10_000 and len(data.dataset.classes) == 10
    images, labels = next(iter(DataLoader(data, batch_size=SUBSET)))
    assert images.shape == (SUBSET, 3, 32, 32)
    return images, labels


def _checkpoints() -> list[str]:
    """Names only (the folder itself comes from the fixture at run time)."""
    return ["resnet20", "resnet32", "resnet44", "resnet56"]


@pytest.mark.parametrize("arch", _checkpoints())
def test_published_checkpoint_loads_and_classifies_real_cifar10(
    arch: str, shared_dir: Path, cifar10_test_subset: tuple[torch.Tensor, torch.Tensor], record_property
) -> None:
    files = sorted((shared_dir / "models" / "cifar-resnet").glob(f"{arch}-*.th"))
    assert len(files) == 1, f"expected one {arch}-<sha>.th in {shared_dir / 'models' / 'cifar-resnet'}, found {files}"
    assert re.fullmatch(rf"{arch}-[0-9a-f]{{8}}\.th", files[0].name)
    model = load_external_weights(get_model(arch, num_classes=10), files[0]).eval()
    images, labels = cifar10_test_subset
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            predictions = torch.cat([model(x).argmax(1) for x in images.split(100)])
    finally:
        torch.set_num_threads(threads)
    top1 = float((predictions == labels).float().mean())
    record_property("top1", top1)
    log.info("%s top-1 on %d JPEG CIFAR-10 test images: %.3f", arch, SUBSET, top1)
    assert top1 >= TOP1_FLOOR, f"{arch} from {files[0].name} reaches only {top1:.3f} top-1"


def test_every_published_checkpoint_is_covered(shared_dir: Path) -> None:
    found = {p.name.split("-")[0] for p in (shared_dir / "models" / "cifar-resnet").glob("resnet*.th")}
    assert found == set(_checkpoints())
