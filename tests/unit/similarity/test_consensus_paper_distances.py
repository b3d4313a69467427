"""Consensus's paper protocol: ``bures`` is the reference's Gaussian-stochastic metric, ``cca`` uses all of the
variance. Expected values are closed forms or plain numpy/scipy computations written out here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from layerprune.similarity.distances import (
    bures_distance,
    cca_distance,
    cca_full_distance,
    gaussian_stochastic_distance,
    get_distance,
)


def _classes(n_per_class: int = 40, classes: int = 3, width: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(scale=3.0, size=(classes, width))
    x = centres[labels] + rng.normal(size=(labels.size, width)) @ rng.normal(size=(width, width))
    return x, labels


def test_rotation_of_the_neurons_is_free():
    # More classes than neurons: the start (Procrustes of the class means) already finds the rotation. With fewer
    # classes the reference's alternating fit can stop in a local minimum; that is the reference's behaviour.
    x, labels = _classes(classes=6)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    assert gaussian_stochastic_distance(x, x @ q, labels) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_scaling_by_two_has_the_closed_form(alpha):
    # (alpha = 0 drops the means from the fit, and the reference's alternating fit then need not return T = I.)
    # Y = 2X: class means double and covariances quadruple. With T = I (optimal here),
    # ||m - 2m||^2 = ||m||^2 and Bures^2(S, 4S) = tr S + 4 tr S - 2 tr(2S) = tr S.
    x, labels = _classes(classes=6, seed=2)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(6)])
    traces = np.array([np.trace(np.cov(x[labels == c], rowvar=False)) for c in range(6)])
    expected = np.sqrt(np.mean(alpha * (means**2).sum(axis=1) + (2 - alpha) * traces))
    assert gaussian_stochastic_distance(x, 2 * x, labels, alpha=alpha) == pytest.approx(expected, rel=1e-6)


def test_not_scale_normalised_unlike_layerprune_bures():
    x, labels = _classes(seed=3)
    assert bures_distance(x, 2 * x, labels) == pytest.approx(0.0, abs=1e-9)  # layerprune: normalised
    assert gaussian_stochastic_distance(x, 2 * x, labels) > 1.0  # the reference: in feature units


def test_gaussian_stochastic_needs_labels_and_two_samples_per_class():
    x, labels = _classes()
    with pytest.raises(ValueError, match="labels"):
        gaussian_stochastic_distance(x, x)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stochastic_distance(x[:41], x[:41], labels[:41])
    with pytest.raises(ValueError, match="alpha"):
        gaussian_stochastic_distance(x, x, labels, alpha=3.0)


def _mean_canonical_correlation(x: np.ndarray, y: np.ndarray) -> float:
    ux = scipy.linalg.orth(x - x.mean(axis=0))
    uy = scipy.linalg.orth(y - y.mean(axis=0))
    return float(np.clip(scipy.linalg.svdvals(ux.T @ uy), 0, 1).mean())


def test_paper_cca_uses_all_of_the_variance():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(60, 6))
    # One direction with a tiny variance that 99% truncation drops but full CCA keeps.
    x = base * np.array([10, 8, 6, 4, 2, 0.05])
    y = base[:, [0, 1, 2, 3, 4]] @ rng.normal(size=(5, 5))
    y = np.column_stack([y, rng.normal(size=60)])
    full = 1.0 - _mean_canonical_correlation(x, y)
    assert cca_full_distance(x, y) == pytest.approx(full, abs=1e-9)
    assert cca_distance(x, y) != pytest.approx(full, abs=1e-3)


def test_paper_lookup_replaces_only_bures_and_cca():
    assert get_distance("bures", "paper") is gaussian_stochastic_distance
    assert get_distance("cca", "paper") is cca_full_distance
    assert get_distance("bures") is bures_distance
    for name in ("cka", "procrustes", "permutation", "wasserstein", "cca_angular"):
        assert get_distance(name, "paper") is get_distance(name)
    with pytest.raises(ValueError, match="protocol"):
        get_distance("cka", "pons")
