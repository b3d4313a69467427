"""Shortcut-learning evaluation: a planted, class-keyed cue in the training set, and how much a model follows it.

This is layerprune's own documented protocol (``docs/shortcut.md``), in the style of the shortcut-susceptibility
literature (a spurious cue that predicts the label during training, e.g. arXiv 2502.09150); it is not the protocol
of the Consensus paper, whose claim that pruned models "avoid shortcut learning" comes with no published experiment.

- Cue: a ``size`` x ``size`` box at a corner of the image, filled with a class-keyed content: ``colour`` (a solid
  colour, hue ``k / num_classes`` of the HSV wheel at full saturation and value; RGB data only) or ``pattern`` (a
  black-and-white code of on/off pixels, distinct per class; works on grey-scale data such as Fashion-MNIST and the
  digits, and on RGB, where the three channels are equal). ``auto`` picks colour for RGB and pattern for grey.
- Biased training set: image ``i`` (its index in the data set's split) with label ``y`` gets the cue of ``y`` with
  probability ``rho``; otherwise no cue (``unaligned: none``) or the cue of a uniformly drawn other class
  (``unaligned: other``). Each draw comes from ``numpy.random.default_rng([seed, stream, i])``, so it depends only on
  (seed, index), never on the order images are read, the epoch, the worker or the subset size.
- Test sets, all from the same seeded subset of the clean test split: ``clean`` (no cue), ``aligned`` (the cue of
  the label) and ``conflicting`` (the cue of an other class drawn per (seed, index)). They differ from each other
  only inside the box.
- Metrics: clean, aligned and conflicting accuracy; reliance = aligned - conflicting accuracy; patch-follow rate =
  the share of conflicting images classified as the class whose cue they carry.

The cue is pasted after the data set's transform (resize, augmentation, normalisation), so it stays at the same
pixels under pad-and-crop and flips; its value is the cue's pixel value normalised with the data set's mean and std.
The data are generated on the fly, not cached: a draw per image is microseconds, the pasted tensors are exact
functions of (config, index), and a cached biased CIFAR-10 would copy the 150 MB training set per experiment.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from layerprune.robustness.shortcut_table import METRICS

__all__ = [
    "CUES",
    "METRICS",
    "POSITIONS",
    "SETS",
    "UNALIGNED",
    "CueSpec",
    "ShortcutDataset",
    "biased_train_set",
    "evaluate_shortcut",
    "shortcut_test_sets",
]

logger = logging.getLogger(__name__)

CUES = ("auto", "colour", "pattern")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
UNALIGNED = ("none", "other")
#: The evaluation sets, in the order of the CSV.
SETS = ("clean", "aligned", "conflicting")
# Random streams of the per-image draws (the second word of the seed), so that the training draws and the
# test draws of the same index are independent.
_TRAIN_STREAM = 0
_TEST_STREAM = 1
# The pattern codes are drawn once from this fixed seed (they are part of the protocol, like the colours).
_PATTERN_SEED = 20260
_COLOUR_CHANNELS = 3


@dataclass(frozen=True)
class CueSpec:
    """The cue of the ``shortcut`` config section.

    Attributes:
        num_classes: classes of the data set (one cue each).
        channels: image channels (1 grey, 3 RGB).
        image_size: side of the (square) images the cue is pasted into, after the data set's resize.
        cue: ``colour`` or ``pattern`` (``auto`` resolved by :meth:`from_config`).
        size: side of the box in pixels.
        position: the box's corner, one of :data:`POSITIONS`.
    """

    num_classes: int
    channels: int
    image_size: int
    cue: str
    size: int
    position: str

    def __post_init__(self) -> None:
        if self.cue not in CUES[1:]:
            raise ValueError(f"shortcut.cue={self.cue!r} is unknown; expected one of {list(CUES)}")
        if self.position not in POSITIONS:
            raise ValueError(f"shortcut.position={self.position!r} is unknown; expected one of {list(POSITIONS)}")
        if not 1 <= self.size <= self.image_size:
            raise ValueError(
                f"shortcut.size={self.size} does not fit {self.image_size}x{self.image_size} images; "
                f"choose 1 <= size <= {self.image_size}"
            )
        if self.cue == "colour" and self.channels != _COLOUR_CHANNELS:
            raise ValueError(
                f"shortcut.cue=colour needs RGB images, but the data have {self.channels} channel(s); "
                "use cue: pattern (or auto) for grey-scale data"
            )
        if self.cue == "pattern" and 2 ** (self.size * self.size) - 1 < self.num_classes:
            raise ValueError(
                f"shortcut.size={self.size} leaves {2 ** (self.size * self.size) - 1} distinct patterns for "
                f"{self.num_classes} classes; use a larger size"
            )

    @classmethod
    def from_config(cls, section: Mapping[str, Any], num_classes: int, channels: int, image_size: int) -> CueSpec:
        """The cue of a (schema-validated) ``shortcut`` section for a data set's shape; ``auto`` resolved."""
        cue = section["cue"]
        if cue == "auto":
            cue = "colour" if channels == _COLOUR_CHANNELS else "pattern"
        return cls(num_classes, channels, image_size, cue, int(section["size"]), section["position"])

    def box(self) -> tuple[slice, slice]:
        """(rows, columns) of the box in an image."""
        last = self.image_size - self.size
        top = 0 if self.position.startswith("top") else last
        left = 0 if self.position.endswith("left") else last
        return slice(top, top + self.size), slice(left, left + self.size)

    def cues(self) -> torch.Tensor:
        """Every class's cue in [0, 1] pixel values: ``(num_classes, channels, size, size)``."""
        k = self.num_classes
        if self.cue == "colour":
            rgb = torch.tensor([colorsys.hsv_to_rgb(c / k, 1.0, 1.0) for c in range(k)], dtype=torch.float32)
            return rgb[:, :, None, None].expand(k, self.channels, self.size, self.size).clone()
        codes = _pattern_codes(k, self.size)
        return codes[:, None].expand(k, self.channels, self.size, self.size).clone()


def _pattern_codes(num_classes: int, size: int) -> torch.Tensor:
    """``num_classes`` distinct, non-empty binary ``size`` x ``size`` codes, as far apart (Hamming) as a greedy
    draw from a fixed seed gets them: ``(num_classes, size, size)`` of 0.0 / 1.0."""
    n = size * size
    rng = np.random.default_rng(_PATTERN_SEED)
    codes: list[np.ndarray] = []
    for min_distance in range(max(1, n // 3), 0, -1):  # relax the spacing until enough codes are found
        codes = []
        for _ in range(200 * num_classes):
            candidate = rng.integers(0, 2, size=n).astype(bool)
            if candidate.any() and all(np.count_nonzero(candidate != c) >= min_distance for c in codes):
                codes.append(candidate)
                if len(codes) == num_classes:
                    return torch.from_numpy(np.stack(codes).reshape(num_classes, size, size).astype(np.float32))
    raise ValueError(f"found only {len(codes)} distinct {size}x{size} patterns for {num_classes} classes")


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _other_class(rng: np.random.Generator, label: int, num_classes: int) -> int:
    """A class drawn uniformly from the ``num_classes - 1`` classes other than ``label``."""
    return (label + 1 + int(rng.integers(num_classes - 1))) % num_classes


def _source_index(dataset: Dataset, index: int) -> int:
    """The index of item ``index`` in the underlying split (through nested ``Subset``s): the cue's draws are keyed
    by it, so a subset of the training set carries the same cue on each image as the whole set."""
    while isinstance(dataset, Subset):
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    return index


class ShortcutDataset(Dataset):
    """A view of a data set of normalised ``(C, H, W)`` images with the class-keyed cue pasted in.

    Args:
        dataset: yields ``(image, label)``; images normalised with ``mean``/``std`` (as ``build_dataset`` gives).
        spec: the cue.
        mean, std: the data set's per-channel normalisation (the cue is normalised the same way).
        mode: ``"train"`` (the biased training set: the label's cue with probability ``rho``), ``"clean"``,
            ``"aligned"`` or ``"conflicting"`` (the test sets of :data:`SETS`).
        rho: probability of the label's cue in ``"train"`` mode, in [0, 1].
        unaligned: in ``"train"`` mode, what the other images get: ``"none"`` or ``"other"`` (another class's cue).
        seed: seed of the per-image draws.
    """

    def __init__(
        self,
        dataset: Dataset,
        spec: CueSpec,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        mode: str,
        rho: float = 1.0,
        unaligned: str = "none",
        seed: int = 0,
    ) -> None:
        if mode not in ("train", *SETS):
            raise ValueError(f"mode={mode!r} is unknown; expected 'train' or one of {list(SETS)}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"shortcut.rho={rho!r} is out of range; expected a probability in [0, 1]")
        if unaligned not in UNALIGNED:
            raise ValueError(f"shortcut.unaligned={unaligned!r} is unknown; expected one of {list(UNALIGNED)}")
        if len(mean) != spec.channels or len(std) != spec.channels:
            raise ValueError(f"mean/std need {spec.channels} values, got {list(mean)} / {list(std)}")
        self.dataset = dataset
        self.spec = spec
        self.mode = mode
        self.rho = float(rho)
        self.unaligned = unaligned
        self.seed = int(seed)
        self.rows, self.cols = spec.box()
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.normalised_cues = (spec.cues() - m) / s  # (classes, C, size, size)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def cue_class(self, index: int, label: int) -> int | None:
        """The class whose cue item ``index`` (with this label) carries, or None for no cue."""
        source = _source_index(self.dataset, index)
        k = self.spec.num_classes
        if self.mode == "clean":
            return None
        if self.mode == "aligned":
            return label
        if self.mode == "conflicting":
            return _other_class(_rng(self.seed, _TEST_STREAM, source), label, k)
        rng = _rng(self.seed, _TRAIN_STREAM, source)
        if rng.random() < self.rho:
            return label
        return _other_class(rng, label, k) if self.unaligned == "other" else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        label = int(label)
        cue = self.cue_class(index, label)
        if cue is not None:
            if tuple(image.shape[-2:]) != (self.spec.image_size, self.spec.image_size):
                raise ValueError(
                    f"image of shape {tuple(image.shape)} but the cue is for {self.spec.image_size}x"
                    f"{self.spec.image_size} images; build the cue with the data set's image_size"
                )
            image = image.clone()
            image[:, self.rows, self.cols] = self.normalised_cues[cue]
        return image, label

    def cue_classes(self) -> np.ndarray:
        """Per item, the class of its cue, or -1 for none: ``(n,)`` int (reads every label)."""
        labels = _labels(self.dataset)
        return np.array([-1 if (c := self.cue_class(i, int(y))) is None else c for i, y in enumerate(labels)])


def _labels(dataset: Dataset) -> list[int]:
    """Every label of a data set, from ``targets`` when the data set (or a ``Subset``'s base) has them."""
    if isinstance(dataset, Subset):
        base = _labels(dataset.dataset)
        return [base[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


def _spec(data_cfg: Mapping[str, Any], section: Mapping[str, Any]) -> tuple[CueSpec, Any]:
    from layerprune.data import dataset_info

    info = dataset_info(dict(data_cfg), "test")
    return CueSpec.from_config(section, info.num_classes, info.in_channels, info.image_size), info


def biased_train_set(data_cfg: Mapping[str, Any], section: Mapping[str, Any]) -> ShortcutDataset:
    """The configured data set's training split (with its augmentation when ``data.augment``) carrying the cue.

    Args:
        data_cfg: the config's ``data`` section; section: its ``shortcut`` section (schema-validated).
    """
    from layerprune.data import build_dataset

    spec, info = _spec(data_cfg, section)
    train = build_dataset(dict(data_cfg), "train", augment=data_cfg.get("augment", True))
    return ShortcutDataset(
        train, spec, info.mean, info.std,
        mode="train", rho=section["rho"], unaligned=section["unaligned"], seed=section["seed"],
    )  # fmt: skip


def shortcut_test_sets(data_cfg: Mapping[str, Any], section: Mapping[str, Any]) -> dict[str, ShortcutDataset]:
    """The clean, aligned and conflicting views (:data:`SETS`) of the same seeded subset of the test split
    (``shortcut.test_size`` images, or all when null)."""
    from layerprune.data import build_dataset, seeded_subset

    spec, info = _spec(data_cfg, section)
    test: Dataset = build_dataset(dict(data_cfg), "test")
    if section["test_size"] is not None:
        test = seeded_subset(test, int(section["test_size"]), int(section["seed"]))
    return {name: ShortcutDataset(test, spec, info.mean, info.std, mode=name, seed=section["seed"]) for name in SETS}


@torch.inference_mode()
def _predict(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> np.ndarray:
    was_training = model.training
    model.eval().to(device)
    predictions = []
    try:
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            predictions.append(model(x.to(device)).argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(predictions).numpy()


def evaluate_shortcut(
    model: nn.Module,
    sets: Mapping[str, ShortcutDataset],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The shortcut metrics of ``model`` on the sets of :func:`shortcut_test_sets`.

    Returns:
        Tidy frame with columns ``metric`` (:data:`METRICS`), ``value`` (fractions in [0, 1]; reliance in
        [-1, 1]) and ``n`` (test images).
    """
    missing = [name for name in SETS if name not in sets]
    if missing:
        raise ValueError(f"shortcut evaluation needs the sets {list(SETS)}; missing {missing}")
    labels = np.asarray(_labels(sets["clean"].dataset))
    n = len(labels)
    device = torch.device(device)
    accuracy, follow = {}, float("nan")
    for name in SETS:
        predicted = _predict(model, sets[name], batch_size, device)
        accuracy[name] = float(np.mean(predicted == labels))
        if name == "conflicting":
            follow = float(np.mean(predicted == sets[name].cue_classes()))
    values = {
        "clean_accuracy": accuracy["clean"],
        "aligned_accuracy": accuracy["aligned"],
        "conflicting_accuracy": accuracy["conflicting"],
        "reliance": accuracy["aligned"] - accuracy["conflicting"],
        "patch_follow_rate": follow,
    }
    logger.info("shortcut metrics on %d test images: %s", n, {k: round(v, 4) for k, v in values.items()})
    return pd.DataFrame({"metric": list(METRICS), "value": [values[m] for m in METRICS], "n": n})
