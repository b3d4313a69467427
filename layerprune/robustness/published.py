"""The published robustness test sets, in the layouts their authors ship: checks and loaders (numpy only).

- CIFAR-10-C (Hendrycks & Dietterich, 2019, https://zenodo.org/records/2535967; CIFAR-100-C:
  https://zenodo.org/records/3555552): a folder with ``labels.npy`` and one ``<corruption>.npy`` per corruption,
  uint8 ``(5 * 10000, 32, 32, 3)``: the 10,000 test images at severity 1, then at severity 2, ... 5, each block in
  the order of the clean CIFAR-10 test set (``labels.npy`` repeats the test labels once per severity).
- CIFAR-10.1 (Recht et al., 2019, https://github.com/modestyachts/CIFAR-10.1, ``datasets/``): ``cifar10.1_v6_data.npy``
  uint8 ``(2000, 32, 32, 3)`` and ``cifar10.1_v6_labels.npy`` ``(2000,)``.
- CIFAR-10.2 (Lu et al., 2020, https://github.com/modestyachts/cifar-10.2): ``cifar102_test.npz`` with arrays
  ``images`` uint8 ``(2000, 32, 32, 3)`` and ``labels`` ``(2000,)``.

Nothing is downloaded: a config names the folder holding the files. The checks here import no torch, so the config
check (``layerprune.config.check_robustness``) can run them before any job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10C_SEVERITIES",
    "CIFAR10C_URL",
    "OOD_SETS",
    "OodFormat",
    "check_cifar10c_root",
    "check_ood_set",
    "load_ood_set",
    "read_cifar10c",
]

CIFAR10C_URL = "https://zenodo.org/records/2535967 (CIFAR-100-C: https://zenodo.org/records/3555552)"
#: Severity blocks stacked in each ``<corruption>.npy``.
CIFAR10C_SEVERITIES = 5


@dataclass(frozen=True)
class OodFormat:
    """The published files of a natural-distribution-shift test set, relative to its folder."""

    files: tuple[str, ...]
    url: str


#: Natural-distribution-shift test sets with CIFAR-10's classes, by config name.
OOD_SETS: dict[str, OodFormat] = {
    "cifar10.1": OodFormat(
        ("cifar10.1_v6_data.npy", "cifar10.1_v6_labels.npy"), "https://github.com/modestyachts/CIFAR-10.1"
    ),
    "cifar10.2": OodFormat(("cifar102_test.npz",), "https://github.com/modestyachts/cifar-10.2"),
}


def check_cifar10c_root(root: str | Path, corruptions: Sequence[str]) -> None:
    """Check that ``root`` holds ``labels.npy`` and ``<name>.npy`` for every corruption (existence only).

    Raises:
        FileNotFoundError: naming the folder, the missing files and where to get them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"robustness.cifar10c_root: folder {str(root)!r} does not exist; download CIFAR-10-C from "
            f"{CIFAR10C_URL}, unpack it and point cifar10c_root at the folder holding labels.npy"
        )
    missing = [f for f in ["labels.npy", *(f"{name}.npy" for name in corruptions)] if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"robustness.cifar10c_root: {str(root)!r} lacks {missing}; it must hold the CIFAR-10-C files "
            f"labels.npy and <corruption>.npy ({CIFAR10C_URL}), or drop the missing names from robustness.corruptions"
        )


def read_cifar10c(
    root: str | Path, corruptions: Sequence[str], severities: Sequence[int], size: int
) -> tuple[np.ndarray, list[tuple[str, int]], np.ndarray]:
    """The first ``size`` images of each (corruption, severity) block of the real CIFAR-10-C files.

    Returns:
        ``labels`` int64 ``(size,)``, ``keys`` ``[(corruption, severity), ...]`` and ``corrupted`` uint8
        ``(len(keys), size, 32, 32, 3)``.

    Raises:
        FileNotFoundError: a missing file (see :func:`check_cifar10c_root`).
        ValueError: files not in the published layout, or ``size`` larger than a severity block.
    """
    root = Path(root)
    check_cifar10c_root(root, corruptions)
    labels_all = np.load(root / "labels.npy", mmap_mode="r")
    keys: list[tuple[str, int]] = []
    blocks: list[np.ndarray] = []
    per = None
    for name in corruptions:
        path = root / f"{name}.npy"
        data = np.load(path, mmap_mode="r")
        if data.ndim != 4 or data.dtype != np.uint8 or len(data) % CIFAR10C_SEVERITIES:
            raise ValueError(
                f"{path} holds {data.dtype} {data.shape}; CIFAR-10-C files are uint8 "
                f"({CIFAR10C_SEVERITIES} x N, H, W, C), the N test images at each severity in turn"
            )
        per = len(data) // CIFAR10C_SEVERITIES
        if len(labels_all) not in (per, len(data)):
            raise ValueError(f"{root / 'labels.npy'} has {len(labels_all)} labels for {len(data)} images in {path}")
        if size > per:
            raise ValueError(f"robustness.corruption_size={size} exceeds the {per} images per severity in {path}")
        for severity in severities:
            if not 1 <= severity <= CIFAR10C_SEVERITIES:
                raise ValueError(f"severity {severity} is not in 1..{CIFAR10C_SEVERITIES}")
            keys.append((name, int(severity)))
            blocks.append(np.asarray(data[(severity - 1) * per : (severity - 1) * per + size]))
    if not blocks:
        raise ValueError("no corruption or severity given; name at least one of each")
    return np.asarray(labels_all[:size], dtype=np.int64), keys, np.stack(blocks)


def _check_ood_name(name: str) -> OodFormat:
    if name not in OOD_SETS:
        raise ValueError(f"unknown natural-shift test set {name!r}; expected one of {sorted(OOD_SETS)}")
    return OOD_SETS[name]


def check_ood_set(name: str, path: str | Path) -> None:
    """Check that folder ``path`` holds the published files of test set ``name`` (existence only).

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: naming the path, the missing files and where to get them.
    """
    fmt = _check_ood_name(name)
    root = Path(path)
    missing = [f for f in fmt.files if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"robustness.ood_sets {name}: {str(root)!r} lacks {missing}; download {name} from {fmt.url} and point "
            "its path at the folder holding those files"
        )


def load_ood_set(name: str, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 32, 32, 3)`` and labels int64 ``(N,)`` of test set ``name`` from folder ``path``.

    Raises:
        ValueError: an unknown name, or files not in the published layout.
        FileNotFoundError: see :func:`check_ood_set`.
    """
    check_ood_set(name, path)
    root = Path(path)
    fmt = OOD_SETS[name]
    if name == "cifar10.2":
        file = root / fmt.files[0]
        with np.load(file, allow_pickle=False) as z:
            if not {"images", "labels"} <= set(z.files):
                raise ValueError(f"{file} has arrays {sorted(z.files)}; CIFAR-10.2's test file holds images, labels")
            images, labels = z["images"], z["labels"]
    else:
        file = root / fmt.files[0]
        images, labels = np.load(file, allow_pickle=False), np.load(root / fmt.files[1], allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name} images in {file} are {images.dtype} {images.shape}; expected uint8 (N, 32, 32, 3)")
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} in {root} has {len(labels)} {labels.dtype} labels for {len(images)} images")
    return images, labels.astype(np.int64)
