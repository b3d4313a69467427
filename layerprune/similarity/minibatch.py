"""Unit-by-unit linear CKA matrices in one pass over the data, with memory bounded by the batch.

Two estimators:

* ``mode="unbiased"``: minibatch CKA of Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same
  Things?", ICLR 2021 (https://arxiv.org/abs/2010.15327): the unbiased HSIC_1 of every pair of units is averaged
  over minibatches and CKA is formed from the averages, CKA_ij = mean HSIC_1(K_i, K_j) / sqrt(mean HSIC_1(K_i, K_i)
  mean HSIC_1(K_j, K_j)). Because HSIC_1 is unbiased, the result does not depend on the batch size in expectation.
* ``mode="sglp"``: what the SGLP code does (Li et al., "SGLP: A Similarity Guided Fast Layer Partition Pruning for
  Compressing Large Deep Models", 2024): biased linear CKA computed on each batch (they use 500 samples) and the CKA
  values averaged over batches. This is biased upwards at small batches; it is here to reproduce their numbers.

Efficiency: per batch each unit's b x b Gram matrix is computed once (not once per pair), and all L(L+1)/2 pairs
follow from two (L, b^2) x (b^2, L) and (L, b) x (b, L) products, because every statistic HSIC needs is an inner
product of flattened Gram matrices or of their row sums. Narrow units with many samples (width below the batch)
take the cheaper feature form instead (cross-covariances X_i'X_j; :func:`layerprune.similarity.cka.choose_forms`).

Precision: the Gram matrices and cross-covariances, which are all of the cost (b^2 d per unit), are multiplied in
the features' precision (float32 for network features; ``precision="float64"`` restores the float64 path); the
features are centred in that precision after a float64 mean, and the HSIC terms and the running sums over
batches are float64. On real ResNet-56 features the float32 matrix is within 1e-6 of the float64 one
(``tests/integration/test_similarity_precision.py``; the bound and why it holds are in docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from layerprune.similarity._inputs import PRECISIONS, ArrayLike, Precision, as_matrix
from layerprune.similarity.cka import choose_forms, hsic_statistics

__all__ = ["MODES", "SGLP_BATCH_SIZE", "MinibatchCKA", "cka_matrix", "sglp_cka_matrix"]

logger = logging.getLogger(__name__)

#: Batch size of the SGLP reference implementation.
SGLP_BATCH_SIZE = 500
#: Estimators accepted by :class:`MinibatchCKA` and :func:`cka_matrix`.
MODES = ("unbiased", "sglp")

Mode = Literal["unbiased", "sglp"]


class MinibatchCKA:
    """Accumulates the L x L linear CKA matrix of L units over minibatches.

    Feed each minibatch's representations of all units to :meth:`update` (any batch order; the same samples for
    all units within a call), then call :meth:`compute`. Memory is O(L b^2 + b max_i d_i) for batch size b
    (plus the feature-form units' b d_i), whatever the number of samples.

    Args:
        num_units: L, the number of representations compared.
        mode: ``"unbiased"`` (Nguyen et al. 2021, needs b >= 4) or ``"sglp"`` (mean of per-batch biased CKA,
            needs b >= 2).
        precision: arithmetic of the Gram matrices and cross-covariances: None (the features' precision: float32
            for float32 features), ``"float32"``, ``"float64"`` (the exact reference path), or the opt-in
            ``"tf32"`` / ``"bfloat16"`` (faster on GPUs, not within the 1e-6 bound). Sums are float64 in all cases.
        forms: per unit True for the feature form, False for the Gram form; None (default) picks the cheaper exact
            form per batch shape (:func:`layerprune.similarity.cka.choose_forms`).

    Raises:
        ValueError: on ``num_units < 1``, an unknown mode or precision, or ``forms`` of the wrong length.
    """

    def __init__(
        self,
        num_units: int,
        *,
        mode: Mode = "unbiased",
        precision: Precision | None = None,
        forms: Sequence[bool] | None = None,
    ) -> None:
        if num_units < 1:
            raise ValueError(f"num_units must be >= 1, got {num_units}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)} (or None)")
        if forms is not None and len(forms) != num_units:
            raise ValueError(f"forms has {len(forms)} entries, expected one per unit ({num_units})")
        self.num_units = num_units
        self.mode: Mode = mode
        self.precision: Precision | None = precision
        self.forms = None if forms is None else [bool(f) for f in forms]
        self._chosen: dict[tuple[int, tuple[int, ...]], list[bool]] = {}
        self._sum: torch.Tensor | None = None  # (L, L) float64: sum over batches of HSIC_1 or of CKA
        self.num_batches = 0
        self.num_samples = 0

    @property
    def min_batch_size(self) -> int:
        """Smallest batch the estimator is defined for (HSIC_1 divides by b - 3)."""
        return 4 if self.mode == "unbiased" else 2

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sum = None
        self.num_batches = 0
        self.num_samples = 0

    def _matrices(self, features: Sequence[ArrayLike]) -> tuple[list[torch.Tensor], int]:
        """Validated (b, d_i) matrices of one batch, in their own floating precision, on the first one's device."""
        if len(features) != self.num_units:
            raise ValueError(f"update() got {len(features)} representations, expected one per unit ({self.num_units})")
        mats: list[torch.Tensor] = []
        for i, f in enumerate(features):
            x = as_matrix(f, f"features[{i}]", dtype=None, check_finite=False)  # checked by hsic_statistics
            if mats and x.shape[0] != mats[0].shape[0]:
                raise ValueError(
                    f"features[{i}] has {x.shape[0]} samples but features[0] has {mats[0].shape[0]}; every unit's "
                    "representation in one update must come from the same batch"
                )
            mats.append(x.to(mats[0].device) if mats else x)
        b = mats[0].shape[0]
        if b < self.min_batch_size:
            raise ValueError(
                f"batch of {b} samples is too small for mode={self.mode!r} (need >= {self.min_batch_size}); "
                "use a larger batch or drop the last incomplete batch"
            )
        return mats, b

    def forms_for(self, widths: Sequence[int], batch_size: int) -> list[bool]:
        """The form of every unit (True = feature form) for a batch of this shape (fixed, or chosen and cached)."""
        if self.forms is not None:
            return self.forms
        key = (batch_size, tuple(widths))
        if key not in self._chosen:
            self._chosen[key] = choose_forms(widths, batch_size)
        return self._chosen[key]

    @torch.no_grad()
    def update(self, features: Sequence[ArrayLike]) -> None:
        """Add one minibatch.

        Args:
            features: L representations of the same b samples, each (b, ...) (flattened to (b, d_i)); torch
                tensors stay on their device (a GPU batch is reduced on the GPU).

        Raises:
            ValueError: on a wrong number of representations, mismatched or too small batches, non-finite values.
        """
        if len(features) == 0:
            raise ValueError("update() got no representations")
        mats, b = self._matrices(features)
        forms = self.forms_for([m.shape[1] for m in mats], b)
        stats = hsic_statistics(mats, precision=self.precision, forms=forms)
        if self.mode == "unbiased":
            value = stats.unbiased()
        else:
            inner = stats.biased()
            norms = inner.diagonal().sqrt()
            value = inner / (norms[:, None] * norms[None, :])  # 0/0 = NaN where a unit is constant on this batch
        self._sum = value if self._sum is None else self._sum + value.to(self._sum.device)
        self.num_batches += 1
        self.num_samples += b

    def compute(self) -> np.ndarray:
        """The CKA matrix over all batches seen.

        Returns:
            (L, L) float64 symmetric array. Entries involving a unit whose self-similarity is not positive (a
            constant representation, or an unbiased estimate <= 0 from too few samples) are NaN, with a warning.

        Raises:
            RuntimeError: when no batch has been added.
        """
        if self._sum is None:
            raise RuntimeError("MinibatchCKA.compute() called before any update(); feed at least one batch")
        mean = (self._sum / self.num_batches).cpu().numpy()
        mean = 0.5 * (mean + mean.T)  # exact symmetry despite floating-point summation order
        if self.mode == "sglp":
            result = mean
        else:
            diag = np.diag(mean).copy()
            bad = ~(diag > 0)
            diag[bad] = np.nan
            scale = np.sqrt(diag)
            result = mean / scale[:, None] / scale[None, :]
            np.fill_diagonal(result, np.where(bad, np.nan, 1.0))
        bad_units = np.flatnonzero(np.isnan(np.diag(result)))
        if bad_units.size:
            logger.warning(
                "CKA undefined for units %s (constant representation or non-positive self-HSIC after %d samples); "
                "their rows are NaN",
                bad_units.tolist(),
                self.num_samples,
            )
        return result


def cka_matrix(
    features: Sequence[ArrayLike],
    *,
    mode: Mode = "unbiased",
    batch_size: int | None = None,
    precision: Precision | None = None,
) -> np.ndarray:
    """Linear CKA matrix of in-memory representations, all samples at once or in contiguous batches.

    ``mode="unbiased", batch_size=None`` is the full-data unbiased linear CKA of every pair;
    ``mode="sglp", batch_size=None`` the full-data biased linear CKA. With a batch size, it is the minibatch
    estimate of :class:`MinibatchCKA`. A trailing batch smaller than the estimator's minimum is skipped (logged).
    Memory: O(L b^2) for the Gram matrices, so use a batch size for large n (b = n needs L n^2 float64) unless
    the units are narrow enough for the feature form.

    Args:
        features: L representations of the same n samples, each (n, ...).
        mode: ``"unbiased"`` or ``"sglp"`` (see the module docstring).
        batch_size: samples per batch; None for a single batch of all n samples.
        precision: arithmetic of the products (see :class:`MinibatchCKA`).

    Returns:
        (L, L) float64 array.

    Raises:
        ValueError: on an empty list, mismatched sample counts or a batch size below the estimator's minimum.
    """
    if len(features) == 0:
        raise ValueError("features is empty; pass one (n, ...) representation per unit")
    n = int(features[0].shape[0])
    for i, f in enumerate(features):
        if int(f.shape[0]) != n:
            raise ValueError(f"features[{i}] has {int(f.shape[0])} samples but features[0] has {n}")
    acc = MinibatchCKA(len(features), mode=mode, precision=precision)
    b = n if batch_size is None else int(batch_size)
    if b < acc.min_batch_size:
        raise ValueError(f"batch_size={batch_size} is below the minimum {acc.min_batch_size} for mode={mode!r}")
    for start in range(0, n, b):
        stop = min(start + b, n)
        if stop - start < acc.min_batch_size and acc.num_batches > 0:
            logger.info("skipping a trailing batch of %d samples (< %d)", stop - start, acc.min_batch_size)
            continue
        acc.update([f[start:stop] for f in features])
    return acc.compute()


def sglp_cka_matrix(
    features: Sequence[ArrayLike], *, batch_size: int = SGLP_BATCH_SIZE, precision: Precision | None = None
) -> np.ndarray:
    """SGLP's similarity matrix: biased linear CKA per batch of ``batch_size`` samples, averaged over batches.

    Args:
        features: L representations of the same n samples, each (n, ...).
        batch_size: SGLP uses 500.
        precision: arithmetic of the products (see :class:`MinibatchCKA`).

    Returns:
        (L, L) float64 array.
    """
    return cka_matrix(features, mode="sglp", batch_size=batch_size, precision=precision)
