"""Fixtures shared by the whole test suite.

``shared_dir`` is the folder of real data and pretrained weights that sits beside the
repository (``../shared``). Markers are declared in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in the test process: the models and batches here are tiny, so a
    second thread gains little, and on a shared 2-core machine oversubscribed threads make
    the suite several times slower. Subprocesses (CLI, Snakemake) keep torch's default."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder of real data and weights: ``$LAYERPRUNE_SHARED``, else ``../shared``.

    A user's own clone may not have it, so tests that need it are skipped with the reason;
    CI sets ``LAYERPRUNE_REQUIRE_SHARED=1`` so that a missing folder fails instead of
    silently skipping the only tests that touch real CIFAR-10 and real weights.
    """
    env = os.environ.get("LAYERPRUNE_SHARED")
    path = Path(env).expanduser().resolve() if env else (REPO / ".." / "shared").resolve()
    if not path.is_dir():
        message = (
            f"../shared not found (looked for {path}); set LAYERPRUNE_SHARED to the folder holding "
            "data/cifar10-jpeg and models/cifar-resnet"
        )
        if os.environ.get("LAYERPRUNE_REQUIRE_SHARED") == "1":
            pytest.fail(message + " (LAYERPRUNE_REQUIRE_SHARED=1 makes this an error)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cifar10_jpeg_config(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The ``data`` config of the JPEG CIFAR-10 in ``shared_dir``, normalised as the published CIFAR ResNets
    expect, with one unpacking cache for the whole session (test.tar is unpacked once, by the first test)."""
    return {
        "name": "imagefolder",
        "root": str(shared_dir / "data" / "cifar10-jpeg"),
        "image_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "cache_dir": str(tmp_path_factory.mktemp("cifar10-jpeg-cache")),
    }
