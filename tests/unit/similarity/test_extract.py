"""The one-pass extraction (``layerprune.similarity.extract``) on a trained digits ResNet-20.

What users rely on: the prefix-cached bypassed features are exactly those of the model with that unit
bypassed; the CKA matrix is the one the similarity module computes on the same features; the artifact is
small (only penultimate-sized arrays) and a corrupt one fails with a clear message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "criteria"))
from digits_resnet import INPUT_SIZE, calibration, load_trained

from layerprune.models import bypass, get_units
from layerprune.models.units import record_outputs
from layerprune.similarity import cka_matrix, linear_cka
from layerprune.similarity import extract as extract_module
from layerprune.similarity.extract import Representations, extract_representations
from layerprune.similarity.streaming import StreamingLinearCKA

N = 128


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return load_trained(tmp_path_factory).model.eval()


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole calibration set as one (N, 1, 16, 16) tensor and (N,) labels."""
    xs, ys = zip(*calibration(size=N, batch_size=N))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def reps(model: torch.nn.Module, images: tuple[torch.Tensor, torch.Tensor]) -> Representations:
    """Extraction with the whole calibration set as one batch (so the minibatch CKA is the full-data one)."""
    x, y = images
    return extract_representations(model, [(x, y)], input_size=INPUT_SIZE, progress=False)


def _penultimate(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with record_outputs(model, ["penultimate"]) as out, torch.no_grad():
        model(x)
    return out["penultimate"].numpy()


def test_candidates_are_the_removable_units(model, reps):
    units = get_units(model, INPUT_SIZE)
    assert reps.units == [u.name for u in units]
    assert reps.candidates == [u.name for u in units if u.removable]
    # ResNet-20: three stages of three units, the first unit of stages 2 and 3 downsamples
    assert reps.candidates == [
        "layer1.0",
        "layer1.1",
        "layer1.2",
        "layer2.1",
        "layer2.2",
        "layer3.1",
        "layer3.2",
    ]


def test_intact_features_are_the_models_penultimate(model, images, reps):
    x, y = images
    np.testing.assert_allclose(reps.intact, _penultimate(model, x), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(reps.labels, y.numpy())
    with torch.no_grad():
        expected_loss = float(F.cross_entropy(model(x), y))
    assert reps.intact_loss == pytest.approx(expected_loss, rel=1e-5)


def test_bypassed_features_equal_the_bypassed_model(model, images):
    """Prefix caching changes nothing: it equals rerunning the whole model, and the model under ``bypass``."""
    x, y = images
    batches = [(x[:64], y[:64]), (x[64:], y[64:])]
    cached = extract_representations(model, batches, input_size=INPUT_SIZE, matrix=False, progress=False)
    full = extract_representations(
        model,
        batches,
        input_size=INPUT_SIZE,
        matrix=False,
        prefix_cache=False,
        progress=False,
    )
    np.testing.assert_allclose(cached.bypassed, full.bypassed, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cached.bypassed_loss, full.bypassed_loss, atol=1e-6, rtol=0)
    for name in cached.candidates:
        with bypass(model, [name]):
            expected = _penultimate(model, x)
            with torch.no_grad():
                expected_loss = float(F.cross_entropy(model(x), y))
        np.testing.assert_allclose(cached.bypassed_of(name), expected, atol=1e-5, rtol=0, err_msg=name)
        assert cached.bypassed_loss[cached.candidates.index(name)] == pytest.approx(expected_loss, rel=1e-5)
        # and bypassing a unit of a trained model does change the features
        assert not np.allclose(cached.bypassed_of(name), cached.intact, atol=1e-3)


def test_io_cosine_is_nan_exactly_for_downsampling_units(model, images, reps):
    removable = {u.name: u.removable for u in get_units(model, INPUT_SIZE)}
    for name, value in zip(reps.units, reps.io_cosine):
        assert np.isnan(value) == (not removable[name]), name
    # the finite ones are mean cosines between the unit's input and output
    x, _ = images
    with record_outputs(model, ["layer1.0", "layer1.1"]) as out, torch.no_grad():
        model(x)
    expected = F.cosine_similarity(out["layer1.0"].flatten(1), out["layer1.1"].flatten(1), dim=1).mean()
    assert reps.io_cosine[reps.units.index("layer1.1")] == pytest.approx(float(expected), abs=1e-5)
    finite = reps.io_cosine[~np.isnan(reps.io_cosine)]
    assert np.all((finite >= -1) & (finite <= 1))


def test_cka_matrix_equals_cka_of_hooked_features(model, images, reps):
    matrix = reps.cka_matrix
    names = reps.matrix_names
    assert names == ["stem", *reps.units]
    assert matrix.shape == (len(names), len(names))
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
    # the same features, collected by forward hooks on the units (the stem by its own forward)
    x, _ = images
    with record_outputs(model, reps.units) as out, torch.no_grad():
        model(x)
        stem = model.forward_stem(x)
    features = [stem.flatten(1).numpy()] + [out[name].flatten(1).numpy() for name in reps.units]
    np.testing.assert_allclose(matrix, cka_matrix(features, mode="unbiased"), atol=1e-6, rtol=0)
    # neighbouring units of a residual network are more similar than the stem and the last unit
    assert matrix[1, 2] > matrix[0, -1]


def test_save_load_round_trip(reps, tmp_path):
    path = reps.save(tmp_path / "representations.npz")
    loaded = Representations.load(path)
    assert loaded.units == reps.units
    assert loaded.candidates == reps.candidates
    assert loaded.matrix_names == reps.matrix_names
    assert loaded.cka_mode == reps.cka_mode == "unbiased"
    assert loaded.intact_loss == reps.intact_loss
    for key in (
        "labels",
        "intact",
        "bypassed",
        "bypassed_loss",
        "io_cosine",
        "cka_matrix",
    ):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(reps, key), err_msg=key)
    assert not list(tmp_path.glob("*.tmp*")), "the atomic write left a temp file behind"


def test_artifact_holds_only_penultimate_sized_arrays(model, reps, tmp_path):
    """Nothing grows with n^2 or with feature-map size: per-sample arrays are (n,) or (c, n, d), d = 64."""
    path = reps.save(tmp_path / "representations.npz")
    n, d, c, L = N, 64, len(reps.candidates), len(reps.units)
    expected = {
        "units": (L,),
        "candidates": (c,),
        "labels": (n,),
        "intact": (n, d),
        "bypassed": (c, n, d),
        "intact_loss": (),
        "bypassed_loss": (c,),
        "io_cosine": (L,),
        "matrix_names": (L + 1,),
        "cka_matrix": (L + 1, L + 1),
        "cka_mode": (),
        "bypass_cka": (c,),
    }
    with np.load(path) as z:
        assert {k: z[k].shape for k in z.files} == expected
    assert model.linear.in_features == d


def test_corrupt_or_incomplete_file_is_a_clear_error(reps, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="not a representations file.*rerun rule extract_activations"):
        Representations.load(garbage)
    # a valid npz that lacks a field (e.g. written by another tool)
    partial = tmp_path / "partial.npz"
    np.savez(partial, units=np.array(reps.units), intact=reps.intact)
    with pytest.raises(ValueError, match="partial.npz is truncated, empty or not a representations file"):
        Representations.load(partial)
    with pytest.raises(FileNotFoundError, match="layerprune extract"):
        Representations.load(tmp_path / "missing.npz")


def test_a_partial_last_batch_counts_in_the_cka_matrix(model, images):
    """Batches of 50, 50 and 28: the matrix is the minibatch estimate over all three, the features cover all 128."""
    x, y = images
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, N, 50)]
    assert [len(b[0]) for b in batches] == [50, 50, 28]
    reps = extract_representations(model, batches, input_size=INPUT_SIZE, progress=False)
    with record_outputs(model, reps.units) as out, torch.no_grad():
        model(x)
        stem = model.forward_stem(x)
    features = [stem.flatten(1).numpy()] + [out[name].flatten(1).numpy() for name in reps.units]
    expected = cka_matrix(features, mode="unbiased", batch_size=50)
    without_last = cka_matrix([f[:100] for f in features], mode="unbiased", batch_size=50)
    assert np.abs(expected - without_last).max() > 1e-4  # the last batch changes the estimate
    np.testing.assert_allclose(reps.cka_matrix, expected, atol=1e-6, rtol=0)
    assert reps.intact.shape[0] == N and reps.bypassed.shape[1] == N and reps.labels.shape == (N,)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_truncated_or_empty_file_names_the_file_and_the_rule(reps, tmp_path, damage):
    path = reps.save(tmp_path / "representations.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(ValueError) as err:
        Representations.load(path)
    assert str(path) in str(err.value) and "rule extract_activations" in str(err.value)


def _resaved(reps: Representations, path: Path, **arrays: np.ndarray) -> Path:
    """The artifact with some arrays replaced, as another tool or a damaged run might leave it."""
    reps.save(path)
    with np.load(path) as z:
        content = {k: z[k] for k in z.files}
    np.savez(path, **{**content, **arrays})
    return path


def test_fewer_bypassed_arrays_than_candidates_is_refused(reps, tmp_path):
    path = _resaved(reps, tmp_path / "r.npz", bypassed=reps.bypassed[:-1], bypassed_loss=reps.bypassed_loss[:-1])
    c = len(reps.candidates)
    with pytest.raises(ValueError, match=rf"holds {c - 1} bypassed feature arrays .* for {c} candidate units") as err:
        Representations.load(path)
    assert str(path) in str(err.value) and "rule extract_activations" in str(err.value)


def test_intact_and_bypassed_features_of_another_width_are_refused(reps, tmp_path):
    path = _resaved(reps, tmp_path / "r.npz", intact=reps.intact[:, :32])
    with pytest.raises(ValueError, match=r"bypassed features are \(128, 64\) .* intact ones \(128, 32\)") as err:
        Representations.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("precision", "rel"), [("float64", 1e-10), (None, 1e-5)])
def test_streamed_bypass_cka_equals_the_in_memory_cka(model, images, precision, rel):
    """The cka criterion's values, streamed over batches of 32, are linear CKA over all N samples of the kept
    features (float64: to rounding; the default float32 products: to float32 rounding of 1 - CKA)."""
    x, y = images
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, N, 32)]
    reps = extract_representations(model, batches, input_size=INPUT_SIZE, precision=precision, progress=False)
    in_memory = np.array([linear_cka(reps.intact, reps.bypassed_of(c), precision=precision) for c in reps.candidates])
    np.testing.assert_allclose(1.0 - reps.bypass_cka, 1.0 - in_memory, rtol=rel, atol=1e-12)


def test_without_bypassed_features_only_their_streamed_cka_is_kept(model, images, tmp_path):
    x, y = images
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, N, 32)]
    kept = extract_representations(model, batches, input_size=INPUT_SIZE, progress=False)
    lean = extract_representations(model, batches, input_size=INPUT_SIZE, bypassed_features=False, progress=False)
    assert lean.bypassed.shape == (len(lean.candidates), 0, 64)
    np.testing.assert_array_equal(lean.bypass_cka, kept.bypass_cka)
    np.testing.assert_array_equal(lean.bypassed_loss, kept.bypassed_loss)
    back = Representations.load(lean.save(tmp_path / "lean.npz"))
    np.testing.assert_array_equal(back.bypass_cka, kept.bypass_cka)
    with pytest.raises(ValueError, match="no bypassed features.*Consensus"):
        back.bypassed_of(back.candidates[0])


def test_the_streamed_cka_never_sees_more_than_one_batch(model, images, monkeypatch):
    """Memory of the streamed criterion does not grow with n: the accumulator receives one batch's rows at a time
    and its state has the same size after 2 batches as after 8."""
    seen: list[int] = []
    sizes: list[int] = []
    original = StreamingLinearCKA.update

    def update(self, reference, others):  # type: ignore[no-untyped-def]
        seen.extend([reference.shape[0], *(o.shape[0] for o in others)])
        original(self, reference, others)
        state = [self._xx, *self._xy, *self._yy, self._x.sums, *(m.sums for m in self._y)]
        sizes.append(sum(t.numel() for t in state))

    monkeypatch.setattr(extract_module.StreamingLinearCKA, "update", update)
    x, y = images
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, N, 16)]
    extract_representations(model, batches, input_size=INPUT_SIZE, bypassed_features=False, progress=False)
    assert max(seen) == 16 and len(sizes) == N // 16
    assert sizes[1] == sizes[-1]


def test_similarity_command_writes_an_empty_candidate_table_without_bypassed_features(model, images, tmp_path):
    from layerprune.cli import main as cli_main

    x, y = images
    lean = extract_representations(model, [(x, y)], input_size=INPUT_SIZE, bypassed_features=False, progress=False)
    path = lean.save(tmp_path / "lean.npz")
    out = {k: tmp_path / f"{k}.csv" for k in ("matrix", "candidates")}
    cli_main(["similarity", "--representations", str(path), "--metrics", "cka", "procrustes",
              "--matrix", str(out["matrix"]), "--candidates", str(out["candidates"])])  # fmt: skip
    assert out["candidates"].read_text().strip() == "unit,metric,distance"
    assert len(out["matrix"].read_text().splitlines()) == 1 + len(lean.matrix_names) ** 2
