"""Input validation and arithmetic precision shared by the similarity metrics.

One place turns user input into matrices and decides in which precision the expensive products run.
The CKA code follows one rule (``precision`` below): the products that cost O(b^2 d) or O(b d^2) (Gram
matrices, feature-space cross-covariances) run in the *compute dtype*, float32 by default; everything summed
from them (HSIC terms, the running sums over batches) is accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch

__all__ = [
    "PRECISIONS",
    "ArrayLike",
    "Precision",
    "as_matrix",
    "as_pair",
    "centre",
    "compute_dtype",
    "matmul_precision",
]

ArrayLike = torch.Tensor | np.ndarray

#: Arithmetic precisions of the CKA products (the ``similarity.precision`` config key).
PRECISIONS = ("float32", "float64", "tf32", "bfloat16")
Precision = Literal["float32", "float64", "tf32", "bfloat16"]


def compute_dtype(precision: Precision | None, *dtypes: torch.dtype) -> torch.dtype:
    """The dtype the products run in, for features of ``dtypes``.

    ``None`` means the features' own precision: float64 when any input is float64, float32 otherwise (half
    precision inputs are widened to float32, never multiplied in half precision unless asked for).
    ``"tf32"`` multiplies float32 tensors (TF32 only changes how a GPU rounds their products, see
    :func:`matmul_precision`); ``"bfloat16"`` multiplies bfloat16 tensors.

    Raises:
        ValueError: on an unknown precision.
    """
    if precision is None:
        return torch.float64 if torch.float64 in dtypes else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)} (or None)")
    return {"float64": torch.float64, "bfloat16": torch.bfloat16}.get(precision, torch.float32)


@contextmanager
def matmul_precision(precision: Precision | None) -> Iterator[None]:
    """Let float32 matrix products use TF32 inside the block when ``precision == "tf32"`` (restored after).

    ``torch.set_float32_matmul_precision("high")`` is torch's device-agnostic switch: CUDA GPUs from Ampere on
    then round the inputs of float32 products to TF32 (10-bit mantissa); on a CPU it changes nothing here.
    Any other precision leaves the setting alone.
    """
    if precision != "tf32":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def as_matrix(
    x: ArrayLike, name: str, *, dtype: torch.dtype | None = torch.float64, check_finite: bool = True
) -> torch.Tensor:
    """Return ``x`` as a (n, d) matrix on its own device, in ``dtype``.

    Representations of convolutional units come as (n, C, H, W); every trailing dimension is
    flattened into features, which is what CKA on unit outputs means in Kornblith et al. (2019).

    Args:
        x: (n, ...) tensor or array, one row per sample.
        name: name of the argument, used in error messages.
        dtype: the dtype returned; None keeps a floating input's dtype (other inputs become float32).
        check_finite: check for NaN and infinite values here (callers that centre with :func:`centre` get the
            same check from it without another pass over the data).

    Returns:
        (n, d) tensor (a copy when the dtype changes; never modified in place by callers).

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
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.float32
    t = t.reshape(t.shape[0], -1).to(dtype)
    if t.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)})")
    if check_finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the activations that produced it")
    return t


def centre(x: torch.Tensor, dtype: torch.dtype, *, exact_mean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred copy of ``x`` (n, d) in ``dtype``, and the column means.

    Two ways, both one subtraction pass in the compute dtype (the centred values carry the features' own
    relative precision):

    * ``exact_mean=False``: the column sums are one float32 matrix-vector product 1'X, a single read of X (a
      float64 cast of X costs about five times more on a CPU). Summing n values of mean m in float32 can leave a
      residual shift of up to ~n u |m| (u = 2^-24), large when |m| is far above the spread; the Gram form
      removes that residue exactly afterwards by double-centring its b x b Gram matrix in float64
      (:func:`layerprune.similarity.cka.hsic_statistics`), so it costs the Gram form nothing.
    * ``exact_mean=True``: the column sums are accumulated in float64, leaving only the rounding of the mean
      itself; for the feature form, whose O(n d) passes are cheap next to its O(n d^2) products.

    For bfloat16 the centring runs in float32 and only the result is rounded. A constant column centres to
    exact zeros.

    Args:
        x: (n, d) features of any floating dtype.
        dtype: dtype of the centred copy (the products' compute dtype).
        exact_mean: accumulate the column sums in float64.

    Returns:
        ``(centred, mean)``: (n, d) in ``dtype`` and the (1, d) means in float32 (float64 for float64). A NaN or
        infinite value in a column makes its mean non-finite: callers check the means, not the whole of ``x``.
    """
    work = torch.float32 if dtype == torch.bfloat16 else dtype
    xw = x.to(work)
    if exact_mean:
        mean = (xw.sum(dim=0, keepdim=True, dtype=torch.float64) / xw.shape[0]).to(work)
    else:
        mean = torch.full((1, xw.shape[0]), 1.0 / xw.shape[0], dtype=work, device=xw.device) @ xw
    return (xw - mean).to(dtype), mean


def as_pair(
    x: ArrayLike,
    y: ArrayLike,
    *,
    min_samples: int = 2,
    dtype: torch.dtype | None = torch.float64,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two representations of the same samples and return them as matrices.

    Args:
        x: (n, ...) representation.
        y: (n, ...) representation of the same n samples, in the same order.
        min_samples: the smallest n the calling estimator is defined for.
        dtype: the dtype returned (None: each input's own floating dtype, see :func:`as_matrix`).
        check_finite: see :func:`as_matrix`.

    Returns:
        ``(x, y)`` as (n, p) and (n, q) tensors on ``x``'s device.

    Raises:
        ValueError: when the sample counts differ or are below ``min_samples``.
    """
    xm = as_matrix(x, "X", dtype=dtype, check_finite=check_finite)
    ym = as_matrix(y, "Y", dtype=dtype, check_finite=check_finite).to(xm.device)
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
