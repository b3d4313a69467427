"""Linear and RBF CKA against their definitions and the properties pruning relies on."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from layerprune.similarity import linear_cka, rbf_cka
from layerprune.similarity.cka import hsic


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _gram_cka_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC(K, L) = tr(K H L H) / (n-1)^2 with an explicit centring matrix H (Kornblith et al. 2019, eq. 3)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, ll = x @ x.T, y @ y.T

    def hs(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hs(k, ll) / math.sqrt(hs(k, k) * hs(ll, ll))


def _hsic1_u_statistic(k: np.ndarray, ll: np.ndarray) -> float:
    """HSIC_1 as the U-statistic over 4-tuples of distinct samples (Song et al. 2012, Theorem 3), brute force."""
    n = k.shape[0]
    total = 0.0
    for tup in itertools.combinations(range(n), 4):
        h = 0.0
        for t, u, v, w in itertools.permutations(tup):
            h += k[t, u] * ll[t, u] + k[t, u] * ll[v, w] - 2.0 * k[t, u] * ll[t, v]
        total += h / 24.0
    return total / math.comb(n, 4)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("width", [5, 300])  # feature-space route (p << n) and Gram route (p > n)
def test_self_similarity_is_one(rng: np.random.Generator, unbiased: bool, width: int) -> None:
    x = rng.normal(size=(60, width))
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(x).float(), unbiased=unbiased) == pytest.approx(
        1.0, abs=1e-9
    )


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("width", [8, 200])
def test_invariant_to_orthogonal_maps_isotropic_scaling_and_shift(
    rng: np.random.Generator, unbiased: bool, width: int
) -> None:
    x = rng.normal(size=(80, width))
    y = x[:, :6] @ rng.normal(size=(6, 10)) + 0.5 * rng.normal(size=(80, 10))
    ref = linear_cka(x, y, unbiased=unbiased)
    moved = 7.5 * x @ _orthogonal(width, rng) + 3.0
    assert linear_cka(moved, 0.01 * y, unbiased=unbiased) == pytest.approx(ref, rel=1e-9)
    # ...but not to an anisotropic rescaling of features: the test can tell the difference.
    stretched = x * np.linspace(0.1, 10.0, width)
    assert abs(linear_cka(stretched, y, unbiased=unbiased) - ref) > 1e-3


@pytest.mark.parametrize("width", [4, 300])
def test_linear_cka_equals_gram_hsic_formula(rng: np.random.Generator, width: int) -> None:
    x = rng.normal(size=(50, width)) + 2.0
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 7))) + 0.3 * rng.normal(size=(50, 7))
    assert linear_cka(x, y) == pytest.approx(_gram_cka_by_definition(x, y), rel=1e-10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    assert 0.0 <= linear_cka(x, y) <= 1.0


def test_unbiased_hsic_matches_u_statistic(rng: np.random.Generator) -> None:
    x = rng.normal(size=(8, 3)) + 1.0
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=(8, 2))
    k, ll = x @ x.T, y @ y.T
    got = float(hsic(torch.from_numpy(k), torch.from_numpy(ll), unbiased=True))
    assert got == pytest.approx(_hsic1_u_statistic(k, ll), rel=1e-10)


@pytest.mark.parametrize("width", [3, 40])
def test_unbiased_feature_space_equals_gram_route(rng: np.random.Generator, width: int) -> None:
    x = rng.normal(size=(30, width))
    y = x @ rng.normal(size=(width, 5)) + rng.normal(size=(30, 5))
    # Repeating columns forces the Gram route without changing the value (CKA is invariant to it up to scale).
    wide = linear_cka(np.repeat(x, 40, axis=1), np.repeat(y, 40, axis=1), unbiased=True)
    assert linear_cka(x, y, unbiased=True) == pytest.approx(wide, rel=1e-9)


def test_unbiased_estimator_removes_bias_on_independent_data(rng: np.random.Generator) -> None:
    n, p, q, trials = 24, 100, 100, 150
    biased, unbiased = [], []
    for _ in range(trials):
        x, y = rng.normal(size=(n, p)), rng.normal(size=(n, q))
        biased.append(linear_cka(x, y))
        unbiased.append(linear_cka(x, y, unbiased=True))
    assert np.mean(biased) > 0.5  # biased CKA of independent wide representations at small n is large
    sem = np.std(unbiased) / math.sqrt(trials)
    assert abs(np.mean(unbiased)) < max(4 * sem, 0.02)


def test_unbiased_hsic_has_the_population_value_on_average_for_dependent_data() -> None:
    """HSIC_1 is an unbiased estimator of HSIC: over many independent draws of n = 10 samples of dependent data
    its mean is the population value, while the biased tr(KHLH)/(n-1)^2 is measurably above it.

    x ~ N(0, I_4) and y = x A + e with e ~ N(0, I_4) independent of x. For linear kernels the population HSIC is
    ||Cov(x, y)||_F^2 = ||A||_F^2 (Gretton et al. 2005), here 4 * 0.5^2 + 0.3^2 = 1.09. The biased estimator is
    ||S_xy||_F^2 of the sample cross-covariance, whose mean exceeds it by about tr(Cov x) tr(Cov y) / (n - 1).
    """
    rng = np.random.default_rng(7)
    p, n, trials = 4, 10, 3000
    a = 0.5 * np.eye(p)
    a[0, 1] = 0.3
    population = float((a**2).sum())
    x = rng.normal(size=(trials, n, p))
    y = x @ a + rng.normal(size=(trials, n, p))
    grams_x = torch.from_numpy(x @ x.transpose(0, 2, 1))
    grams_y = torch.from_numpy(y @ y.transpose(0, 2, 1))
    unbiased = np.array([float(hsic(k, ll, unbiased=True)) for k, ll in zip(grams_x, grams_y)])
    biased = np.array([float(hsic(k, ll)) for k, ll in zip(grams_x, grams_y)])
    sem_u = unbiased.std() / math.sqrt(trials)
    sem_b = biased.std() / math.sqrt(trials)
    assert abs(unbiased.mean() - population) < 4 * sem_u, (unbiased.mean(), population, sem_u)
    assert sem_u < 0.1 * population  # the check above is sharp enough to mean something
    bias = biased.mean() - population
    assert bias > 10 * sem_b, (biased.mean(), population, sem_b)
    expected_bias = (p * float(np.trace(a.T @ a + np.eye(p))) + population) / (n - 1)
    assert bias == pytest.approx(expected_bias, rel=0.3)


def test_related_pair_scores_well_above_independent_pair(rng: np.random.Generator) -> None:
    x = rng.normal(size=(500, 20))
    related = np.maximum(x @ rng.normal(size=(20, 30)), 0.0) + 0.1 * rng.normal(size=(500, 30))
    independent = rng.normal(size=(500, 30))
    assert linear_cka(x, related) > 0.6
    assert linear_cka(x, independent) < 0.1
    assert linear_cka(x, related, unbiased=True) > 0.6
    assert abs(linear_cka(x, independent, unbiased=True)) < 0.02


def test_accepts_conv_shaped_tensors(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.normal(size=(40, 4, 3, 3)))
    assert linear_cka(x, x.reshape(40, -1)) == pytest.approx(1.0)


def test_invalid_inputs_raise_with_actionable_messages(rng: np.random.Generator) -> None:
    x = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, rng.normal(size=(9, 3)))
    with pytest.raises(ValueError, match="at least 4 samples"):
        linear_cka(x[:3], x[:3], unbiased=True)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, np.ones((10, 2)))
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        linear_cka(x[:, 0], x)


def test_rbf_cka_properties(rng: np.random.Generator) -> None:
    x = rng.normal(size=(60, 6))
    y = np.sin(x @ rng.normal(size=(6, 4))) + 0.2 * rng.normal(size=(60, 4))
    assert rbf_cka(x, x) == pytest.approx(1.0)
    ref = rbf_cka(x, y, sigma_fraction=0.5)
    assert rbf_cka(3.0 * x @ _orthogonal(6, rng) - 1.0, y, sigma_fraction=0.5) == pytest.approx(ref, rel=1e-9)
    assert rbf_cka(y, x, sigma_fraction=0.5) == pytest.approx(ref, rel=1e-12)
    # With a very wide kernel, RBF CKA tends to linear CKA (Kornblith et al. 2019, Sec. 3.2).
    assert rbf_cka(x, y, sigma_fraction=200.0) == pytest.approx(linear_cka(x, y), abs=1e-3)
    with pytest.raises(ValueError, match="sigma_fraction"):
        rbf_cka(x, y, sigma_fraction=0.0)
