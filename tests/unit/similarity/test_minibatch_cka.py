"""Minibatch CKA matrices: agreement with the pairwise definitions, batching behaviour and edge cases."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from layerprune.similarity import MinibatchCKA, cka_matrix, linear_cka, sglp_cka_matrix
from layerprune.similarity.cka import hsic


def _units(n: int, seed: int = 0) -> list[np.ndarray]:
    """Five toy 'unit outputs': a chain of noisy maps (related neighbours), one conv-shaped, one independent."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, 12))
    out = [h]
    for width in (16, 16, 8):
        h = np.maximum(h @ rng.normal(size=(h.shape[1], width)) / np.sqrt(h.shape[1]), 0.0) + 0.3 * rng.normal(
            size=(n, width)
        )
        out.append(h)
    out[2] = out[2].reshape(n, 4, 2, 2)  # conv-shaped unit output, flattened inside
    out.append(rng.normal(size=(n, 10)))
    return out


def _pairwise(features: list[np.ndarray], **kwargs: bool) -> np.ndarray:
    size = len(features)
    return np.array([[linear_cka(features[i], features[j], **kwargs) for j in range(size)] for i in range(size)])


def test_single_batch_equals_full_unbiased_matrix() -> None:
    feats = _units(120)
    got = cka_matrix(feats, mode="unbiased")
    np.testing.assert_allclose(got, _pairwise(feats, unbiased=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, got.T, atol=0)
    np.testing.assert_allclose(np.diag(got), 1.0)


def test_single_batch_sglp_equals_full_biased_matrix() -> None:
    feats = _units(90)
    np.testing.assert_allclose(cka_matrix(feats, mode="sglp"), _pairwise(feats), rtol=1e-9, atol=1e-12)


def test_sglp_mode_is_mean_of_per_batch_biased_cka() -> None:
    feats = _units(230)
    batch = 50  # 4 full batches and a trailing batch of 30, all averaged with equal weight
    expected = np.mean([_pairwise([f[s : s + batch] for f in feats]) for s in range(0, 230, batch)], axis=0)
    np.testing.assert_allclose(sglp_cka_matrix(feats, batch_size=batch), expected, rtol=1e-9, atol=1e-12)


def test_unbiased_minibatch_is_mean_hsic_ratio_and_order_free() -> None:
    feats = [torch.from_numpy(f) for f in _units(160)]
    forward, backward = MinibatchCKA(5), MinibatchCKA(5, precision="float64")
    starts = list(range(0, 160, 40))
    for s in starts:
        forward.update([f[s : s + 40] for f in feats])
    for s in reversed(starts):
        backward.update([f[s : s + 40].float() for f in feats])  # float32 input, on the float64 path
    assert forward.num_batches == 4 and forward.num_samples == 160
    got = forward.compute()
    np.testing.assert_allclose(got, backward.compute(), rtol=1e-6)
    # the value: CKA_ij = mean_b HSIC_1(K_i, K_j) / sqrt(mean_b HSIC_1(K_i, K_i) mean_b HSIC_1(K_j, K_j)), with the
    # per-batch unbiased HSIC of the flattened features' Gram matrices
    flat = [f.reshape(160, -1).double() for f in feats]
    means = np.zeros((5, 5))
    for s in starts:
        grams = [f[s : s + 40] @ f[s : s + 40].T for f in flat]
        means += np.array([[float(hsic(ki, kj, unbiased=True)) for kj in grams] for ki in grams]) / len(starts)
    expected = means / np.sqrt(np.outer(np.diag(means), np.diag(means)))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # ... which is not the mean of the per-batch unbiased CKA values (a ratio of means, not a mean of ratios)
    per_batch = np.mean([_pairwise([f[s : s + 40] for f in _units(160)], unbiased=True) for s in starts], axis=0)
    assert np.abs(got - per_batch).max() > 1e-3


def test_unbiased_minibatch_stays_near_zero_for_independent_units_where_sglp_does_not() -> None:
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(2000, 200)) for _ in range(3)]
    unbiased = cka_matrix(feats, mode="unbiased", batch_size=50)
    sglp = cka_matrix(feats, mode="sglp", batch_size=50)
    off = ~np.eye(3, dtype=bool)
    assert np.abs(unbiased[off]).max() < 0.02
    assert sglp[off].min() > 0.5  # per-batch biased CKA of wide independent features is inflated


def test_minibatch_estimate_is_close_to_full_data_value() -> None:
    feats = _units(1200, seed=3)
    full = cka_matrix(feats, mode="unbiased")
    batched = cka_matrix(feats, mode="unbiased", batch_size=100)
    np.testing.assert_allclose(batched, full, atol=0.05)


def test_trailing_batch_too_small_for_unbiased_is_skipped() -> None:
    feats = _units(203)
    np.testing.assert_allclose(
        cka_matrix(feats, mode="unbiased", batch_size=50),
        cka_matrix([f[:200] for f in feats], mode="unbiased", batch_size=50),
    )


def test_constant_unit_gives_nan_row_and_warning(caplog: pytest.LogCaptureFixture) -> None:
    feats = _units(64)
    feats[1] = np.full_like(feats[1], 0.7)
    with caplog.at_level(logging.WARNING, logger="layerprune.similarity.minibatch"):
        for mode in ("unbiased", "sglp"):
            got = cka_matrix(feats, mode=mode, batch_size=32)
            assert np.isnan(got[1]).all() and np.isnan(got[:, 1]).all()
            keep = [0, 2, 3, 4]
            assert np.isfinite(got[np.ix_(keep, keep)]).all()
    assert "undefined for units [1]" in caplog.text


def test_misuse_raises() -> None:
    feats = _units(20)
    acc = MinibatchCKA(5)
    with pytest.raises(RuntimeError, match="before any update"):
        acc.compute()
    with pytest.raises(ValueError, match="expected one per unit"):
        acc.update(feats[:4])
    with pytest.raises(ValueError, match="same batch"):
        acc.update([feats[0][:10]] + [f[:12] for f in feats[1:]])
    with pytest.raises(ValueError, match="too small"):
        acc.update([f[:3] for f in feats])
    with pytest.raises(ValueError, match="unknown mode"):
        MinibatchCKA(3, mode="biased")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below the minimum"):
        cka_matrix(feats, batch_size=2)
