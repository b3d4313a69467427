"""Distances for the Consensus criterion: metric properties, invariances and agreement with definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from layerprune.similarity import (
    DISTANCES,
    bures_distance,
    cca_distance,
    get_distance,
    linear_cka,
    permutation_distance,
    procrustes_distance,
    wasserstein_distance_1d,
)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=150)
    x = rng.normal(size=(150, 12)) + labels[:, None]
    y = np.tanh(x @ rng.normal(size=(12, 9)) / 3.0) + 0.2 * rng.normal(size=(150, 9))
    return x, y, labels


def _orthogonal(d: int, seed: int = 1) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _zero_tolerance(name: str) -> float:
    # arccos(1 - e) ~ sqrt(2 e): the angular CCA of identical inputs turns float64 round-off (e ~ 1e-16) into ~1e-8.
    return 1e-7 if name == "cca_angular" else 1e-9


@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_symmetric_nonnegative_and_zero_on_identical(name: str, data: tuple) -> None:
    x, y, labels = data
    fn = get_distance(name)
    zero = _zero_tolerance(name)
    assert fn(x, x, labels=labels) == pytest.approx(0.0, abs=zero)
    assert fn(torch.from_numpy(x), torch.from_numpy(x), labels=torch.from_numpy(labels)) == pytest.approx(0.0, abs=zero)
    d_xy, d_yx = fn(x, y, labels=labels), fn(y, x, labels=labels)
    assert d_xy == pytest.approx(d_yx, rel=1e-9, abs=1e-12)
    assert d_xy > 1e-3  # a different representation is at a positive distance


@pytest.mark.parametrize("name", ["cka", "procrustes", "cca", "cca_angular", "bures"])
def test_shape_metrics_ignore_rotation_scale_and_shift(name: str, data: tuple) -> None:
    x, y, labels = data
    fn = get_distance(name)
    moved = 4.0 * x @ _orthogonal(12) - 2.0
    assert fn(moved, y, labels=labels) == pytest.approx(fn(x, y, labels=labels), rel=1e-8, abs=1e-10)
    assert fn(moved, x, labels=labels) == pytest.approx(0.0, abs=_zero_tolerance(name))


def test_cka_distance_is_one_minus_cka(data: tuple) -> None:
    x, y, _ = data
    assert get_distance("cka")(x, y) == pytest.approx(1.0 - linear_cka(x, y))


def test_procrustes_matches_scipy_orthogonal_procrustes(data: tuple) -> None:
    x, y, _ = data
    xc = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0))
    yc = y - y.mean(0)
    yc = np.pad(yc / np.linalg.norm(yc), ((0, 0), (0, 3)))  # zero-pad 9 -> 12 columns
    rotation, _ = scipy.linalg.orthogonal_procrustes(yc, xc)
    residual = float(np.linalg.norm(xc - yc @ rotation) ** 2)
    assert procrustes_distance(x, y) == pytest.approx(residual, rel=1e-9)


def test_procrustes_width_reduction_is_exact_for_wide_representations() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 300)), rng.normal(size=(40, 250))
    xc = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0))
    yc = (y - y.mean(0)) / np.linalg.norm(y - y.mean(0))
    direct = 2.0 - 2.0 * scipy.linalg.svdvals(xc.T @ yc).sum()
    assert procrustes_distance(x, y) == pytest.approx(direct, rel=1e-9)


def test_cca_distance_zero_for_invertible_maps_and_angular_variant(data: tuple) -> None:
    x, y, _ = data
    mixed = x @ np.random.default_rng(3).normal(size=(12, 12))  # invertible, not orthogonal
    assert cca_distance(x, mixed, variance_kept=1.0) == pytest.approx(0.0, abs=1e-9)
    d = cca_distance(x, y)
    assert cca_distance(x, y, angular=True) == pytest.approx(np.arccos(1.0 - d))
    assert get_distance("cca_angular")(x, y) == pytest.approx(np.arccos(1.0 - d))
    independent = np.random.default_rng(4).normal(size=x.shape)
    assert cca_distance(x, independent) > 0.7


def test_permutation_distance_sees_neuron_identity(data: tuple) -> None:
    x, _, _ = data
    perm = np.random.default_rng(5).permutation(12)
    assert permutation_distance(x, 2.0 * x[:, perm]) == pytest.approx(0.0, abs=1e-12)
    # A rotation mixes neurons: Procrustes still sees 0, the one-to-one matching does not.
    rotated = x @ _orthogonal(12)
    assert procrustes_distance(x, rotated) == pytest.approx(0.0, abs=1e-9)
    assert permutation_distance(x, rotated) > 0.1
    with pytest.raises(ValueError, match="Pool spatial dimensions"):
        permutation_distance(np.zeros((5, 5000)), np.zeros((5, 3)))


def _bures_sq(k: np.ndarray, ll: np.ndarray) -> float:
    root = scipy.linalg.sqrtm(k)
    return float(np.trace(k) + np.trace(ll) - 2.0 * np.trace(scipy.linalg.sqrtm(root @ ll @ root)).real)


def test_bures_matches_definition_with_matrix_square_roots() -> None:
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1, 2], 6)
    x, y = rng.normal(size=(18, 5)), rng.normal(size=(18, 7))
    xn = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0))
    yn = (y - y.mean(0)) / np.linalg.norm(y - y.mean(0))
    expected = 0.0
    means_x, means_y = [], []
    for c in range(3):
        xc, yc = xn[labels == c], yn[labels == c]
        means_x.append(np.sqrt(6) * xc.mean(0))
        means_y.append(np.sqrt(6) * yc.mean(0))
        xc, yc = xc - xc.mean(0), yc - yc.mean(0)
        expected += _bures_sq(xc @ xc.T, yc @ yc.T)
    mx, my = np.array(means_x), np.array(means_y)
    expected += _bures_sq(mx @ mx.T, my @ my.T)
    assert bures_distance(x, y, labels=labels) == pytest.approx(expected, abs=1e-6)


def test_bures_with_one_class_equals_procrustes_and_is_below_it_otherwise(data: tuple) -> None:
    x, y, labels = data
    assert bures_distance(x, y, labels=np.zeros(len(x))) == pytest.approx(procrustes_distance(x, y), rel=1e-9)
    assert bures_distance(x, y, labels=labels) <= procrustes_distance(x, y) + 1e-12
    with pytest.raises(ValueError, match="needs labels"):
        bures_distance(x, y)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        bures_distance(x, y, labels=[0, 1, 2])


def test_wasserstein_is_scipy_on_flattened_values(data: tuple) -> None:
    x, y, _ = data
    assert wasserstein_distance_1d(x, y) == pytest.approx(scipy.stats.wasserstein_distance(x.ravel(), y.ravel()))
    assert wasserstein_distance_1d(x, x + 0.25) == pytest.approx(0.25)


def test_registry_names_and_unknown_name() -> None:
    assert sorted(DISTANCES) == ["bures", "cca", "cca_angular", "cka", "permutation", "procrustes", "wasserstein"]
    with pytest.raises(ValueError, match=r"unknown distance 'cosine'; expected one of \['bures'"):
        get_distance("cosine")
