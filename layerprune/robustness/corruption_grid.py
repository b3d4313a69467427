"""A PNG grid of corrupted copies of a few images, to check the corruptions by eye."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from layerprune.io import write_with
from layerprune.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    check_images,
    check_name_severity,
    corrupt_dataset,
)

__all__ = ["draw_corruption_grid", "save_corruption_grid"]


def save_corruption_grid(
    images: np.ndarray,
    path: str | os.PathLike[str],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
) -> None:
    """Save a PNG grid showing sample images under each corruption at each severity, to check them by eye.

    One row per corruption; for each sample image a block of columns: the clean image, then one per severity.

    Args:
        images: uint8 ``(N, H, W, C)``, a few images (2-4 reads well).
        path: output PNG; written atomically.
        corruptions: names to show, all 15 when None.
        severities: severities to show.
        seed: base seed, as for ``corrupt_dataset``.
    """
    check_images(images, 4, "images")
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for name in names:
        for severity in severities:
            check_name_severity(name, severity)
    rows = {name: [corrupt_dataset(images, name, s, seed) for s in severities] for name in names}
    draw_corruption_grid(images, rows, severities, path)


def draw_corruption_grid(
    clean: np.ndarray,
    rows: Mapping[str, Sequence[np.ndarray]],
    severities: Sequence[int],
    path: str | os.PathLike[str],
) -> None:
    """Save a PNG grid of given corrupted copies: one row per corruption, per image the clean one then each severity.

    Args:
        clean: uint8 ``(N, H, W, C)``, a few clean images.
        rows: corruption name -> one uint8 ``(N, H, W, C)`` batch per severity, the copies of ``clean``.
        severities: the severities of each row's batches, in order (column titles).
        path: output PNG; written atomically.
    """
    check_images(clean, 4, "clean")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(rows)
    if not names:
        raise ValueError("no corruption to draw; pass at least one row")
    for name in names:
        if len(rows[name]) != len(severities):
            raise ValueError(f"row {name!r} has {len(rows[name])} batches for {len(severities)} severities")
    n_img, n_cols = len(clean), len(clean) * (len(severities) + 1)
    fig, axes = plt.subplots(len(names), n_cols, figsize=(0.9 * n_cols + 1.2, 0.9 * len(names) + 0.4), squeeze=False)
    gray = clean.shape[-1] == 1
    for r, name in enumerate(names):
        shown = [clean, *rows[name]]
        for i in range(n_img):
            for k, batch in enumerate(shown):
                ax = axes[r, i * (len(severities) + 1) + k]
                img = batch[i]
                ax.imshow(
                    img[..., 0] if gray else img,
                    cmap="gray" if gray else None,
                    vmin=0,
                    vmax=255,
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("clean" if k == 0 else f"s{severities[k - 1]}", fontsize=7)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout(pad=0.2)
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
