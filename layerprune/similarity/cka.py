"""Centred kernel alignment (CKA) between two representations of the same samples.

Linear and RBF CKA of Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019
(https://arxiv.org/abs/1905.00414), with the unbiased HSIC estimator of Song et al., "Feature Selection via
Dependence Maximization", JMLR 2012 (https://jmlr.org/papers/v13/song12a.html), as used for minibatch CKA by
Nguyen, Raghu & Kornblith, ICLR 2021 (https://arxiv.org/abs/2010.15327).

All functions are pure: they accept torch tensors (any device) or numpy arrays of shape (n, ...), flatten the
trailing dimensions into features, and compute in float64.
"""

from __future__ import annotations

import torch

from layerprune.similarity._inputs import ArrayLike, as_pair

__all__ = ["centre_gram", "hsic", "linear_cka", "rbf_cka", "rbf_gram", "unbiased_hsic_from_stats"]


def centre_gram(gram: torch.Tensor) -> torch.Tensor:
    """Double-centre a Gram matrix, H K H with H = I - 11^T/n, in O(n^2) (no n x n x n product).

    Args:
        gram: (n, n) symmetric kernel matrix.

    Returns:
        (n, n) centred kernel matrix.
    """
    row = gram.mean(dim=0, keepdim=True)
    col = gram.mean(dim=1, keepdim=True)
    return gram - row - col + gram.mean()


def unbiased_hsic_from_stats(
    trace_kl: torch.Tensor,
    sum_k: torch.Tensor,
    sum_l: torch.Tensor,
    cross: torch.Tensor,
    n: int,
) -> torch.Tensor:
    """Unbiased HSIC_1 (Song et al. 2012, eq. 5) from the four statistics of the zero-diagonal Gram matrices.

    With K~ and L~ the Gram matrices whose diagonals are set to zero:
    HSIC_1 = [tr(K~L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).
    Taking the statistics as inputs lets the feature-space, Gram and minibatch (all-pairs) code share the formula;
    arguments broadcast, so (L, L) matrices of statistics give (L, L) HSIC values.

    Args:
        trace_kl: tr(K~ L~).
        sum_k: 1' K~ 1.
        sum_l: 1' L~ 1.
        cross: 1' K~ L~ 1 = (K~1) . (L~1).
        n: number of samples (>= 4).

    Returns:
        HSIC_1 with the broadcast shape of the inputs.

    Raises:
        ValueError: when ``n < 4`` (the estimator divides by n - 3).
    """
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 samples, got n={n}; use more samples")
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def hsic(gram_x: torch.Tensor, gram_y: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
    """HSIC between two kernel matrices of the same samples.

    Args:
        gram_x: (n, n) kernel matrix K of the first representation.
        gram_y: (n, n) kernel matrix L of the second representation.
        unbiased: use the unbiased estimator HSIC_1 of Song et al. (2012) instead of tr(KHLH)/(n-1)^2.

    Returns:
        0-d float64 tensor.
    """
    n = gram_x.shape[0]
    if not unbiased:
        return (centre_gram(gram_x) * centre_gram(gram_y)).sum() / (n - 1) ** 2
    k = gram_x.clone()
    ll = gram_y.clone()
    k.fill_diagonal_(0.0)
    ll.fill_diagonal_(0.0)
    rk, rl = k.sum(dim=1), ll.sum(dim=1)
    return unbiased_hsic_from_stats((k * ll).sum(), rk.sum(), rl.sum(), rk @ rl, n)


def _ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> float:
    """CKA = HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)), refusing undefined cases instead of returning NaN."""
    denom = float(xx) * float(yy)
    if not denom > 0.0:
        raise ValueError(
            f"CKA is undefined: HSIC(X, X)={float(xx):.3g}, HSIC(Y, Y)={float(yy):.3g} (need both > 0). "
            "A representation is constant over the samples, or the unbiased estimate is not positive at this "
            "sample size; use more samples or unbiased=False"
        )
    return float(xy) / denom**0.5


def _use_feature_space(n: int, p: int, q: int) -> bool:
    # Cost of the feature-space route is ~n(pq + p^2 + q^2); the Gram route is ~n^2(p + q). Pick the cheaper:
    # feature space whenever p, q are well below n, Gram matrices when the widths exceed the sample count.
    return p * q + p * p + q * q <= n * (p + q)


def linear_cka(X: ArrayLike, Y: ArrayLike, unbiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same samples.

    Biased: CKA = ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on column-centred X, Y, equal to the HSIC formula with linear
    Gram matrices. Unbiased (``unbiased=True``): HSIC is replaced by HSIC_1 of Song et al. (2012), computed from the
    same statistics, which removes the positive bias that makes biased CKA of independent high-dimensional
    representations large at small n. Uses the feature-space formula when the widths are small compared to n and
    Gram matrices otherwise; both give the same value.

    Args:
        X: (n, ...) representation, flattened to (n, p).
        Y: (n, ...) representation of the same samples, flattened to (n, q).
        unbiased: use the unbiased HSIC estimator (needs n >= 4).

    Returns:
        CKA similarity; in [0, 1] when biased (the unbiased value can fall slightly outside).

    Raises:
        ValueError: on mismatched sample counts, too few samples, non-finite values or a constant representation.
    """
    x, y = as_pair(X, Y, min_samples=4 if unbiased else 2)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    n, p = x.shape
    q = y.shape[1]
    if _use_feature_space(n, p, q):
        xty = x.T @ y
        xtx = x.T @ x
        yty = y.T @ y
        if not unbiased:
            return _ratio((xty**2).sum(), (xtx**2).sum(), (yty**2).sum())
        # Statistics of the zero-diagonal Gram matrices without forming them: with K = XX', diag(K) = row norms,
        # tr(K~L~) = ||X'Y||^2 - diag(K).diag(L), K~1 = X(X'1) - diag(K).
        dx, dy = (x * x).sum(dim=1), (y * y).sum(dim=1)
        sx, sy = x.sum(dim=0), y.sum(dim=0)
        rx, ry = x @ sx - dx, y @ sy - dy
        kx, ky = sx @ sx - dx.sum(), sy @ sy - dy.sum()
        xy = unbiased_hsic_from_stats((xty**2).sum() - dx @ dy, kx, ky, rx @ ry, n)
        xx = unbiased_hsic_from_stats((xtx**2).sum() - dx @ dx, kx, kx, rx @ rx, n)
        yy = unbiased_hsic_from_stats((yty**2).sum() - dy @ dy, ky, ky, ry @ ry, n)
        return _ratio(xy, xx, yy)
    gx, gy = x @ x.T, y @ y.T
    return _ratio(hsic(gx, gy, unbiased=unbiased), hsic(gx, gx, unbiased=unbiased), hsic(gy, gy, unbiased=unbiased))


def rbf_gram(x: torch.Tensor, sigma_fraction: float = 1.0) -> torch.Tensor:
    """RBF kernel matrix exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma = ``sigma_fraction`` x median distance.

    Kornblith et al.'s reference code takes the median over all n^2 squared distances, the zero diagonal included;
    we take it over the n(n-1)/2 distinct pairs, so the bandwidth does not shrink with the diagonal's share at
    small n.

    Args:
        x: (n, d) float64 features.
        sigma_fraction: bandwidth as a fraction of the median pairwise Euclidean distance (> 0).

    Returns:
        (n, n) kernel matrix.

    Raises:
        ValueError: when ``sigma_fraction`` is not positive or all samples coincide.
    """
    if not sigma_fraction > 0:
        raise ValueError(f"sigma_fraction must be > 0, got {sigma_fraction}")
    sq_norms = (x * x).sum(dim=1)
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    median_sq = sq_dist[iu[0], iu[1]].median()
    if not float(median_sq) > 0:
        raise ValueError("RBF bandwidth is zero: the median pairwise distance is 0 (most samples coincide)")
    return torch.exp(-sq_dist / (2.0 * sigma_fraction**2 * median_sq))


def rbf_cka(X: ArrayLike, Y: ArrayLike, sigma_fraction: float = 1.0) -> float:
    """RBF-kernel CKA (Kornblith et al. 2019, Sec. 3.2) between two representations of the same samples.

    Args:
        X: (n, ...) representation, flattened to (n, p).
        Y: (n, ...) representation of the same samples, flattened to (n, q).
        sigma_fraction: kernel bandwidth as a fraction of each representation's median pairwise distance
            (Kornblith et al. report 0.2 to 0.8 and 1.0 behaving similarly).

    Returns:
        CKA similarity in [0, 1] (biased HSIC, n x n Gram matrices: memory O(n^2)).

    Raises:
        ValueError: on mismatched or too few samples, a bad ``sigma_fraction`` or constant representations.
    """
    x, y = as_pair(X, Y, min_samples=3)
    gx, gy = rbf_gram(x, sigma_fraction), rbf_gram(y, sigma_fraction)
    return _ratio(hsic(gx, gy), hsic(gx, gx), hsic(gy, gy))
