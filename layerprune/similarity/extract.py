"""One pass over the calibration data that captures everything the criteria need.

For every batch the model runs once up to each unit, keeping each unit's input; then,
for each removable candidate ``i``, only the *suffix* after ``i`` is run from the cached
input of ``i`` (bypassing ``i`` changes nothing before it). That costs about half of
running the whole model once per candidate, and gives exactly the same features.

In the same pass it accumulates the unit-by-unit CKA matrix (minibatch HSIC, memory
bounded by the batch), the linear CKA of the intact with every bypassed model's penultimate
features over all samples (the ``cka`` criterion, streamed: d x d statistics per candidate,
:class:`layerprune.similarity.streaming.StreamingLinearCKA`), the cosine between each unit's
input and output (ShortGPT's block influence) and the cross-entropy of every bypassed model
(SLEB's greedy loss). Only penultimate features (n x d, d = 64 for CIFAR ResNets) are kept
per sample, so memory grows linearly in n and never with n^2 or with feature-map sizes; with
``bypassed_features=False`` the bypassed ones are not kept at all (memory O(c d^2) for the c
candidates instead of O(c n d): a causal LM's tokens), which is all the ``cka``, block
influence, angular and greedy-loss criteria read; Consensus's distances need them.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from layerprune.io import atomic_path
from layerprune.models.units import forward_from, get_units, sample_rows, unit_modules, unit_names
from layerprune.similarity._inputs import Precision
from layerprune.similarity.minibatch import MinibatchCKA
from layerprune.similarity.streaming import StreamingLinearCKA

__all__ = ["Representations", "extract_representations"]

log = logging.getLogger(__name__)


@dataclass
class Representations:
    """What extraction stores (``representations.npz``).

    Attributes:
        units: names of all units in forward order.
        candidates: the removable units, whose bypass was evaluated.
        labels: (n,) calibration labels.
        intact: (n, d) penultimate features of the intact model.
        bypassed: (c, n, d) penultimate features with candidate ``c`` bypassed ((c, 0, d) when extraction did
            not keep them).
        intact_loss: mean cross-entropy of the intact model on the calibration set.
        bypassed_loss: (c,) the same with each candidate bypassed.
        io_cosine: (L,) mean over samples of the cosine between each unit's input and output
            (NaN for units that change the shape).
        matrix_names: ``["stem", *units]``, the rows of ``cka_matrix``.
        cka_matrix: (L + 1, L + 1) linear CKA among the stem and unit outputs (or empty).
        cka_mode: estimator of the matrix (``unbiased`` or ``sglp``).
        bypass_cka: (c,) linear CKA (biased, over all n samples) of the intact with each bypassed model's
            penultimate features, streamed during extraction (empty in files written before it existed).
    """

    units: list[str]
    candidates: list[str]
    labels: np.ndarray
    intact: np.ndarray
    bypassed: np.ndarray
    intact_loss: float
    bypassed_loss: np.ndarray
    io_cosine: np.ndarray
    matrix_names: list[str]
    cka_matrix: np.ndarray
    cka_mode: str
    bypass_cka: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def has_bypassed_features(self) -> bool:
        """Whether extraction kept the bypassed features (``bypassed_features=True``)."""
        return self.bypassed.shape[1] == self.intact.shape[0]

    def bypassed_of(self, name: str) -> np.ndarray:
        """(n, d) penultimate features with unit ``name`` bypassed.

        Raises:
            ValueError: extraction did not keep the bypassed features.
        """
        if not self.has_bypassed_features:
            raise ValueError(
                "these representations hold no bypassed features (extracted with bypassed_features=False); "
                "distances between intact and bypassed features (Consensus) need them: extract with them kept"
            )
        return self.bypassed[self.candidates.index(name)]

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            np.savez_compressed(
                tmp,
                units=np.array(self.units),
                candidates=np.array(self.candidates),
                labels=self.labels,
                intact=self.intact,
                bypassed=self.bypassed,
                intact_loss=np.array(self.intact_loss),
                bypassed_loss=self.bypassed_loss,
                io_cosine=self.io_cosine,
                matrix_names=np.array(self.matrix_names),
                cka_matrix=self.cka_matrix,
                cka_mode=np.array(self.cka_mode),
                bypass_cka=self.bypass_cka,
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Representations:
        """Reads a file written by :meth:`save` and checks that its arrays fit together.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an empty, truncated or foreign file, or arrays of inconsistent shapes (fewer bypassed
                arrays than candidates, bypassed features of another width than the intact ones); the message
                names the file and the rule to rerun.
        """
        path = Path(path)
        rerun = "delete it and rerun rule extract_activations (layerprune extract)"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run `layerprune extract` (rule extract_activations)")
        try:
            with np.load(path, allow_pickle=False) as z:
                reps = cls(
                    units=z["units"].tolist(),
                    candidates=z["candidates"].tolist(),
                    labels=z["labels"],
                    intact=z["intact"],
                    bypassed=z["bypassed"],
                    intact_loss=float(z["intact_loss"]),
                    bypassed_loss=z["bypassed_loss"],
                    io_cosine=z["io_cosine"],
                    matrix_names=z["matrix_names"].tolist(),
                    cka_matrix=z["cka_matrix"],
                    cka_mode=str(z["cka_mode"]),
                    bypass_cka=z["bypass_cka"] if "bypass_cka" in z.files else np.zeros(0),
                )
        # A truncated zip raises BadZipFile (or EOFError, or zlib.error while decompressing a member).
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{path} is truncated, empty or not a representations file ({first}); {rerun}") from None
        problems = reps._inconsistencies()
        if problems:
            raise ValueError(f"{path} is inconsistent: {'; '.join(problems)}; {rerun}")
        return reps

    def _inconsistencies(self) -> list[str]:
        """What does not fit together in the arrays (empty when all is well)."""
        n_cand, n_units = len(self.candidates), len(self.units)
        problems = []
        if self.intact.ndim != 2 or len(self.intact) == 0:
            return [f"intact features have shape {self.intact.shape}, expected (n, d) with n >= 1"]
        n, d = self.intact.shape
        if self.bypassed.ndim != 3 or self.bypassed.shape[0] != n_cand:
            problems.append(
                f"it holds {self.bypassed.shape[0] if self.bypassed.ndim else 0} bypassed feature arrays "
                f"(shape {self.bypassed.shape}) for {n_cand} candidate units"
            )
        elif self.bypassed.shape[1:] != (n, d) and not (self.bypassed.shape[1:] == (0, d) and self.bypass_cka.size):
            problems.append(
                f"bypassed features are {self.bypassed.shape[1:]} per candidate but the intact ones {(n, d)} "
                "(another width or sample count)"
            )
        if self.bypass_cka.size and self.bypass_cka.shape != (n_cand,):
            problems.append(f"bypass_cka has shape {self.bypass_cka.shape}, expected ({n_cand},)")
        if self.labels.shape != (n,):
            problems.append(f"labels have shape {self.labels.shape}, expected ({n},)")
        if self.bypassed_loss.shape != (n_cand,):
            problems.append(f"bypassed_loss has shape {self.bypassed_loss.shape}, expected ({n_cand},)")
        if self.io_cosine.shape != (n_units,):
            problems.append(f"io_cosine has shape {self.io_cosine.shape}, expected ({n_units},)")
        unknown = [c for c in self.candidates if c not in self.units]
        if unknown:
            problems.append(f"candidates {unknown} are not among its units")
        m = len(self.matrix_names)
        if self.cka_matrix.size and self.cka_matrix.shape != (m, m):
            problems.append(f"cka_matrix has shape {self.cka_matrix.shape}, expected ({m}, {m})")
        return problems


@torch.no_grad()
def extract_representations(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    input_size: Sequence[int],
    candidates: Sequence[str] | None = None,
    matrix: bool = True,
    cka_mode: str = "unbiased",
    precision: Precision | None = None,
    prefix_cache: bool = True,
    bypassed_features: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Representations:
    """Runs the calibration batches through ``model`` and collects :class:`Representations`.

    Args:
        model: a model described in units (see :mod:`layerprune.models.units`).
        batches: ``(images, labels)`` minibatches, normalised as the model expects.
        input_size: (C, H, W), to find the removable units.
        candidates: units to bypass (default: every removable unit).
        matrix: also accumulate the unit-by-unit CKA matrix.
        cka_mode: ``"unbiased"`` (minibatch CKA, Nguyen et al. 2021) or ``"sglp"``.
        precision: arithmetic of the matrix's Gram products and of the streamed intact-vs-bypassed CKA (None:
            the features' precision, float32; see :class:`layerprune.similarity.MinibatchCKA`).
        prefix_cache: run only the suffix after each candidate (``False`` reruns the whole
            model per candidate; same result, for benchmarks).
        bypassed_features: keep every bypassed model's (n, d) features (Consensus's distances read them);
            False keeps only their streamed CKA with the intact features, O(d^2) memory per candidate.
        device: where to compute.
        progress: show a progress bar.
    """
    model = model.to(device).eval()
    names = unit_names(model)
    if candidates is None:
        candidates = [u.name for u in get_units(model, input_size) if u.removable]
    positions = [names.index(c) for c in candidates]
    modules = unit_modules(model)
    accumulator = MinibatchCKA(len(names) + 1, mode=cka_mode, precision=precision) if matrix else None
    streamed = StreamingLinearCKA(len(candidates), precision=precision)

    intact, labels = [], []
    bypassed: list[list[Tensor]] = [[] for _ in candidates]
    bypassed_loss = torch.zeros(len(candidates), dtype=torch.float64)
    intact_loss = 0.0
    cosine_sum = torch.zeros(len(names), dtype=torch.float64)
    n = 0
    for x, y in tqdm(batches, desc="extract", disable=not progress, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        h = model.forward_stem(x)
        unit_inputs, outputs = [], [h]
        for unit in modules:
            unit_inputs.append(h)
            h = unit(h)
            outputs.append(h)
        features = model.forward_penultimate(h)
        intact_rows = sample_rows(model, features)
        intact.append(intact_rows.float().cpu())
        bypassed_rows = []
        labels.append(y.reshape(-1).cpu())
        intact_loss += float(F.cross_entropy(model.forward_head(features), y, reduction="sum"))
        for i, (inp, out) in enumerate(zip(unit_inputs, outputs[1:])):
            if inp.shape == out.shape:  # undefined (NaN) for downsampling units
                cosine_sum[i] += (
                    F.cosine_similarity(sample_rows(model, inp), sample_rows(model, out), dim=1).double().sum().cpu()
                )
            else:
                cosine_sum[i] = float("nan")
        for c, position in enumerate(positions):
            if prefix_cache:
                feats = forward_from(model, unit_inputs[position], position + 1)
            else:
                feats = forward_from(model, model.forward_stem(x), 0, skip=position)
            bypassed_rows.append(sample_rows(model, feats).float())
            if bypassed_features:
                bypassed[c].append(bypassed_rows[-1].cpu())
            bypassed_loss[c] += float(F.cross_entropy(model.forward_head(feats), y, reduction="sum"))
        if candidates:
            streamed.update(intact_rows.float(), bypassed_rows)
        del bypassed_rows
        samples = y.numel()  # images, or tokens of a causal LM
        if accumulator is not None:
            if samples >= accumulator.min_batch_size:
                accumulator.update([sample_rows(model, o) for o in outputs])
            else:
                log.warning("batch of %d samples left out of the CKA matrix (too small)", samples)
        n += samples
    if n == 0:
        raise ValueError("no calibration batches; check calibration.size")
    return Representations(
        units=names,
        candidates=list(candidates),
        labels=torch.cat(labels).numpy(),
        intact=torch.cat(intact).numpy(),
        bypassed=(
            torch.stack([torch.cat(b) for b in bypassed]).numpy()
            if candidates and bypassed_features
            else np.zeros((len(candidates), n if not candidates else 0, intact[0].shape[1]), dtype=np.float32)
        ),
        intact_loss=intact_loss / n,
        bypassed_loss=(bypassed_loss / n).numpy(),
        io_cosine=(cosine_sum / n).numpy(),
        matrix_names=["stem", *names],
        cka_matrix=accumulator.compute() if accumulator is not None else np.zeros((0, 0)),
        cka_mode=cka_mode,
        bypass_cka=streamed.compute() if candidates else np.zeros(0),
    )
