"""Pruning criteria as small pure functions: representations (or weights) in, one score
per removable unit out. Lower = safer to remove. Selection under a budget is separate
(:mod:`layerprune.selection`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn

from layerprune.models.units import forward_units, sample_rows, unit_module, unit_names
from layerprune.similarity import Precision, linear_cka

__all__ = [
    "angular_scores",
    "angular_span_scores",
    "block_influence_scores",
    "cka_scores",
    "consensus_scores",
    "gradnorm_scores",
    "greedy_loss_scores",
    "random_scores",
    "weight_norm_scores",
]


def cka_scores(
    intact: np.ndarray, bypassed: Mapping[str, np.ndarray], *, precision: Precision | None = None
) -> dict[str, float]:
    """1 - linear CKA between intact and bypassed penultimate features (Pons et al., 2024).

    https://arxiv.org/abs/2405.17081. A unit whose bypass leaves the penultimate
    representation most similar (score near 0) is the safest to remove.

    Args:
        intact: (n, d) penultimate features of the model.
        bypassed: unit name -> (n, d) features with that unit bypassed.
        precision: arithmetic of the CKA products (None: the features' precision, float32 for
            extracted features; ``"float64"`` is the reference path). With d below n the
            products are the d x d cross-covariances (the feature form).
    """
    return {name: 1.0 - linear_cka(intact, feats, precision=precision) for name, feats in bypassed.items()}


def consensus_scores(distances: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Rank voting over several distances (Mugnaini et al., 2024): the sum of ranks.

    For each metric the candidates are ranked by distance (1 = most similar to the intact
    model; ties share the average rank), and each unit's score is its rank sum. The result
    is keyed by unit name, so a rank always maps back to the unit it belongs to (the
    published code indexes the winning rank into a reordered list and so removes the wrong
    block).

    Args:
        distances: metric name -> unit name -> distance (intact vs bypassed).

    Raises:
        ValueError: no metrics, or metrics over different units.
    """
    if not distances:
        raise ValueError("consensus needs at least one metric (similarity.metrics)")
    metrics = list(distances)
    units = sorted(distances[metrics[0]])
    for metric in metrics[1:]:
        if sorted(distances[metric]) != units:
            raise ValueError(f"metric {metric!r} scores units {sorted(distances[metric])}, expected {units}")
    total = dict.fromkeys(units, 0.0)
    for metric in metrics:
        values = np.array([distances[metric][u] for u in units], dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"metric {metric!r} has non-finite distances: {dict(zip(units, values))}")
        for unit, rank in zip(units, rankdata(values, method="average")):
            total[unit] += float(rank)
    return total


def random_scores(candidates: Sequence[str], seed: int) -> dict[str, float]:
    """Uniform random scores from ``seed`` (the random baseline; same seed, same units)."""
    rng = np.random.default_rng(seed)
    return dict(zip(candidates, rng.random(len(candidates)).tolist()))


def weight_norm_scores(model: nn.Module, candidates: Sequence[str]) -> dict[str, float]:
    """L1 norm of each unit's weights (convolutions, linear and normalisation parameters)."""
    return {
        name: float(sum(p.detach().abs().sum() for p in unit_module(model, name).parameters())) for name in candidates
    }


def block_influence_scores(io_cosine: Mapping[str, float]) -> dict[str, float]:
    """1 - cosine between a unit's input and output, averaged over samples (ShortGPT's Block
    Influence, Men et al., 2024, https://arxiv.org/abs/2403.03853)."""
    return {name: 1.0 - float(c) for name, c in io_cosine.items()}


def angular_scores(io_cosine: Mapping[str, float]) -> dict[str, float]:
    """Angular distance arccos(cos) / pi between a unit's input and output (Gromov et al., 2024,
    https://arxiv.org/abs/2403.17887, applied to one unit)."""
    return {name: math.acos(max(-1.0, min(1.0, float(c)))) / math.pi for name, c in io_cosine.items()}


@torch.no_grad()
def angular_span_scores(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    span: int,
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Gromov et al.'s n-consecutive-layers criterion: the angular distance arccos(cos)/pi between
    the input of unit ``l`` and the output of unit ``l + span - 1``, averaged over samples (every
    token of a causal LM; the paper reads only the last token). Keyed by the span's first unit:
    the span with the lowest score is the block of ``span`` consecutive units to remove.
    https://arxiv.org/abs/2403.17887. With ``span=1`` this is :func:`angular_scores` of each unit.

    A span whose input and output differ in shape (it crosses a downsampling unit of a CNN) has no
    angle and no score; :func:`layerprune.selection.select_span` never removes such a span.
    """
    names = unit_names(model)
    if not 1 <= span <= len(names):
        raise ValueError(f"span must be between 1 and the {len(names)} units, got {span}")
    model = model.to(device).eval()
    sums: dict[int, Tensor] = {}
    seen = 0
    for x, _y in batches:
        stem, outputs = forward_units(model, x.to(device))
        states = (stem, *outputs)
        hidden = [sample_rows(model, h) for h in states]
        for start in range(len(names) - span + 1):
            if states[start].shape != states[start + span].shape:
                continue
            cos = F.cosine_similarity(hidden[start].double(), hidden[start + span].double(), dim=1)
            angle = torch.arccos(cos.clamp(-1.0, 1.0)).sum().cpu() / math.pi
            sums[start] = sums.get(start, 0.0) + angle
        seen += hidden[0].shape[0]
    if seen == 0:
        raise ValueError("the angular span criterion needs at least one calibration batch")
    return {names[start]: float(total) / seen for start, total in sums.items()}


def greedy_loss_scores(bypassed_loss: Mapping[str, float], intact_loss: float) -> dict[str, float]:
    """Increase of the calibration cross-entropy when the unit is bypassed (SLEB, Song et al.,
    2024, https://arxiv.org/abs/2402.09025).

    This is one greedy step; :func:`layerprune.pruning.plan_pruning` repeats it as SLEB does
    (remove the lowest-scored unit, rescore the smaller model, repeat)."""
    return {name: float(loss) - float(intact_loss) for name, loss in bypassed_loss.items()}


def gradnorm_scores(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    candidates: Sequence[str],
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """GradNorm importance (SGLP): L2 norm of the gradient of the cross-entropy with respect
    to each unit's parameters, summed over the given labelled batches, with the model's
    trained weights in place. BatchNorm uses its running statistics (eval mode), so the
    score depends only on the weights and the data."""
    model = model.to(device).eval()
    model.zero_grad(set_to_none=True)
    seen = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        loss.backward()
        seen += len(y)
    if seen == 0:
        raise ValueError("GradNorm needs at least one labelled batch")
    scores = {}
    for name in candidates:
        grads = [p.grad.detach().flatten() for p in unit_module(model, name).parameters() if p.grad is not None]
        scores[name] = float(torch.linalg.vector_norm(torch.cat(grads) / seen)) if grads else 0.0
    model.zero_grad(set_to_none=True)
    return scores
