"""Exact linear CKA between one representation and several others, streamed over batches of samples.

The ``cka`` criterion compares the intact model's features with those of every bypassed model: 1 - linear CKA
(biased, Kornblith et al. 2019, https://arxiv.org/abs/1905.00414) over all n calibration samples. For a causal LM
the samples are tokens, n = 10^5 is common, and holding every bypassed (n, d) matrix costs c n d floats. Linear CKA
over all n samples needs only d x d statistics of the column-centred X and Y:

    CKA(X, Y) = ||Xc'Yc||_F^2 / (||Xc'Xc||_F ||Yc'Yc||_F),  Xc'Yc = X'Y - n mean(X)' mean(Y),

and X'Y, X'X, Y'Y and the column sums add up over batches. :class:`StreamingLinearCKA` accumulates them, so its
memory is O(d^2) per compared representation whatever n, and its result is the full-data value, not an estimate.
(:class:`layerprune.similarity.MinibatchCKA` averages the unbiased HSIC of each batch, Nguyen et al. 2021: the
right tool for the unit-by-unit matrix of wide image units, whose d x d statistics would not fit, but a different
quantity from the criterion's full-data CKA.)

Precision: each batch is shifted by the first batch's float64 column means (so that the uncentred sums do not
cancel catastrophically when the means are large next to the spread), multiplied in the compute dtype of
``precision`` (:func:`layerprune.similarity._inputs.compute_dtype`) and summed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from layerprune.similarity._inputs import ArrayLike, Precision, as_matrix, compute_dtype, matmul_precision
from layerprune.similarity.cka import _ratio

__all__ = ["StreamingLinearCKA"]


class _Moments:
    """Running float64 column sums of one shifted representation."""

    def __init__(self, x: torch.Tensor) -> None:
        self.shift = x.to(torch.float64).mean(dim=0)
        self.sums = torch.zeros_like(self.shift)

    def shifted(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        centred = x.to(torch.float64) - self.shift
        self.sums += centred.sum(dim=0)
        return centred.to(dtype)


class StreamingLinearCKA:
    """Linear CKA of a reference representation X with each of K others, over all the samples fed in batches.

    Call :meth:`update` with the same samples of X and of every other representation, any number of times, then
    :meth:`compute`. Memory: the d_x x d_k cross products, the d_k x d_k products and the column sums, O((K + 1) d^2)
    floats whatever the number of samples; no (n, d) matrix is kept.

    Args:
        num_others: K, the representations compared with the reference.
        precision: arithmetic of the products (None: the features' precision; see
            :func:`layerprune.similarity._inputs.compute_dtype`); sums are float64.

    Attributes:
        n: samples fed so far.
        largest_batch: the most rows any single :meth:`update` received (what the memory of a call grows with).
    """

    def __init__(self, num_others: int, *, precision: Precision | None = None) -> None:
        if num_others < 0:
            raise ValueError(f"num_others must be >= 0, got {num_others}")
        compute_dtype(precision)  # an unknown precision fails here, not at the first batch
        self.num_others = num_others
        self.precision = precision
        self.n = 0
        self.largest_batch = 0
        self._x: _Moments | None = None
        self._y: list[_Moments] = []
        self._xx: torch.Tensor | None = None
        self._xy: list[torch.Tensor] = []
        self._yy: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, reference: ArrayLike, others: Sequence[ArrayLike]) -> None:
        """Adds one batch: ``reference`` (b, ...) and each of ``others`` (b, ...) on the same b samples.

        Raises:
            ValueError: on the wrong number of representations, mismatched samples or widths, or non-finite values.
        """
        if len(others) != self.num_others:
            raise ValueError(f"update got {len(others)} representations to compare, expected {self.num_others}")
        x = as_matrix(reference, "reference", dtype=None)
        ys = [as_matrix(y, f"others[{k}]", dtype=None) for k, y in enumerate(others)]
        for k, y in enumerate(ys):
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"others[{k}] has {y.shape[0]} samples but the reference has {x.shape[0]}")
        dtype = compute_dtype(self.precision, x.dtype, *(y.dtype for y in ys))
        f64 = torch.float64
        if self._x is None:
            self._x = _Moments(x)
            self._y = [_Moments(y) for y in ys]
            self._xx = torch.zeros(x.shape[1], x.shape[1], dtype=f64, device=x.device)
            self._xy = [torch.zeros(x.shape[1], y.shape[1], dtype=f64, device=x.device) for y in ys]
            self._yy = [torch.zeros(y.shape[1], y.shape[1], dtype=f64, device=x.device) for y in ys]
        elif x.shape[1] != self._xx.shape[0] or any(y.shape[1] != s.shape[1] for y, s in zip(ys, self._xy)):
            raise ValueError("a batch has other feature widths than the first one; feed the same representations")
        with matmul_precision(self.precision):
            xs = self._x.shifted(x, dtype)
            self._xx += (xs.T @ xs).to(f64)
            for k, y in enumerate(ys):
                ysh = self._y[k].shifted(y, dtype)
                self._xy[k] += (xs.T @ ysh).to(f64)
                self._yy[k] += (ysh.T @ ysh).to(f64)
        if not bool(torch.isfinite(self._x.sums).all()) or not all(bool(torch.isfinite(m.sums).all()) for m in self._y):
            raise ValueError("a representation contains NaN or infinite values; check the activations that produced it")
        self.n += int(x.shape[0])
        self.largest_batch = max(self.largest_batch, int(x.shape[0]))

    def compute(self) -> np.ndarray:
        """(K,) float64 linear CKA of the reference with each other representation over every sample fed.

        Raises:
            ValueError: before two samples, or when a representation is constant over the samples (CKA undefined).
        """
        if self.n < 2 or self._x is None:
            raise ValueError(f"streamed CKA needs at least 2 samples, got {self.n}; feed calibration batches first")
        mx = self._x.sums / self.n
        cxx = self._xx - self.n * torch.outer(mx, mx)
        hxx = cxx.square().sum()
        out = np.empty(self.num_others)
        for k, (moments, xy, yy) in enumerate(zip(self._y, self._xy, self._yy)):
            my = moments.sums / self.n
            hxy = (xy - self.n * torch.outer(mx, my)).square().sum()
            hyy = (yy - self.n * torch.outer(my, my)).square().sum()
            out[k] = _ratio(hxy, hxx, hyy)
        return out
