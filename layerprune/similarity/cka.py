"""Centred kernel alignment (CKA) between two representations of the same samples.

Linear and RBF CKA of Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019
(https://arxiv.org/abs/1905.00414), with the unbiased HSIC estimator of Song et al., "Feature Selection via
Dependence Maximization", JMLR 2012 (https://jmlr.org/papers/v13/song12a.html), as used for minibatch CKA by
Nguyen, Raghu & Kornblith, ICLR 2021 (https://arxiv.org/abs/2010.15327).

All functions are pure: they accept torch tensors (any device) or numpy arrays of shape (n, ...) and flatten the
trailing dimensions into features. Linear CKA runs its expensive products in the features' precision (float32 for
network features, see ``precision`` in :mod:`layerprune.similarity._inputs`) and sums everything derived from them
in float64; RBF CKA computes in float64.

Two exact forms of the same statistics (:func:`hsic_statistics`), chosen per unit by their cost
(:func:`choose_forms`): the b x b Gram matrix K = XX' of a unit's centred features (cost b^2 d), or the features
themselves, whose inner products with another unit are the cross-covariance X'Y (tr(KL) = ||X'Y||_F^2, cost
b d_x d_y). Wide units with few samples (image units: d = 4,096-16,384, b = 256) take the Gram form, narrow units
with many samples (language-model tokens: d = 64-8,192, b up to thousands) the feature form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layerprune.similarity._inputs import ArrayLike, Precision, as_pair, centre, compute_dtype, matmul_precision

__all__ = [
    "HsicStatistics",
    "centre_gram",
    "choose_forms",
    "form_cost",
    "hsic",
    "hsic_statistics",
    "linear_cka",
    "rbf_cka",
    "rbf_gram",
    "unbiased_hsic_from_stats",
]

# A unit whose centred values are below this fraction of its raw magnitude is treated as constant on the batch:
# rounding residue would otherwise pose as signal. The float32 value is about 8 units in the last place.
_CONSTANT_RTOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-6}


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


def form_cost(widths: Sequence[int], n: int, features: Sequence[bool]) -> int:
    """Multiply-accumulates of :func:`hsic_statistics` for one assignment of forms.

    Gram form: b^2 d_i for the Gram matrix, b^2 per pair of Gram units (one inner product of flattened Gram
    matrices). Feature form: b d_i d_j per pair of feature units (the cross-covariance X_i'X_j, the unit with
    itself included) and b^2 d_j per pair of a Gram unit with a feature unit (K_i X_j).

    Args:
        widths: d_i of every unit.
        n: samples (b).
        features: True where a unit takes the feature form.
    """
    gram = [d for d, f in zip(widths, features) if not f]
    feat = [d for d, f in zip(widths, features) if f]
    cost = n * n * (sum(gram) + len(gram) ** 2)
    cost += n * sum(feat[i] * feat[j] for i in range(len(feat)) for j in range(i, len(feat)))
    return cost + n * n * len(gram) * sum(feat)


def choose_forms(widths: Sequence[int], n: int) -> list[bool]:
    """The cheaper exact form per unit (True = feature form), by :func:`form_cost`.

    A unit is narrow or wide only relative to the others and to n, so the assignments tried are "the k narrowest
    units in feature form, the rest as Gram matrices" for k = 0..L, and the cheapest wins (ties: Gram form). With
    every d_i >= n the Gram form always wins; with every d_i well below n the feature form does.
    """
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    best: list[bool] = [False] * len(widths)
    best_cost = form_cost(widths, n, best)
    for k in range(1, len(widths) + 1):
        trial = [False] * len(widths)
        for i in order[:k]:
            trial[i] = True
        cost = form_cost(widths, n, trial)
        if cost < best_cost:
            best, best_cost = trial, cost
    return best


@dataclass
class HsicStatistics:
    """Everything linear HSIC needs about L units on the same n samples, in float64.

    Attributes:
        trace: (L, L) tr(K_i K_j) of the centred Gram matrices K_i = X_i X_i' (diagonals included).
        diag: (L, n) diag(K_i), the squared norms of the centred samples.
        rows: (L, n) K_i 1 (zero up to rounding, since the features are centred).
        n: number of samples.
    """

    trace: torch.Tensor
    diag: torch.Tensor
    rows: torch.Tensor
    n: int

    def biased(self) -> torch.Tensor:
        """(L, L) tr(K_i H K_j H) = (n - 1)^2 biased HSIC (the K_i are centred already)."""
        return self.trace

    def unbiased(self) -> torch.Tensor:
        """(L, L) unbiased HSIC_1 (Song et al. 2012) of the zero-diagonal Gram matrices K~_i.

        tr(K~_i K~_j) = tr(K_i K_j) - diag(K_i).diag(K_j) and K~_i 1 = K_i 1 - diag(K_i).
        """
        rows = self.rows - self.diag
        totals = rows.sum(dim=1)
        trace = self.trace - self.diag @ self.diag.T
        return unbiased_hsic_from_stats(trace, totals[:, None], totals[None, :], rows @ rows.T, self.n)


def _constant_or_bad(
    centred_sq: torch.Tensor, mean_sq: torch.Tensor, n: int, dtype: torch.dtype, names: Sequence[str]
) -> torch.Tensor:
    """Mask of units constant on the samples up to rounding, ||X - 1m'|| <= rtol ||X|| (Frobenius norms, with
    ||X||^2 = ||X - 1m'||^2 + n ||m||^2), from statistics already computed; raises on non-finite features (a NaN
    or infinity in a column makes its mean, hence ||m||^2, non-finite)."""
    bad = ~torch.isfinite(mean_sq)
    if bool(bad.any()):
        name = names[int(bad.nonzero()[0, 0])]
        raise ValueError(f"{name} contains NaN or infinite values; check the activations that produced it")
    return centred_sq <= _CONSTANT_RTOL[dtype] ** 2 * (centred_sq + n * mean_sq)


@torch.no_grad()
def hsic_statistics(
    features: Sequence[torch.Tensor],
    *,
    precision: Precision | None = None,
    forms: Sequence[bool] | None = None,
    names: Sequence[str] | None = None,
) -> HsicStatistics:
    """The float64 statistics of linear HSIC among L representations of the same n samples.

    Each unit is centred (:func:`layerprune.similarity._inputs.centre`) into the compute dtype of ``precision``;
    its Gram matrix or cross-covariances are multiplied in that dtype, and every product is converted to float64
    before anything is summed, so rounding grows with one product's length (d_i or n), not with the number of
    pairs or batches. Feature-form units are centred with a float64 mean; a Gram-form unit with a float32 mean
    (one cheap pass), after which its Gram matrix is double-centred in float64 (H K H, O(n^2)), which removes
    exactly what the float32 mean left. Non-finite features raise; a unit constant on the samples (up to
    rounding) contributes exact zeros.

    Args:
        features: L (n, d_i) matrices on one device (see :func:`layerprune.similarity._inputs.as_matrix`;
            finiteness is checked here).
        precision: arithmetic of the products (None: the features' precision; see
            :func:`layerprune.similarity._inputs.compute_dtype`).
        forms: per unit True for the feature form, False for the Gram form; None chooses with
            :func:`choose_forms`. Both give the same statistics up to rounding.
        names: the units' names for error messages (default ``features[i]``).

    Returns:
        :class:`HsicStatistics` on the features' device.

    Raises:
        ValueError: when a representation holds NaN or infinite values.
    """
    n = int(features[0].shape[0])
    widths = [int(f.shape[1]) for f in features]
    if forms is None:
        forms = choose_forms(widths, n)
    if names is None:
        names = [f"features[{i}]" for i in range(len(features))]
    dtype = compute_dtype(precision, *(f.dtype for f in features))
    device = features[0].device
    f64 = torch.float64
    num = len(features)
    trace = torch.zeros(num, num, dtype=f64, device=device)
    diag = torch.zeros(num, n, dtype=f64, device=device)
    rows = torch.zeros(num, n, dtype=f64, device=device)
    gram_ids = [i for i in range(num) if not forms[i]]
    feat_ids = [i for i in range(num) if forms[i]]
    feat_names = [names[i] for i in feat_ids]
    gram_names = [names[i] for i in gram_ids]
    with matmul_precision(precision):
        # Feature form: centred features kept (in the compute dtype, and in float64 for the cheap O(n d) sums).
        feats: list[torch.Tensor] = []
        feats64: list[torch.Tensor] = []
        mean_sq = torch.zeros(len(feat_ids), dtype=f64, device=device)
        for a, i in enumerate(feat_ids):
            c, mean = centre(features[i], dtype, exact_mean=True)
            feats.append(c)
            feats64.append(c.to(f64))
            mean_sq[a] = (mean @ mean.T).squeeze()
        if feat_ids:
            sq = torch.stack([(c64 * c64).sum(dim=1) for c64 in feats64])
            constant = _constant_or_bad(sq.sum(dim=1), mean_sq, n, dtype, feat_names).tolist()
            for a, is_constant in enumerate(constant):
                if is_constant:
                    feats[a], feats64[a] = torch.zeros_like(feats[a]), torch.zeros_like(feats64[a])
                    sq[a] = 0.0
            index = torch.tensor(feat_ids, device=device)
            diag[index] = sq
            rows[index] = torch.stack([c64 @ c64.sum(dim=0) for c64 in feats64])
        for a, i in enumerate(feat_ids):
            for b_, j in enumerate(feat_ids[a:], start=a):
                value = (feats[a].T @ feats[b_]).to(f64).square().sum()
                trace[i, j] = trace[j, i] = value
        # Gram form: one unit's centred copy at a time; the Gram matrices are stacked and finished in a few
        # batched float64 operations (double-centring, diagonals, row sums, all pairwise inner products).
        if gram_ids:
            grams = torch.empty(len(gram_ids), n, n, dtype=dtype, device=device)
            mean_sq = torch.zeros(len(gram_ids), dtype=f64, device=device)
            for a, i in enumerate(gram_ids):
                c, mean = centre(features[i], dtype)
                torch.matmul(c, c.T, out=grams[a])
                mean_sq[a] = (mean @ mean.T).squeeze()
                del c
            g64 = grams.to(f64)
            g64 -= g64.mean(dim=1, keepdim=True)  # H K H, exact in float64: removes the float32 mean's residue
            g64 -= g64.mean(dim=2, keepdim=True)
            sq = g64.diagonal(dim1=1, dim2=2).sum(dim=1)
            constant = _constant_or_bad(sq, mean_sq, n, dtype, gram_names)
            if bool(constant.any()):
                g64[constant] = 0.0
                grams[constant] = 0.0
            index = torch.tensor(gram_ids, device=device)
            diag[index] = g64.diagonal(dim1=1, dim2=2)
            rows[index] = g64.sum(dim=2)
            flat = g64.reshape(len(gram_ids), -1)
            trace[index[:, None], index[None, :]] = flat @ flat.T
            for a, i in enumerate(gram_ids):  # tr(K_i X_j X_j') = sum((K_i X_j) * X_j)
                for b_, j in enumerate(feat_ids):
                    value = ((grams[a] @ feats[b_]).to(f64) * feats64[b_]).sum()
                    trace[i, j] = trace[j, i] = value
    return HsicStatistics(trace=trace, diag=diag, rows=rows, n=n)


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


def linear_cka(X: ArrayLike, Y: ArrayLike, unbiased: bool = False, *, precision: Precision | None = None) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same samples.

    Biased: CKA = ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on column-centred X, Y, equal to the HSIC formula with linear
    Gram matrices. Unbiased (``unbiased=True``): HSIC is replaced by HSIC_1 of Song et al. (2012), computed from the
    same statistics, which removes the positive bias that makes biased CKA of independent high-dimensional
    representations large at small n. Uses the feature-space form when the widths are small compared to n and
    Gram matrices otherwise (:func:`choose_forms`); both give the same value.

    Args:
        X: (n, ...) representation, flattened to (n, p).
        Y: (n, ...) representation of the same samples, flattened to (n, q).
        unbiased: use the unbiased HSIC estimator (needs n >= 4).
        precision: arithmetic of the products: None (default) = the features' own precision (float32 features in
            float32, float64 in float64), or one of ``PRECISIONS``; the sums are float64 in every case.

    Returns:
        CKA similarity; in [0, 1] when biased (the unbiased value can fall slightly outside).

    Raises:
        ValueError: on mismatched sample counts, too few samples, non-finite values or a constant representation.
    """
    x, y = as_pair(X, Y, min_samples=4 if unbiased else 2, dtype=None, check_finite=False)
    stats = hsic_statistics([x, y], precision=precision, names=["X", "Y"])
    h = stats.unbiased() if unbiased else stats.biased()
    return _ratio(h[0, 1], h[0, 0], h[1, 1])


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
