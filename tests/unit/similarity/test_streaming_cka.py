"""Exact linear CKA streamed over batches (``layerprune.similarity.streaming``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerprune.similarity.streaming import StreamingLinearCKA


def _cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA written out in float64 numpy on the whole data (Kornblith et al. 2019, eq. 5)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def _data(n: int = 600, offset: float = 0.0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 12)) + offset
    others = [x @ rng.normal(size=(12, 8)) + s * rng.normal(size=(n, 8)) + offset for s in (0.1, 1.0, 10.0)]
    others.append(rng.normal(size=(n, 20)))  # another width, independent
    return x, others


def _stream(x: np.ndarray, others: list[np.ndarray], batch: int, precision: str | None) -> np.ndarray:
    acc = StreamingLinearCKA(len(others), precision=precision)
    for i in range(0, len(x), batch):
        acc.update(torch.from_numpy(x[i : i + batch]), [torch.from_numpy(o[i : i + batch]) for o in others])
    assert acc.n == len(x) and acc.largest_batch == min(batch, len(x))
    return acc.compute()


@pytest.mark.parametrize("batch", [7, 64, 600])
def test_streamed_cka_is_the_full_data_cka_whatever_the_batch(batch: int) -> None:
    x, others = _data()
    expected = [_cka(x, o) for o in others]
    np.testing.assert_allclose(_stream(x, others, batch, "float64"), expected, rtol=1e-12)


def test_float32_products_with_a_large_mean_stay_accurate() -> None:
    """Features far from zero (mean 1e3 against a spread of 1) do not cancel catastrophically: each batch is
    shifted by the first batch's means before its float32 products."""
    x, others = _data(offset=1e3)
    expected = np.array([_cka(x, o) for o in others])
    got = _stream(x.astype(np.float32), [o.astype(np.float32) for o in others], 50, None)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_streaming_errors() -> None:
    acc = StreamingLinearCKA(1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        acc.compute()
    with pytest.raises(ValueError, match="got 2 representations to compare, expected 1"):
        acc.update(torch.zeros(4, 2), [torch.zeros(4, 2), torch.zeros(4, 2)])
    with pytest.raises(ValueError, match="3 samples but the reference has 4"):
        acc.update(torch.ones(4, 2), [torch.ones(3, 2)])
    with pytest.raises(ValueError, match="NaN or infinite"):
        acc.update(torch.full((4, 2), float("nan")), [torch.ones(4, 2)])
    fresh = StreamingLinearCKA(1)
    fresh.update(torch.randn(4, 2), [torch.randn(4, 2)])
    with pytest.raises(ValueError, match="other feature widths"):
        fresh.update(torch.randn(4, 3), [torch.randn(4, 2)])
    constant = StreamingLinearCKA(1)
    constant.update(torch.randn(8, 2), [torch.ones(8, 2)])
    with pytest.raises(ValueError, match="CKA is undefined"):
        constant.compute()
    with pytest.raises(ValueError, match="unknown precision"):
        StreamingLinearCKA(1, precision="float16")  # type: ignore[arg-type]
