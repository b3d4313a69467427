"""Distances between two representations of the same samples, for the Consensus criterion.

Consensus (Mugnaini et al., 2024) combines several representational (dis)similarity measures. Each function here
has the uniform signature ``fn(X, Y, labels=None) -> float``: X is (n, ...) and Y is (n, ...) for the same n
samples in the same order (trailing dimensions are flattened into features), ``labels`` (n,) integer classes is
used only by :func:`bures_distance`. Every distance is symmetric, non-negative and 0 when X and Y are identical.

Conventions. "Centred" means each feature (column) minus its mean over the samples; "normalised" means divided by
the Frobenius norm of the centred matrix, so that the shape metrics (Procrustes, permutation, Bures) ignore an
isotropic rescaling of either representation. Different widths are handled by zero-padding the narrower
representation to the wider one (for Procrustes, permutation and Bures this changes nothing: zero columns add
nothing to the inner products the metrics are made of).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats

from layerprune.similarity._inputs import ArrayLike, as_numpy_pair
from layerprune.similarity.cka import linear_cka

__all__ = [
    "DISTANCES",
    "DISTANCE_PROTOCOLS",
    "MAX_PERMUTATION_WIDTH",
    "PAPER_DISTANCES",
    "bures_distance",
    "cca_angular_distance",
    "cca_distance",
    "cca_full_distance",
    "cka_distance",
    "gaussian_stochastic_distance",
    "get_distance",
    "permutation_distance",
    "procrustes_distance",
    "wasserstein_distance_1d",
]

logger = logging.getLogger(__name__)

#: Widest representation :func:`permutation_distance` accepts: the assignment problem is cubic in the width.
MAX_PERMUTATION_WIDTH = 4096

Distance = Callable[..., float]


def _centre_normalise(x: np.ndarray, name: str) -> np.ndarray:
    """(n, p) -> column-centred matrix with unit Frobenius norm."""
    xc = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(xc)
    if not norm > 1e-12 * np.linalg.norm(x):
        raise ValueError(f"{name} is constant over the samples (centred norm {norm:.3g}); the distance is undefined")
    return xc / norm


def _reduce_width(x: np.ndarray) -> np.ndarray:
    """Replace (n, p) x by an (n, min(n, p)) matrix with the same Gram matrix x x'.

    Every quantity the shape metrics use (nuclear norms of x'y, canonical correlations) depends on x only through
    x x', so wide convolutional representations (p = 16,384 for a 16x32x32 unit) are first reduced to at most n
    columns: x = U S V' -> U S. This turns a p x q SVD into an n x n one.
    """
    n, p = x.shape
    if p <= n:
        return x
    evals, evecs = scipy.linalg.eigh(x @ x.T)
    return evecs * np.sqrt(np.clip(evals, 0.0, None))[None, :]


def _nuclear_norm_xty(x: np.ndarray, y: np.ndarray) -> float:
    """||x'y||_* (sum of singular values) via the width-reduced factors."""
    return float(scipy.linalg.svdvals(_reduce_width(x).T @ _reduce_width(y)).sum())


def cka_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """1 - linear CKA (biased; Kornblith et al. 2019, https://arxiv.org/abs/1905.00414).

    Args:
        X: (n, ...) representation.
        Y: (n, ...) representation of the same samples.
        labels: ignored (uniform signature).

    Returns:
        Distance in [0, 1].
    """
    del labels
    return max(0.0, 1.0 - linear_cka(X, Y))


def procrustes_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Orthogonal Procrustes distance (Ding, Denain & Steinhardt 2021, https://arxiv.org/abs/2108.01661).

    On centred, normalised X, Y (zero-padded to a common width): min over orthogonal Q of ||X - Y Q||_F^2
    = 2 - 2 ||X'Y||_*, the nuclear-norm solution of the orthogonal Procrustes problem (the same optimum
    ``scipy.linalg.orthogonal_procrustes`` finds, without forming the p x p rotation).

    Args:
        X: (n, ...) representation.
        Y: (n, ...) representation of the same samples.
        labels: ignored (uniform signature).

    Returns:
        Squared distance in [0, 2].

    Raises:
        ValueError: on mismatched samples or a constant representation.
    """
    del labels
    x, y = as_numpy_pair(X, Y)
    x, y = _centre_normalise(x, "X"), _centre_normalise(y, "Y")
    return float(np.clip(2.0 - 2.0 * _nuclear_norm_xty(x, y), 0.0, 2.0))


def _principal_basis(x: np.ndarray, variance_kept: float) -> np.ndarray:
    """Orthonormal (n, k) basis of the top principal directions of centred x holding ``variance_kept`` of variance."""
    u, s, _ = scipy.linalg.svd(_reduce_width(x), full_matrices=False)
    var = s**2
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance_kept - 1e-12) + 1)
    return u[:, : min(k, u.shape[1])]


def cca_distance(
    X: ArrayLike,
    Y: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    angular: bool = False,
    variance_kept: float = 0.99,
) -> float:
    """Distance from the mean canonical correlation (SVCCA-style; Raghu et al. 2017, https://arxiv.org/abs/1706.05806).

    Each centred representation is first reduced to the principal directions holding ``variance_kept`` of its
    variance (SVCCA's step: without it, a representation wider than n - 1 makes every canonical correlation 1).
    The canonical correlations rho_1..rho_k (k = the smaller reduced width) are the singular values of U_X' U_Y for
    orthonormal bases U of the two reduced column spaces. Returns 1 - mean(rho), or arccos(mean(rho)) with
    ``angular=True`` (the angular CCA metric of Williams et al. 2021, https://arxiv.org/abs/2110.14739).

    Args:
        X: (n, ...) representation.
        Y: (n, ...) representation of the same samples.
        labels: ignored (uniform signature).
        angular: return the angle arccos(mean rho) in radians, in [0, pi/2], instead of 1 - mean rho in [0, 1].
        variance_kept: fraction of variance kept per representation, in (0, 1].

    Returns:
        The distance.

    Raises:
        ValueError: on a bad ``variance_kept``, mismatched samples or a constant representation.
    """
    del labels
    if not 0.0 < variance_kept <= 1.0:
        raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
    x, y = as_numpy_pair(X, Y, min_samples=3)
    ux = _principal_basis(_centre_normalise(x, "X"), variance_kept)
    uy = _principal_basis(_centre_normalise(y, "Y"), variance_kept)
    n = x.shape[0]
    if ux.shape[1] + uy.shape[1] > n - 1:
        logger.warning(
            "CCA on %d samples with reduced widths %d and %d: the two subspaces of the (n-1)-dimensional centred "
            "sample space must overlap, so some canonical correlations are 1 by construction; use more samples",
            n,
            ux.shape[1],
            uy.shape[1],
        )
    rho = np.clip(scipy.linalg.svdvals(ux.T @ uy), 0.0, 1.0)
    mean_rho = float(rho.mean())
    return float(np.arccos(mean_rho)) if angular else 1.0 - mean_rho


def cca_angular_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Angular CCA distance arccos(mean canonical correlation), in radians in [0, pi/2].

    :func:`cca_distance` with ``angular=True`` (Williams et al. 2021, https://arxiv.org/abs/2110.14739), under the
    uniform signature of :data:`DISTANCES`.
    """
    return cca_distance(X, Y, labels, angular=True)


def permutation_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Distance after the best one-to-one matching of neurons (Williams et al. 2021, https://arxiv.org/abs/2110.14739).

    On centred, normalised X, Y: min over permutations P of ||X - Y P||_F^2 = 2 - 2 max_P sum_i <x_i, y_P(i)>
    over columns, solved exactly by ``scipy.optimize.linear_sum_assignment`` on X'Y. With unequal widths the
    narrower side is zero-padded, i.e. the surplus neurons stay unmatched (a rectangular assignment).

    Args:
        X: (n, ...) representation; every flattened feature is a "neuron" (pool spatial dimensions first, e.g.
            mean over H, W, to match channels of convolutional units).
        Y: (n, ...) representation of the same samples.
        labels: ignored (uniform signature).

    Returns:
        Squared distance in [0, 2].

    Raises:
        ValueError: when a width exceeds :data:`MAX_PERMUTATION_WIDTH` (the assignment is cubic in the width), on
            mismatched samples or a constant representation.
    """
    del labels
    x, y = as_numpy_pair(X, Y)
    if max(x.shape[1], y.shape[1]) > MAX_PERMUTATION_WIDTH:
        raise ValueError(
            f"permutation_distance matches neurons one to one, cubic in the width; got widths {x.shape[1]} and "
            f"{y.shape[1]} (max {MAX_PERMUTATION_WIDTH}). Pool spatial dimensions first (e.g. mean over H, W)"
        )
    x, y = _centre_normalise(x, "X"), _centre_normalise(y, "Y")
    gain = x.T @ y
    rows, cols = scipy.optimize.linear_sum_assignment(gain, maximize=True)
    return float(np.clip(2.0 - 2.0 * gain[rows, cols].sum(), 0.0, 2.0))


def bures_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Bures (Gaussian 2-Wasserstein) distance between the class-conditional second-moment statistics of X and Y.

    What is computed, exactly. X and Y are centred and normalised (unit Frobenius norm). For each class c, let
    X_c be X's rows of class c minus their class mean; K_c = X_c X_c' is the covariance of the zero-mean Gaussian
    N(0, K_c) on the n_c samples of the class (neurons as draws), and likewise L_c for Y. The sample space is
    shared by X and Y, so no projection to a common width is needed and the result does not depend on the neuron
    basis. The squared Bures distance
    B^2(K_c, L_c) = tr K_c + tr L_c - 2 tr (K_c^1/2 L_c K_c^1/2)^1/2 = ||X_c||^2 + ||Y_c||^2 - 2 ||X_c'Y_c||_*
    is W2^2 between those Gaussians (the identity of Harvey, Lipshutz & Williams 2023,
    https://arxiv.org/abs/2311.11436). The between-class structure enters the same way through the class means
    weighted by sqrt(n_c) (rows sqrt(n_c) mu_c). The result is the sum of the per-class terms and the
    between-class term, a mass-weighted average over classes since the squared norms of those parts sum to 1;
    it lies in [0, 2] and is at most the Procrustes distance (each class may be aligned separately).

    Args:
        X: (n, ...) representation.
        Y: (n, ...) representation of the same samples.
        labels: (n,) integer class of each sample (required).

    Returns:
        Squared distance in [0, 2].

    Raises:
        ValueError: when ``labels`` is missing or of the wrong length, or on a constant representation.
    """
    if labels is None:
        raise ValueError("bures_distance needs labels: pass the (n,) class of each sample as labels=")
    x, y = as_numpy_pair(X, Y)
    lab = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    if lab.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but X and Y have {x.shape[0]} samples")
    x, y = _centre_normalise(x, "X"), _centre_normalise(y, "Y")
    classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    total = 0.0
    means_x = np.empty((classes.size, x.shape[1]))
    means_y = np.empty((classes.size, y.shape[1]))
    for c in range(classes.size):
        rows = inverse == c
        mx, my = x[rows].mean(axis=0), y[rows].mean(axis=0)
        means_x[c], means_y[c] = np.sqrt(counts[c]) * mx, np.sqrt(counts[c]) * my
        xc, yc = x[rows] - mx, y[rows] - my
        total += float((xc**2).sum() + (yc**2).sum()) - 2.0 * _nuclear_norm_xty(xc, yc)
    total += float((means_x**2).sum() + (means_y**2).sum()) - 2.0 * _nuclear_norm_xty(means_x, means_y)
    return float(np.clip(total, 0.0, 2.0))


def wasserstein_distance_1d(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """1-Wasserstein distance between the distributions of all values of X and of Y (``scipy.stats``).

    Compares the flattened activation value histograms, ignoring which sample or neuron a value belongs to: it
    sees shifts and rescaling of activations (unlike CKA) but no structure. In the units of the activations.

    Args:
        X: (n, ...) representation.
        Y: (n, ...) representation of the same samples.
        labels: ignored (uniform signature).

    Returns:
        Non-negative distance.
    """
    del labels
    x, y = as_numpy_pair(X, Y, min_samples=1)
    return float(scipy.stats.wasserstein_distance(x.ravel(), y.ravel()))


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (possibly rank-deficient) covariance; rounding's negative eigenvalues -> 0."""
    values, vectors = np.linalg.eigh(c)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _squared_bures(a: np.ndarray, b: np.ndarray) -> float:
    """tr a + tr b - 2 tr (a^1/2 b a^1/2)^1/2 = tr a + tr b - 2 ||a^1/2 b^1/2||_* for PSD a, b."""
    return float(np.trace(a) + np.trace(b) - 2.0 * scipy.linalg.svdvals(_psd_sqrt(a) @ _psd_sqrt(b)).sum())


def _rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal R minimising ||source R - target||_F (``scipy.linalg.orthogonal_procrustes``)."""
    return scipy.linalg.orthogonal_procrustes(source, target)[0]


def gaussian_stochastic_distance(
    X: ArrayLike,
    Y: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    alpha: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> float:
    """Consensus's "bures": the Gaussian-stochastic shape metric of Duong et al. (2023) as the reference computes it.

    Each representation is summarised per class c by its mean m_c and covariance S_c (``np.cov``, unnormalised
    features: no centring or scale normalisation across the whole set). One orthogonal T, shared by all classes,
    aligns Y to X; it is fitted by alternating minimisation (per-class rotations Q_c of the covariance square roots,
    then T by Procrustes on the stacked means and rotated square roots), started from the Procrustes fit of the
    means, until the loss improves by less than ``tol``. The distance is
    ``sqrt(mean_c(alpha ||m_c^X - m_c^Y T||^2 + (2 - alpha) Bures^2(S_c^X, T' S_c^Y T)))``; ``alpha = 1`` is the
    2-Wasserstein distance between the class Gaussians, 0 uses covariances only, 2 means only
    (https://arxiv.org/abs/2211.11665; netrep's ``GaussianStochasticMetric``). Unlike :func:`bures_distance` it
    depends on the scale of the features, and a single rotation serves every class.

    Args:
        X: (n, p) representation.
        Y: (n, p) representation of the same samples (same width: the metric aligns neurons).
        labels: (n,) class of each sample (required, at least 2 samples per class).
        alpha: in [0, 2], the weight of the means against the covariances.
        max_iter: most alternating steps.
        tol: stop when the fitting loss improves by less than this.

    Returns:
        Non-negative distance, in the units of the features.

    Raises:
        ValueError: on missing labels, a class with fewer than 2 samples, different widths or a bad ``alpha``.
    """
    if labels is None:
        raise ValueError("gaussian_stochastic_distance needs labels: pass the (n,) class of each sample as labels=")
    if not 0.0 <= alpha <= 2.0:
        raise ValueError(f"alpha={alpha} must be in [0, 2] (0 covariances only, 1 2-Wasserstein, 2 means only)")
    x, y = as_numpy_pair(X, Y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must have the same width to align neurons, got {x.shape[1]} and {y.shape[1]}")
    lab = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    if lab.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but X and Y have {x.shape[0]} samples")
    classes, counts = np.unique(lab, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"class {classes[counts.argmin()]} has {counts.min()} sample; a covariance needs at least 2")
    means_x = np.stack([x[lab == c].mean(axis=0) for c in classes])
    means_y = np.stack([y[lab == c].mean(axis=0) for c in classes])
    covs_x = [np.atleast_2d(np.cov(x[lab == c], rowvar=False)) for c in classes]
    covs_y = [np.atleast_2d(np.cov(y[lab == c], rowvar=False)) for c in classes]
    roots_x = [_psd_sqrt(c) for c in covs_x]
    roots_y = [_psd_sqrt(c) for c in covs_y]
    target = np.vstack([alpha * means_x, *[(2.0 - alpha) * r for r in roots_x]])
    T = _rotation(means_y, means_x)
    losses: list[float] = []
    for step in range(max_iter):
        rotations = [_rotation(T.T @ ry, rx) for rx, ry in zip(roots_x, roots_y)]
        source = np.vstack([alpha * means_y, *[q.T @ ((2.0 - alpha) * ry) for q, ry in zip(rotations, roots_y)]])
        T = _rotation(source, target)
        losses.append(float(np.linalg.norm(target - source @ T)))
        if step >= 2 and losses[-2] - losses[-1] < tol:
            break
    mean_terms = ((means_x - means_y @ T) ** 2).sum(axis=1)
    cov_terms = np.array([_squared_bures(cx, T.T @ cy @ T) for cx, cy in zip(covs_x, covs_y)])
    total = float(np.mean(alpha * mean_terms + (2.0 - alpha) * cov_terms))
    return float(np.sqrt(max(total, 0.0)))


def cca_full_distance(X: ArrayLike, Y: ArrayLike, labels: ArrayLike | None = None) -> float:
    """1 - mean canonical correlation on all of the variance (:func:`cca_distance` with ``variance_kept=1``), as
    Consensus's reference computes CCA (no SVCCA truncation)."""
    return cca_distance(X, Y, labels, variance_kept=1.0)


#: Distance functions by name, for configuration files and the Consensus criterion.
DISTANCES: dict[str, Distance] = {
    "cka": cka_distance,
    "procrustes": procrustes_distance,
    "cca": cca_distance,
    "cca_angular": cca_angular_distance,
    "permutation": permutation_distance,
    "bures": bures_distance,
    "wasserstein": wasserstein_distance_1d,
}


#: What a metric name means under Consensus's paper protocol, where it differs (every other name is unchanged).
PAPER_DISTANCES: dict[str, Distance] = {
    "bures": gaussian_stochastic_distance,
    "cca": cca_full_distance,
}

#: values of the config's ``pruning.protocol.consensus``
DISTANCE_PROTOCOLS = ("layerprune", "paper")


def get_distance(name: str, protocol: str = "layerprune") -> Distance:
    """Look up a distance by name.

    Args:
        name: one of the keys of :data:`DISTANCES`.
        protocol: ``layerprune`` (:data:`DISTANCES`) or ``paper`` (Consensus's reference:
            :data:`PAPER_DISTANCES` where they differ).

    Returns:
        ``fn(X, Y, labels=None) -> float``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if protocol not in DISTANCE_PROTOCOLS:
        raise ValueError(f"unknown distance protocol {protocol!r}; expected one of {list(DISTANCE_PROTOCOLS)}")
    if protocol == "paper" and name in PAPER_DISTANCES:
        return PAPER_DISTANCES[name]
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; expected one of {sorted(DISTANCES)}") from None
