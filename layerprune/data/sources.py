"""Data sets by name, shaped like torchvision's: ``(image, label)`` pairs over a local root.

Nothing downloads unless the config says ``download: true``; a missing data set is an
error that names the path and how to get the data.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "SOURCES",
    "ArrayImageDataset",
    "ArrayTransform",
    "DatasetInfo",
    "build_dataset",
    "dataset_info",
    "seeded_subset",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Static facts about a data source; ``mean``/``std`` are per channel on [0, 1] pixels."""

    num_classes: int | None
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_root: str | None
    flip: bool  # horizontal flips are a valid augmentation (not for digits and clothes)


SOURCES: dict[str, Source] = {
    # Statistics of the 8x8 digits scaled to [0, 1] (the whole set: 0.305, 0.376).
    "digits": Source(10, 1, 16, (0.305,), (0.376,), None, False),
    "fashion-mnist": Source(10, 1, 28, (0.2860,), (0.3530,), "/usr/share/datasets/fashion-mnist", False),
    "cifar10": Source(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "resources/cifar10", True),
    "cifar100": Source(100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "resources/cifar100", True),
    "imagefolder": Source(None, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None, True),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def preprocessing(self) -> dict:
        """The ``preprocessing`` entry of a checkpoint."""
        return {
            "dataset": self.name,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": [self.in_channels, self.image_size, self.image_size],
            "num_classes": self.num_classes,
        }


def _section(cfg: dict) -> dict:
    """The data section with the schema's defaults filled in (a ConfigError names a bad key): library callers may
    pass only what they change, e.g. ``{"name": "digits"}``."""
    from layerprune.config import validate_section

    return validate_section("data", cfg)


def _source(cfg: dict) -> Source:
    name = cfg["name"]
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[name]


def dataset_info(cfg: dict, split: str = "train") -> DatasetInfo:
    """Facts about the configured data set, with the config's overrides applied.

    ``split`` is the split whose sub-folders an imagefolder's classes are counted in, so
    that loading only the test split never unpacks the training set.
    """
    cfg = _section(cfg)
    source = _source(cfg)
    num_classes = cfg["num_classes"] or source.num_classes
    if num_classes is None:  # imagefolder: one class per sub-folder
        num_classes = len(_imagefolder_dataset(cfg, split, None).classes)
    mean = tuple(cfg["mean"] or source.mean)
    std = tuple(cfg["std"] or source.std)
    if len(mean) != source.in_channels or len(std) != source.in_channels:
        raise ValueError(f"data.mean/data.std need {source.in_channels} values for {cfg['name']}, got {mean} / {std}")
    return DatasetInfo(
        name=cfg["name"],
        num_classes=int(num_classes),
        in_channels=source.in_channels,
        image_size=int(cfg["image_size"] or source.image_size),
        mean=mean,
        std=std,
    )


def _transform(cfg: dict, info: DatasetInfo, *, augment: bool, normalize: bool) -> Callable:
    """torchvision's transforms for the data sets it reads as PIL images (CIFAR, image folders)."""
    from torchvision import transforms

    size = info.image_size
    steps: list = []
    if cfg["name"] == "imagefolder" and size >= 64:  # ImageNet protocol
        if augment:
            steps += [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
        else:
            steps += [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)]
    else:  # small images: pad-and-crop (+ flip where the classes allow it)
        steps.append(transforms.Resize((size, size)))
        if augment:
            steps.append(transforms.RandomCrop(size, padding=_crop_padding(size)))
            if _source(cfg).flip:
                steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())
    if normalize:
        steps.append(transforms.Normalize(info.mean, info.std))
    return transforms.Compose(steps)


def _crop_padding(size: int) -> int:
    """Padding of the pad-and-crop augmentation: 4 pixels at CIFAR's 32."""
    return max(1, size // 8)


class ArrayTransform:
    """Resize, pad-and-crop, flip and normalise one uint8 image array, as torchvision's
    ``Resize``, ``RandomCrop(padding)``, ``RandomHorizontalFlip``, ``ToTensor`` and
    ``Normalize`` do for the small-image data sets.

    Written here for the in-memory data sets (digits, Fashion-MNIST) because importing
    torchvision pulls in ``torch._dynamo``: about 2 s, as long as torch's own import, paid by
    every workflow job, most of which never need anything else from torchvision. The random
    draws are torchvision's (``torch.randint`` for the crop offsets, ``torch.rand`` for the
    flip, from torch's global generator), so seeding and resumed training behave the same.

    Args:
        size: output side.
        mean, std: per-channel statistics on [0, 1] pixels, or ``None`` for no normalisation.
        augment: apply the random crop (and flip, when ``flip``).
        flip: horizontal flips are a valid augmentation for these classes.
    """

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        *,
        augment: bool = False,
        flip: bool = False,
    ) -> None:
        self.size = size
        self.padding = _crop_padding(size)
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)
        self.augment = augment
        self.flip = flip

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """``image``: uint8 (H, W) or (H, W, C). Returns float (C, size, size)."""
        x = torch.from_numpy(np.array(image))  # a copy: arrays read from files can be read-only
        x = (x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)).float().div_(255.0)
        if tuple(x.shape[1:]) != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        if self.augment:
            p = self.padding
            x = F.pad(x, (p, p, p, p))
            top = int(torch.randint(0, 2 * p + 1, size=(1,)).item())
            left = int(torch.randint(0, 2 * p + 1, size=(1,)).item())
            x = x[:, top : top + self.size, left : left + self.size]
            if self.flip and torch.rand(1).item() < 0.5:
                x = x.flip(-1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x


class ArrayImageDataset(Dataset):
    """Images held in memory as uint8 arrays (N, H, W) or (N, H, W, C), with int labels.

    ``transform`` gets one image as its uint8 array (for example an :class:`ArrayTransform`).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(t) for t in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def _digits(cfg: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (bundled, offline), split by a seeded stratified shuffle."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)),
        test_size=cfg["test_fraction"],
        random_state=cfg["split_seed"],
        stratify=bunch.target,
    )
    idx = train_idx if split == "train" else test_idx
    return images[idx], bunch.target[idx]


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format): a magic number giving dtype and rank, then sizes.

    Written here because torchvision's reader wants its own folder layout and unpacked files,
    while Debian ships the original gzipped files.
    """
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(cfg: dict, split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"Fashion-MNIST file {candidates[0]} not found; install it with "
                "`apt-get install dataset-fashion-mnist` (Debian) or set data.root to a folder "
                "holding the four *-idx*-ubyte.gz files"
            )
        arrays.append(_read_idx(path))
    return arrays[0], arrays[1]


def _cifar(cfg: dict, split: str, root: Path, transform: Callable) -> Dataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if cfg["name"] == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=split == "train", transform=transform, download=cfg["download"])
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{cfg['name']} not found under {root} ({err}); put the python version of the data set "
            f"there, or set data.download: true to let torchvision fetch it"
        ) from None


def _unpack(tar_path: Path, cache: Path) -> Path:
    """Unpacks ``tar_path`` once into ``cache`` (atomically: a temp folder, then rename)."""
    target = cache / tar_path.stem
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{tar_path.stem}."))
    try:
        log.info("unpacking %s into %s", tar_path, cache)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")
        inner = tmp / tar_path.stem
        try:
            os.replace(inner if inner.is_dir() else tmp, target)
        except OSError:
            # Another job unpacked the same archive meanwhile (the rename onto its
            # non-empty folder fails): its copy is complete, so use it and drop ours.
            if not target.is_dir():
                raise
            log.info("%s was unpacked by another job meanwhile; using it", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _imagefolder_dataset(cfg: dict, split: str, transform: Callable | None) -> Dataset:
    from torchvision import datasets

    root = Path(cfg["root"]) if cfg["root"] else None
    if root is None:
        raise ValueError("data.root is required for data.name: imagefolder")
    sub = cfg["train_dir"] if split == "train" else cfg["test_dir"]
    folder = root / sub
    if not folder.is_dir():
        tar = root / f"{sub}.tar"
        if not tar.is_file():
            raise FileNotFoundError(
                f"image folder {folder} (or {tar}) not found; set data.root to a folder with "
                f"'{sub}/<class>/<image>' (e.g. ImageNet's train/ and val/, or ../shared/data/cifar10-jpeg)"
            )
        folder = _unpack(tar, Path(cfg["cache_dir"]) / root.name)
    return datasets.ImageFolder(str(folder), transform=transform)


def build_dataset(cfg: dict, split: str, *, augment: bool = False, normalize: bool = True) -> Dataset:
    """The configured data set's ``split`` ("train" or "test").

    Args:
        cfg: the ``data`` section of the config.
        split: ``"train"`` or ``"test"``.
        augment: apply the data set's training augmentation.
        normalize: subtract the mean and divide by the std; ``False`` gives pixels in [0, 1]
            (for attacks, which take normalisation as model preprocessing).

    Raises:
        ConfigError: the section does not match the schema (unknown key, bad value).
        ValueError: unknown split.
        FileNotFoundError: the data are not where the config says, with how to get them.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg = _section(cfg)
    if cfg["name"] == "text":  # windows of tokens for a causal language model
        from layerprune.lm.text import text_dataset

        return _limited(text_dataset(cfg, split), cfg, split)
    info = dataset_info(cfg, split)
    name = cfg["name"]
    source = SOURCES[name]
    root = Path(cfg["root"] or source.default_root or ".")
    if name in ("digits", "fashion-mnist"):
        array_transform = ArrayTransform(
            info.image_size,
            info.mean if normalize else None,
            info.std if normalize else None,
            augment=augment,
            flip=source.flip,
        )
        arrays = _digits(cfg, split) if name == "digits" else _fashion_mnist(cfg, split, root)
        dataset: Dataset = ArrayImageDataset(*arrays, array_transform)
    elif name in ("cifar10", "cifar100"):
        dataset = _cifar(cfg, split, root, _transform(cfg, info, augment=augment, normalize=normalize))
    else:
        transform = _transform(cfg, info, augment=augment, normalize=normalize)
        dataset = _imagefolder_dataset(cfg, split, transform)
    return _limited(dataset, cfg, split)


def _limited(dataset: Dataset, cfg: dict, split: str) -> Dataset:
    """``dataset``, or its seeded subset when the config's ``<split>_subset`` is set."""
    limit = cfg[f"{split}_subset"]
    if limit:
        dataset = seeded_subset(dataset, int(limit), int(cfg["split_seed"]))
    return dataset


def seeded_subset(dataset: Dataset, size: int, seed: int) -> torch.utils.data.Subset:
    """A deterministic random subset of ``size`` items (all items, shuffled, if ``size`` >= len).

    The same (dataset, size, seed) always gives the same indices, on every machine.
    """
    n = len(dataset)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(n, generator=generator)[: min(size, n)].tolist()
    return torch.utils.data.Subset(dataset, indices)
