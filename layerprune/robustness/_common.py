"""Checks shared by the adversarial and corruption evaluations."""

from __future__ import annotations

from collections.abc import Sequence


def check_normalisation(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int
) -> tuple[list[float], list[float]]:
    """Validate a model's per-channel input normalisation and return it as float lists.

    Robustness is evaluated on [0, 1] pixels with the normalisation applied last (as foolbox's preprocessing, or just
    before the forward pass), so it must be known exactly.

    Raises:
        ValueError: ``mean``/``std`` missing, of a length other than ``channels``, or ``std`` not positive.
    """
    if mean is None or std is None:
        raise ValueError(
            "model checkpoint has no normalisation metadata (preprocessing 'mean' and 'std'); robustness "
            "is evaluated on [0, 1] pixels with the normalisation applied inside, so save the checkpoint "
            "with preprocessing={'mean': [...], 'std': [...], ...} or pass mean/std explicitly"
        )
    mean_l, std_l = [float(v) for v in mean], [float(v) for v in std]
    if len(mean_l) != channels or len(std_l) != channels:
        raise ValueError(
            f"normalisation has {len(mean_l)} mean and {len(std_l)} std values for images with "
            f"{channels} channels; give one value per channel"
        )
    if any(s <= 0 for s in std_l):
        raise ValueError(f"normalisation std {std_l} must be positive")
    return mean_l, std_l
