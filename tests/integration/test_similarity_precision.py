"""The float32 similarity stage against the float64 path, on real features of the published ResNet-56.

The accuracy bound of ``similarity.precision: float32`` (the default): on 2,500 seeded JPEG CIFAR-10 images
(from the test split, which the checkpoint test unpacks anyway; float32 rounding does not depend on the split),
the unit-by-unit CKA matrix (28 x 28: stem and 27 units, minibatch HSIC at the default calibration batch of 128)
is within 1e-6 of the float64 one, and so are the cka criterion's scores (1 - CKA of intact vs bypassed penultimate
features); the Fisher segmentation of the matrix and the criterion's ranking are the same. Both precisions see the
same float32 features, so the differences are the arithmetic's alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from layerprune.criteria.scores import cka_scores
from layerprune.data import build_dataset
from layerprune.models import get_model, get_units
from layerprune.models.checkpoint import load_external_weights
from layerprune.models.units import forward_from, forward_units, unit_names
from layerprune.segmentation import choose_k, fisher_segments
from layerprune.similarity import MinibatchCKA

pytestmark = [pytest.mark.shared, pytest.mark.slow]
log = logging.getLogger(__name__)

N = 2500
BATCH = 128  # calibration.batch_size's default
BOUND = 1e-6
INPUT_SIZE = (3, 32, 32)
PRECISIONS = ("float32", "float64")


@pytest.fixture(scope="module")
def resnet56_real(shared_dir: Path, cifar10_jpeg_config: dict) -> dict:
    """float32 and float64 CKA matrices and cka scores of the published ResNet-56 on the same 2,500 images.

    One forward pass per batch gives every unit's output; both precisions' matrices are accumulated from it, and
    the bypassed penultimate features of the 9 layer3 candidates are the suffixes run from the cached unit inputs
    (as the extraction stage computes them), which keeps the whole fixture to about 2.3 forward passes.
    """
    files = sorted((shared_dir / "models" / "cifar-resnet").glob("resnet56-*.th"))
    assert len(files) == 1, f"expected one resnet56-<sha>.th in {shared_dir / 'models' / 'cifar-resnet'}"
    model = load_external_weights(get_model("resnet56", num_classes=10), files[0]).eval()
    data = build_dataset({**cifar10_jpeg_config, "test_subset": N}, "test")
    names = unit_names(model)
    candidates = [u.name for u in get_units(model, INPUT_SIZE) if u.removable and u.name.startswith("layer3")]
    positions = [names.index(c) for c in candidates]
    acc = {p: MinibatchCKA(len(names) + 1, precision=p) for p in PRECISIONS}
    intact: list[torch.Tensor] = []
    bypassed: list[list[torch.Tensor]] = [[] for _ in candidates]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # CI's two cores; this is the suite's one test at the real scale
    try:
        with torch.no_grad():
            for x, _ in DataLoader(data, batch_size=BATCH):
                stem, outputs = forward_units(model, x)
                unit_inputs = (stem, *outputs)  # unit p's input is entry p (the stem's output for unit 0)
                for a in acc.values():
                    a.update([t.flatten(1) for t in unit_inputs])
                intact.append(model.forward_penultimate(outputs[-1]))
                for c, position in enumerate(positions):
                    bypassed[c].append(forward_from(model, unit_inputs[position], position + 1))
    finally:
        torch.set_num_threads(threads)
    intact_np = torch.cat(intact).numpy()
    bypassed_np = {c: torch.cat(b).numpy() for c, b in zip(candidates, bypassed)}
    return {
        "matrix": {p: a.compute() for p, a in acc.items()},
        "samples": acc["float32"].num_samples,
        "scores": {p: cka_scores(intact_np, bypassed_np, precision=p) for p in PRECISIONS},
        "intact_dtype": intact_np.dtype,
    }


def test_float32_cka_matrix_within_bound_of_float64(resnet56_real: dict, record_property) -> None:
    m32, m64 = resnet56_real["matrix"]["float32"], resnet56_real["matrix"]["float64"]
    assert resnet56_real["samples"] == N and m32.shape == (28, 28)
    assert np.isfinite(m64).all() and 0.05 < m64[np.triu_indices(28, 1)].mean() < 0.99  # a real, non-trivial matrix
    error = float(np.abs(m32 - m64).max())
    record_property("max_abs_error", error)
    log.info("ResNet-56, n=%d: float32 CKA matrix max |error| vs float64 = %.3g", N, error)
    assert error <= BOUND
    assert error > 0  # the float32 path really ran in float32


def test_float32_matrix_gives_the_same_segments(resnet56_real: dict) -> None:
    # SGLP consumes the matrix through Fisher's segmentation (stem row and column excluded)
    m32, m64 = (resnet56_real["matrix"][p][1:, 1:] for p in ("float32", "float64"))
    k = choose_k(m64)
    assert choose_k(m32) == k
    assert fisher_segments(m32, k) == fisher_segments(m64, k)


def test_float32_cka_scores_within_bound_and_same_ranking(resnet56_real: dict, record_property) -> None:
    assert resnet56_real["intact_dtype"] == np.float32  # the extracted features are float32: the default path
    s32, s64 = resnet56_real["scores"]["float32"], resnet56_real["scores"]["float64"]
    units = sorted(s64)
    v32, v64 = np.array([s32[u] for u in units]), np.array([s64[u] for u in units])
    error = float(np.abs(v32 - v64).max())
    record_property("max_abs_error", error)
    assert error <= BOUND
    assert list(np.argsort(v32, kind="stable")) == list(np.argsort(v64, kind="stable"))
    # ... and not by luck: the closest two scores are further apart than twice the error
    gap = float(np.diff(np.sort(v64)).min())
    log.info("cka scores: max |error| %.3g, smallest gap between scores %.3g", error, gap)
    assert gap > 2 * error
