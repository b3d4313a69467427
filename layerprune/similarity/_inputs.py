"""Input validation shared by the similarity metrics: one place that turns user input into float64 matrices."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def as_matrix(x: ArrayLike, name: str) -> torch.Tensor:
    """Return ``x`` as a float64 matrix of shape (n, d) on its own device.

    Representations of convolutional units come as (n, C, H, W); every trailing dimension is
    flattened into features, which is what CKA on unit outputs means in Kornblith et al. (2019).

    Args:
        x: (n, ...) tensor or array, one row per sample.
        name: name of the argument, used in error messages.

    Returns:
        (n, d) float64 tensor (a copy when the dtype changes; never modified in place by callers).

    Raises:
        ValueError: when ``x`` has fewer than 2 dimensions, no features, or non-finite values.
        TypeError: when ``x`` is neither a torch tensor nor a numpy array.
    """
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if t.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, ...) with at least 2 dimensions, got shape {tuple(t.shape)}; "
            "add a feature axis, e.g. x[:, None]"
        )
    t = t.reshape(t.shape[0], -1).to(torch.float64)
    if t.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the activations that produced it")
    return t


def as_pair(x: ArrayLike, y: ArrayLike, *, min_samples: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two representations of the same samples and return them as float64 matrices.

    Args:
        x: (n, ...) representation.
        y: (n, ...) representation of the same n samples, in the same order.
        min_samples: the smallest n the calling estimator is defined for.

    Returns:
        ``(x, y)`` as (n, p) and (n, q) float64 tensors on ``x``'s device.

    Raises:
        ValueError: when the sample counts differ or are below ``min_samples``.
    """
    xm = as_matrix(x, "X")
    ym = as_matrix(y, "Y").to(xm.device)
    if xm.shape[0] != ym.shape[0]:
        raise ValueError(
            f"X and Y must hold the same samples: X has {xm.shape[0]} rows, Y has {ym.shape[0]}; "
            "pass representations of the same inputs in the same order"
        )
    if xm.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples for this estimator, got {xm.shape[0]}")
    return xm, ym


def as_numpy_pair(x: ArrayLike, y: ArrayLike, *, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`as_pair` but returns float64 numpy arrays, for metrics built on scipy."""
    xm, ym = as_pair(x, y, min_samples=min_samples)
    return xm.cpu().numpy(), ym.cpu().numpy()
