"""Precision and the two exact forms of the linear HSIC statistics: what stays equal, what is chosen, what it costs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from layerprune.similarity import MinibatchCKA, cka_matrix, linear_cka
from layerprune.similarity._inputs import PRECISIONS, centre, compute_dtype, matmul_precision
from layerprune.similarity.cka import choose_forms, form_cost, hsic, hsic_statistics


def _units(n: int, widths: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    """Related float32 'unit outputs' of mixed widths: each a noisy ReLU map of the previous one, offset from 0."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, widths[0], generator=gen)
    out = [h]
    for width in widths[1:]:
        w = torch.randn(h.shape[1], width, generator=gen) / math.sqrt(h.shape[1])
        h = torch.relu(h @ w) + 0.3 * torch.randn(n, width, generator=gen)
        out.append(h)
    return [(u + 2.0).float() for u in out]


def _by_definition(features: list[torch.Tensor], *, unbiased: bool) -> np.ndarray:
    """CKA matrix from explicit float64 Gram matrices of the uncentred features and :func:`hsic` (one batch)."""
    grams = [f.double() @ f.double().T for f in features]
    h = np.array([[float(hsic(a, b, unbiased=unbiased)) for b in grams] for a in grams])
    return h / np.sqrt(np.outer(np.diag(h), np.diag(h)))


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("forms", [(False,) * 4, (True,) * 4, (True, False, True, False)])
def test_both_forms_give_the_definition(unbiased: bool, forms: tuple[bool, ...]) -> None:
    feats = _units(50, (8, 80, 12, 60))
    stats = hsic_statistics([f.double() for f in feats], forms=forms)
    h = (stats.unbiased() if unbiased else stats.biased()).numpy()
    got = h / np.sqrt(np.outer(np.diag(h), np.diag(h)))
    np.testing.assert_allclose(got, _by_definition(feats, unbiased=unbiased), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["unbiased", "sglp"])
def test_minibatch_matrix_does_not_depend_on_the_forms(mode: str) -> None:
    feats = _units(120, (6, 40, 10, 50, 3))
    results = []
    for forms in [None, [False] * 5, [True] * 5, [True, False, False, True, True]]:
        acc = MinibatchCKA(5, mode=mode, precision="float64", forms=forms)
        for s in range(0, 120, 30):
            acc.update([f[s : s + 30] for f in feats])
        results.append(acc.compute())
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-10, atol=1e-12)


def _brute_force_cost(widths: list[int], n: int) -> int:
    return min(form_cost(widths, n, list(trial)) for trial in itertools.product([False, True], repeat=len(widths)))


@pytest.mark.parametrize(
    ("widths", "n"),
    [([16, 300, 40, 5, 1000], 64), ([64] * 6, 2048), ([8192, 64, 64, 4096], 512), ([100, 200, 300], 200)],
)
def test_chosen_forms_are_the_cheapest_assignment(widths: list[int], n: int) -> None:
    chosen = choose_forms(widths, n)
    assert form_cost(widths, n, chosen) == _brute_force_cost(widths, n)


def test_image_units_take_gram_form_and_token_units_feature_form() -> None:
    # ResNet-56 at batch 256: the stem and 9 units of 16x32x32, 9 of 32x16x16, 9 of 64x8x8 -> all Gram matrices
    resnet56 = [16384] * 10 + [8192] * 9 + [4096] * 9
    assert choose_forms(resnet56, 256) == [False] * 28
    # a small language model's tokens: width 64, 2,048 tokens a batch -> all cross-covariances
    assert choose_forms([64] * 6, 2048) == [True] * 6
    # feature form: b d_i d_j for each of the 21 pairs (self pairs included); Gram form: b^2 d per unit + b^2 a pair
    assert form_cost([64] * 6, 2048, [True] * 6) == 2048 * 21 * 64 * 64
    assert form_cost([64] * 6, 2048, [False] * 6) == 2048 * 2048 * (6 * 64 + 6 * 6)


def test_float32_matrix_is_within_1e6_of_float64_and_default_follows_the_features() -> None:
    feats = _units(256, (4096, 4096, 1024, 2048, 64))
    f64 = cka_matrix(feats, batch_size=64, precision="float64")
    f32 = cka_matrix(feats, batch_size=64, precision="float32")
    assert np.abs(f32 - f64).max() <= 1e-6
    assert np.abs(f32 - f64).max() > 0  # really computed in float32
    np.testing.assert_array_equal(cka_matrix(feats, batch_size=64), f32)  # float32 features: float32 by default
    as64 = [f.double() for f in feats]
    np.testing.assert_array_equal(cka_matrix(as64, batch_size=64), f64)  # float64 features: float64 by default


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_float32_close_to_float64_in_both_forms(unbiased: bool) -> None:
    narrow = _units(2000, (64, 64))  # feature form
    wide = _units(100, (3000, 2000))  # Gram form
    for x, y in (narrow, wide):
        exact = linear_cka(x, y, unbiased=unbiased, precision="float64")
        assert linear_cka(x, y, unbiased=unbiased) == pytest.approx(exact, abs=1e-6)


def test_centring_is_safe_for_features_far_from_zero() -> None:
    # A large common offset: a mean summed in float32 leaves a shift of up to n u |m|; both forms remove it.
    for n, widths in ((500, (32, 48)), (64, (300, 200))):  # feature form, Gram form
        feats = [f + 3000.0 for f in _units(n, widths)]
        for unbiased in (False, True):
            exact = linear_cka(feats[0], feats[1], unbiased=unbiased, precision="float64")
            got = linear_cka(feats[0], feats[1], unbiased=unbiased, precision="float32")
            assert got == pytest.approx(exact, abs=1e-6)
    x = _units(500, (32,))[0] + 3000.0
    for exact_mean in (False, True):
        centred, mean = centre(x, torch.float32, exact_mean=exact_mean)
        assert centred.dtype == torch.float32 and mean.shape == (1, 32)
    # the float64-accumulated mean leaves only its own rounding: a few units in the last place of the mean
    residue = float(centred.double().mean(dim=0).abs().max())
    assert residue <= 8 * float(torch.finfo(torch.float32).eps) * float(x.double().mean(dim=0).abs().max())


def test_non_finite_features_are_refused_by_name() -> None:
    feats = _units(20, (6, 6))
    feats[1][3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"features\[1\] contains NaN or infinite values"):
        cka_matrix(feats)
    with pytest.raises(ValueError, match="Y contains NaN or infinite values"):
        linear_cka(feats[0], feats[1])
    feats[1][3, 2] = float("inf")
    with pytest.raises(ValueError, match="Y contains NaN or infinite values"):
        linear_cka(feats[0], feats[1], precision="float64")


def test_constant_float32_unit_is_nan_not_noise(caplog: pytest.LogCaptureFixture) -> None:
    feats = _units(40, (10, 10))
    feats.append(torch.full((40, 7), 0.1, dtype=torch.float32))
    got = cka_matrix(feats)
    assert np.isnan(got[2]).all() and np.isfinite(got[:2, :2]).all()


def test_compute_dtype_and_errors() -> None:
    assert compute_dtype(None, torch.float32, torch.float16) == torch.float32
    assert compute_dtype(None, torch.float32, torch.float64) == torch.float64
    assert compute_dtype("float64", torch.float32) == torch.float64
    assert compute_dtype("tf32", torch.float64) == torch.float32
    assert compute_dtype("bfloat16", torch.float32) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        compute_dtype("float16", torch.float32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown precision"):
        MinibatchCKA(3, precision="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forms has 2 entries"):
        MinibatchCKA(3, forms=[True, False])
    assert set(PRECISIONS) == {"float32", "float64", "tf32", "bfloat16"}


def test_tf32_switch_is_scoped() -> None:
    before = torch.get_float32_matmul_precision()
    with matmul_precision("tf32"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with matmul_precision("float32"):
        assert torch.get_float32_matmul_precision() == before


def test_opt_in_low_precisions_run_and_stay_close() -> None:
    feats = _units(128, (512, 256, 128))
    f64 = cka_matrix(feats, batch_size=64, precision="float64")
    # bfloat16 keeps 8 bits of mantissa: a visible but small error, which is why it is opt-in only
    bf16 = cka_matrix(feats, batch_size=64, precision="bfloat16")
    assert 1e-6 < np.abs(bf16 - f64).max() < 2e-2
    np.testing.assert_allclose(cka_matrix(feats, batch_size=64, precision="tf32"), f64, atol=1e-3)


def test_precision_config_key_defaults_to_float32_and_rejects_typos() -> None:
    from layerprune.config import validate_config

    assert validate_config({"experiment": "x"})["similarity"]["precision"] == "float32"
    assert validate_config({"experiment": "x", "similarity": {"precision": "float64"}})["similarity"]["precision"] == (
        "float64"
    )
    with pytest.raises(ValueError, match="float16"):
        validate_config({"experiment": "x", "similarity": {"precision": "float16"}})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["unbiased", "sglp"])
def test_cuda_matrix_matches_the_cpu_float64_matrix(mode: str) -> None:
    feats = _units(256, (4096, 2048, 64, 1024))
    before = torch.get_float32_matmul_precision()
    reference = cka_matrix(feats, mode=mode, batch_size=128, precision="float64")
    on_gpu = [f.cuda() for f in feats]
    for precision, bound in (("float64", 1e-10), ("float32", 1e-6), ("tf32", 1e-2), ("bfloat16", 2e-2)):
        got = cka_matrix(on_gpu, mode=mode, batch_size=128, precision=precision)
        assert np.abs(got - reference).max() <= bound, precision
    assert torch.get_float32_matmul_precision() == before  # TF32 was switched on only inside the products
