"""Pruning criteria (``layerprune.criteria`` through ``layerprune.pruning.score_units``) on a trained model.

What users rely on: every criterion scores every removable unit with a finite number; Consensus maps its rank
sums back to the right unit (the published code does not); iterative CKA starts where one-shot CKA does;
the random baseline is reproducible; the simple criteria are what their definitions say.
"""

from __future__ import annotations

import math
from itertools import islice, pairwise

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from digits_resnet import INPUT_SIZE, METRICS

from layerprune.criteria import criterion_names
from layerprune.criteria.scores import (
    angular_scores,
    block_influence_scores,
    consensus_scores,
)
from layerprune.models import bypass, count_macs, get_units
from layerprune.pruning import prune_model, score_units
from layerprune.selection import Budget, select_units


def _score(method, trained, representations, distances, calibration_batches, **kwargs):
    return score_units(
        method,
        trained.model,
        representations.candidates,
        representations=representations,
        candidate_distances=distances,
        consensus_metrics=kwargs.pop("consensus_metrics", METRICS),
        gradnorm_batches=lambda: islice(calibration_batches, 2),
        **kwargs,
    )


@pytest.mark.parametrize("method", sorted(criterion_names()))
def test_every_criterion_scores_every_removable_unit(method, trained, representations, distances, calibration_batches):
    scores = _score(method, trained, representations, distances, calibration_batches)
    removable = [u.name for u in get_units(trained.model, INPUT_SIZE) if u.removable]
    assert sorted(scores) == sorted(removable)
    assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values()), scores
    # an informative criterion tells units apart on a trained model
    assert len(set(scores.values())) > 1, scores


def test_unknown_criterion_names_the_valid_ones(trained, representations):
    with pytest.raises(ValueError, match=r"unknown criterion 'cka2'.*'angular'"):
        score_units(
            "cka2",
            trained.model,
            representations.candidates,
            representations=representations,
        )


@pytest.mark.parametrize("metric", METRICS)
def test_consensus_of_one_metric_ranks_like_that_metric(
    metric, trained, representations, distances, calibration_batches
):
    scores = _score(
        "consensus",
        trained,
        representations,
        distances,
        calibration_batches,
        consensus_metrics=[metric],
    )
    table = distances[distances["metric"] == metric].set_index("unit")["distance"]
    by_distance = sorted(representations.candidates, key=lambda u: table[u])
    assert sorted(scores, key=scores.__getitem__) == by_distance
    # the scores are the ranks themselves, 1 = closest to the intact model
    assert [scores[u] for u in by_distance] == list(range(1, len(by_distance) + 1))


def test_consensus_removes_the_unit_with_the_smallest_rank_sum(trained):
    """Units in forward order differ from rank order; the winner must be the unit whose ranks sum lowest.

    The published code ranks, then indexes the argmin of the rank sums into a reordered list and so removes
    another unit. Here the ranks are chosen by hand: layer2.2 has rank sum 1 + 2 + 1 = 4, every other unit more.
    """
    units = get_units(trained.model, INPUT_SIZE)
    names = [u.name for u in units if u.removable]
    assert names == [
        "layer1.0",
        "layer1.1",
        "layer1.2",
        "layer2.1",
        "layer2.2",
        "layer3.1",
        "layer3.2",
    ]
    ranks = {  # metric -> rank of each unit in forward order
        "m1": [7, 3, 5, 2, 1, 6, 4],
        "m2": [1, 5, 7, 4, 2, 3, 6],
        "m3": [3, 7, 2, 6, 1, 4, 5],
    }
    expected_sums = dict(zip(names, np.sum(list(ranks.values()), axis=0).tolist()))
    assert min(expected_sums, key=expected_sums.get) == "layer2.2"
    assert sorted(expected_sums.values())[:2] == [4, 11]  # a clear winner
    # distances on different scales per metric, monotone in the rank (rank 1 = smallest distance)
    distances = {
        metric: {name: scale * r + offset for name, r in zip(names, rs)}
        for (metric, rs), scale, offset in zip(ranks.items(), (0.01, 3.0, 0.2), (0.0, 10.0, 0.05))
    }
    assert consensus_scores(distances) == pytest.approx(expected_sums)
    # through the stage's entry point, from a tidy table whose rows are in no particular order
    table = pd.DataFrame(
        [{"unit": u, "metric": m, "distance": d} for m, per in distances.items() for u, d in per.items()]
    ).sample(frac=1.0, random_state=3)
    scores = score_units(
        "consensus",
        trained.model,
        names,
        candidate_distances=table,
        consensus_metrics=["m1", "m2", "m3"],
    )
    assert scores == pytest.approx(expected_sums)
    total_macs, _ = count_macs(trained.model, INPUT_SIZE)
    assert select_units(units, scores, Budget.blocks(1), total_macs, min_units_per_stage=1) == ["layer2.2"]


def test_consensus_rejects_missing_metric(trained, representations, distances):
    with pytest.raises(ValueError, match=r"no distances for \['bures'\].*similarity.metrics"):
        score_units(
            "consensus", trained.model, representations.candidates,
            candidate_distances=distances, consensus_metrics=["cka", "bures"],
        )  # fmt: skip


def test_iterative_cka_without_finetuning_starts_with_the_one_shot_choice(
    trained, representations, calibration_batches
):
    one_shot = score_units(
        "cka",
        trained.model,
        representations.candidates,
        representations=representations,
    )
    first = min(one_shot, key=one_shot.get)
    result = prune_model(
        "cka", Budget.blocks(2), trained.model, INPUT_SIZE,
        min_units_per_stage=1, calibration_loader=calibration_batches, iterative=True,
    )  # fmt: skip
    steps = result.plan["steps"]
    assert [s["step"] for s in steps] == [1, 2]
    assert steps[0]["removed"] == [first]
    assert steps[0]["scores"] == pytest.approx(one_shot, abs=1e-6)
    # step 2 rescored the pruned model; its units are reported under their baseline names
    assert set(steps[1]["scores"]) == set(representations.candidates) - {first}
    second = min(steps[1]["scores"], key=steps[1]["scores"].get)
    assert steps[1]["removed"] == [second]
    assert result.plan["removed"] == sorted([first, second], key=representations.units.index)
    assert sum(result.model.blocks_per_stage) == len(representations.units) - 2


def test_random_scores_are_seeded(trained, representations):
    candidates = representations.candidates
    a = score_units("random", trained.model, candidates, seed=1)
    b = score_units("random", trained.model, candidates, seed=1)
    c = score_units("random", trained.model, candidates, seed=2)
    assert a == b
    assert a != c
    assert sorted(a, key=a.get) != sorted(c, key=c.get)  # a different ranking, not just other numbers


def test_block_influence_and_angular_decrease_with_the_cosine():
    cosines = {f"u{i}": c for i, c in enumerate(np.linspace(-1.0, 1.0, 9))}
    order = list(cosines)  # increasing cosine
    for fn in (block_influence_scores, angular_scores):
        scores = fn(cosines)
        values = [scores[u] for u in order]
        assert all(a > b for a, b in pairwise(values)), (fn.__name__, values)
        assert scores["u8"] == pytest.approx(0.0, abs=1e-12)  # identical input and output: safest
    assert angular_scores({"u": 0.0})["u"] == pytest.approx(0.5)
    assert angular_scores({"u": -1.0})["u"] == pytest.approx(1.0)
    assert block_influence_scores({"u": 0.25})["u"] == pytest.approx(0.75)


def test_block_influence_and_angular_rank_units_by_their_io_cosine(trained, representations):
    cosine = dict(zip(representations.units, representations.io_cosine))
    by_cosine = sorted(representations.candidates, key=lambda u: -cosine[u])  # most similar first
    for method in ("block_influence", "angular"):
        scores = score_units(
            method,
            trained.model,
            representations.candidates,
            representations=representations,
        )
        assert sorted(scores, key=scores.get) == by_cosine, method


def test_greedy_loss_is_the_bypassed_loss_minus_the_intact_loss(trained, representations, calibration_batches):
    scores = score_units(
        "greedy_loss",
        trained.model,
        representations.candidates,
        representations=representations,
    )
    model = trained.model

    def mean_loss() -> float:
        total, n = 0.0, 0
        with torch.no_grad():
            for x, y in calibration_batches:
                total += float(F.cross_entropy(model(x), y, reduction="sum"))
                n += len(y)
        return total / n

    intact = mean_loss()
    for name in ("layer1.1", "layer3.2"):
        with bypass(model, [name]):
            expected = mean_loss() - intact
        assert scores[name] == pytest.approx(expected, rel=1e-4, abs=1e-6), name


def test_weight_norm_is_the_l1_norm_of_the_units_parameters(trained, representations):
    scores = score_units("weight_norm", trained.model, representations.candidates)
    block = trained.model.layer2[1]
    expected = sum(float(p.detach().abs().sum()) for p in block.parameters())
    assert scores["layer2.1"] == pytest.approx(expected, rel=1e-6)


def test_gradnorm_is_the_l2_norm_of_the_mean_loss_gradient_over_the_units_parameters(
    trained, representations, calibration_batches
):
    """SGLP's GradNorm against torch.autograd.grad on the same two batches: the gradient of the mean
    cross-entropy (BatchNorm on running statistics) with respect to the unit's parameters, one L2 norm over all
    of them."""
    scores = _score("sglp", trained, representations, None, calibration_batches)
    model = trained.model.eval()
    batches = list(islice(calibration_batches, 2))
    n = sum(len(y) for _, y in batches)
    loss = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batches) / n
    units = {"layer1.1": model.layer1[1], "layer2.2": model.layer2[2], "layer3.1": model.layer3[1]}
    grads = torch.autograd.grad(loss, [p for block in units.values() for p in block.parameters()])
    start = 0
    for name, block in units.items():
        count = len(list(block.parameters()))
        expected = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads[start : start + count])))
        start += count
        assert expected > 0
        assert scores[name] == pytest.approx(expected, rel=1e-4), name
    model.zero_grad(set_to_none=True)
