"""The pruning stage (``layerprune.pruning.prune_model``) with every criterion on a trained digits ResNet-20.

What users rely on: the plan respects the per-stage minimum and the budget; the pruned model computes exactly
what the baseline computes with the removed units bypassed; its measured MACs and parameters are the plan's
predictions; SGLP spreads removals over segments; the scores table ranks and flags the right units.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent / "criteria"))
from digits_resnet import (
    DATA,
    INPUT_SIZE,
    METRICS,
    calibration,
    calibration_representations,
    load_trained,
    trained_checkpoint,
)

from layerprune.cli import main as cli_main
from layerprune.config import validate_config
from layerprune.criteria import criteria
from layerprune.data import build_dataset
from layerprune.models import (
    bypass,
    count_macs,
    count_params,
    get_units,
    load_checkpoint,
    unit_names,
)
from layerprune.pruning import PruneResult, prune_model, scores_table
from layerprune.segmentation import DEFAULT_THRESHOLD, segment_units
from layerprune.selection import Budget
from layerprune.similarity.extract import Representations
from layerprune.similarity.tables import candidate_distances

MIN_UNITS = 2
BUDGETS = ("blocks2", "macs30")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return load_trained(tmp_path_factory).model.eval()


@pytest.fixture(scope="module")
def loader() -> DataLoader:
    return calibration()


@pytest.fixture(scope="module")
def reps(tmp_path_factory: pytest.TempPathFactory) -> Representations:
    """The extraction artifact on the same calibration batches as ``loader``."""
    return calibration_representations(tmp_path_factory)


@pytest.fixture(scope="module")
def segments(reps: Representations) -> list[list[str]]:
    """The segment stage's output for this model (Fisher segments of the unit CKA rows, k chosen by the rule)."""
    offset = reps.matrix_names.index(reps.units[0])
    matrix = reps.cka_matrix[offset:, offset:]
    return segment_units(reps.units, matrix, "auto", DEFAULT_THRESHOLD)["segment_units"]


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    dataset = build_dataset(DATA, "test")
    return torch.stack([dataset[i][0] for i in range(64)])


@pytest.fixture(scope="module")
def distances(reps: Representations) -> pd.DataFrame:
    return candidate_distances(reps, METRICS)


def _prune(method: str, budget: str, model, reps, loader, segments, distances=None, **kwargs) -> PruneResult:
    return prune_model(
        method,
        Budget.parse(budget),
        model,
        INPUT_SIZE,
        min_units_per_stage=kwargs.pop("min_units_per_stage", MIN_UNITS),
        representations=reps,
        candidate_distances=distances,
        consensus_metrics=METRICS,
        segments=segments,
        calibration_loader=loader,
        gradnorm_batches=2,
        **kwargs,
    )


#: Criteria that remove units anywhere (a span criterion removes one block of one stage: tested on its own).
METHODS = sorted(c.name for c in criteria() if c.selection != "span")


@pytest.fixture(scope="module")
def results(model, reps, loader, segments, distances) -> dict[tuple[str, str], PruneResult]:
    """Every criterion under every budget, pruned once for all the checks below."""
    before = unit_names(model)
    out = {(m, b): _prune(m, b, model, reps, loader, segments, distances) for m in METHODS for b in BUDGETS}
    assert unit_names(model) == before, "prune_model modified the baseline"
    return out


CASES = [(m, b) for m in METHODS for b in BUDGETS]


@pytest.mark.parametrize(("method", "budget"), CASES)
def test_plan_meets_the_budget_under_the_stage_minimum(method, budget, model, results):
    plan = results[method, budget].plan
    units = {u.name: u for u in get_units(model, INPUT_SIZE)}
    removed = plan["removed"]
    assert all(units[n].removable for n in removed)
    per_stage = [0, 0, 0]
    for name, unit in units.items():
        if name not in removed:
            per_stage[unit.stage] += 1
    assert per_stage == plan["blocks_per_stage_after"]
    assert min(per_stage) >= MIN_UNITS
    assert plan["blocks_per_stage_before"] == [3, 3, 3]
    if budget == "blocks2":
        assert plan["n_removed"] == len(removed) == 2
    else:
        assert plan["macs_reduction"] >= 0.30
        # and no more than needed: dropping the last-added unit would miss the budget (units cost the same here)
        assert plan["macs_reduction"] - units[removed[0]].macs / (plan["remaining_macs"] + plan["removed_macs"]) < 0.30


@pytest.mark.parametrize("method", ["cka", "sglp", "greedy_loss"])
def test_params_budget_removes_the_fewest_units_that_meet_it(method, model, reps, loader, segments):
    """Every selector (global, per segment, iterative) honours a parameter budget like a MAC budget."""
    units = {u.name: u for u in get_units(model, INPUT_SIZE)}
    total = count_params(model)
    result = _prune(method, "params20", model, reps, loader, segments)
    removed = result.plan["removed"]
    removed_params = sum(units[n].params for n in removed)
    assert result.plan["removed_params"] == removed_params
    assert result.plan["params_reduction"] == removed_params / total
    assert 100 * removed_params >= 20 * total
    # No more than needed: without its costliest unit (so without the last one it took) it would miss the budget.
    assert 100 * (removed_params - max(units[n].params for n in removed)) < 20 * total


@pytest.mark.parametrize(("method", "budget"), CASES)
def test_pruned_model_equals_the_baseline_with_units_bypassed(method, budget, model, results, held_out):
    result = results[method, budget]
    pruned = result.model.eval()
    with torch.no_grad():
        got = pruned(held_out)
        with bypass(model, result.plan["removed"]):
            expected = model(held_out)
        intact = model(held_out)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(got, intact, atol=1e-3)  # the removed units did something
    assert list(pruned.blocks_per_stage) == result.plan["blocks_per_stage_after"]


@pytest.mark.parametrize(("method", "budget"), CASES)
def test_cost_drops_by_exactly_the_removed_units(method, budget, model, results):
    result = results[method, budget]
    units = {u.name: u for u in get_units(model, INPUT_SIZE)}
    removed = result.plan["removed"]
    total_macs, _ = count_macs(model, INPUT_SIZE)
    pruned_macs, _ = count_macs(result.model, INPUT_SIZE)
    assert pruned_macs == total_macs - sum(units[n].macs for n in removed) == result.plan["remaining_macs"]
    pruned_params = count_params(result.model)
    assert pruned_params == count_params(model) - sum(units[n].params for n in removed)
    assert pruned_params == result.plan["remaining_params"]


@pytest.mark.parametrize(("method", "budget"), CASES)
def test_scores_table_ranks_and_flags(method, budget, model, results):
    result = results[method, budget]
    units = get_units(model, INPUT_SIZE)
    table = scores_table(units, result.scores, result.plan["removed"])
    assert list(table.columns) == ["unit", "stage", "score", "rank", "removed"]
    assert sorted(table["unit"]) == sorted(u.name for u in units if u.removable)
    assert sorted(table["rank"]) == list(range(1, len(table) + 1))
    assert table.loc[table["rank"] == 1, "score"].item() == table["score"].min()
    assert table.sort_values("rank")["score"].is_monotonic_increasing
    assert set(table.loc[table["removed"], "unit"]) == set(result.plan["removed"])
    stage_of = {u.name: u.stage for u in units}
    assert all(stage_of[u] == s for u, s in zip(table["unit"], table["stage"]))


def test_greedy_criteria_remove_their_best_allowed_units(model, results):
    """For global criteria under blocks2 the removed units are the two best-scored ones from different stages
    (the stage minimum of 2 lets each 3-unit stage lose only one)."""
    units = {u.name: u for u in get_units(model, INPUT_SIZE)}
    for method in ("cka", "weight_norm"):  # (greedy_loss rescores after each removal: see below)
        result = results[method, "blocks2"]
        chosen: list[str] = []
        for name in sorted(result.scores, key=result.scores.get):
            if len(chosen) < 2 and all(units[c].stage != units[name].stage for c in chosen):
                chosen.append(name)
        assert sorted(result.plan["removed"]) == sorted(chosen), method


def test_sglp_takes_units_from_every_segment(model, reps, loader, segments):
    """With one removal per segment allowed (uniform shares, stage minimum 1), each segment that has removable
    units loses exactly its lowest-GradNorm unit, even where the global ranking would take two from one segment."""
    removable = set(reps.candidates)
    with_removable = [seg for seg in segments if removable & set(seg)]
    assert len(with_removable) >= 2, f"the trained model has one segment only: {segments}"
    budget = f"blocks{len(with_removable)}"
    result = _prune(
        "sglp",
        budget,
        model,
        reps,
        loader,
        segments,
        min_units_per_stage=1,
        allocation="uniform",
    )
    scores = result.scores
    expected = [min((u for u in seg if u in removable), key=scores.get) for seg in with_removable]
    assert sorted(result.plan["removed"]) == sorted(expected)
    # proportional shares of a smaller budget still spread over different segments
    result = _prune("sglp", "blocks2", model, reps, loader, segments, min_units_per_stage=1)
    owner = {u: i for i, seg in enumerate(segments) for u in seg}
    assert len({owner[u] for u in result.plan["removed"]}) == 2, (
        segments,
        result.plan["removed"],
    )


def test_sglp_without_segments_or_data_is_a_clear_error(model, reps):
    with pytest.raises(ValueError, match="sglp needs the segments"):
        prune_model(
            "sglp",
            Budget.blocks(1),
            model,
            INPUT_SIZE,
            calibration_loader=calibration(size=64),
        )
    with pytest.raises(ValueError, match="GradNorm needs the calibration loader"):
        prune_model("sglp", Budget.blocks(1), model, INPUT_SIZE, segments=[reps.units])


def test_scores_table_of_ties_gives_distinct_ranks(model):
    units = get_units(model, INPUT_SIZE)
    scores = {u.name: 0.5 for u in units if u.removable}
    scores["layer3.2"] = 0.1
    table = scores_table(units, scores, ["layer3.2"])
    assert table.set_index("unit").loc["layer3.2", "rank"] == 1
    assert sorted(table["rank"]) == list(range(1, len(scores) + 1))
    assert table["removed"].sum() == 1
    assert np.issubdtype(table["rank"].dtype, np.integer)
    # rows in forward order; tied units ranked in that order after the one lower score
    removable = [u for u in units if u.removable]
    assert list(table["unit"]) == [u.name for u in removable]
    assert list(table["stage"]) == [u.stage for u in removable]
    assert table.set_index("unit")["score"].to_dict() == scores
    tied = [u.name for u in removable if u.name != "layer3.2"]
    assert table.set_index("unit").loc[tied, "rank"].tolist() == list(range(2, len(scores) + 1))
    assert table.set_index("unit")["removed"].to_dict() == {u.name: u.name == "layer3.2" for u in removable}


def _mean_loss(model: torch.nn.Module, loader: DataLoader) -> float:
    """Mean calibration cross-entropy, computed directly (no extraction code)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += float(F.cross_entropy(model(x), y, reduction="sum"))
            n += len(y)
    return total / n


def test_greedy_loss_removes_one_unit_per_step_and_rescores(model, reps, loader):
    """SLEB's loop: remove the unit whose bypass raises the calibration loss least, then rescore the smaller
    model. The expectation is computed here with bypasses of the baseline (the pruned model equals the baseline
    with its removed units bypassed), not with the extraction the loop uses."""
    model = model.eval()
    result = _prune("greedy_loss", "blocks2", model, None, loader, None, min_units_per_stage=1)
    intact = _mean_loss(model, loader)
    step1 = {}
    for name in reps.candidates:
        with bypass(model, [name]):
            step1[name] = _mean_loss(model, loader) - intact
    first = min(step1, key=step1.get)
    after_first = _mean_loss_bypassed(model, loader, [first])
    step2 = {}
    for name in reps.candidates:
        if name != first:
            with bypass(model, [first, name]):
                step2[name] = _mean_loss(model, loader) - after_first
    second = min(step2, key=step2.get)
    # the choices are clear (not decided by round-off)
    assert sorted(step1.values())[1] - step1[first] > 1e-4
    assert sorted(step2.values())[1] - step2[second] > 1e-4

    steps = result.plan["steps"]
    assert [s["removed"] for s in steps] == [[first], [second]]
    assert steps[0]["scores"] == pytest.approx(step1, rel=1e-4, abs=1e-6)
    assert steps[1]["scores"] == pytest.approx(step2, rel=1e-4, abs=1e-6)
    # scores.csv holds the first step's score of every removable unit of the original model
    assert result.scores == pytest.approx(step1, rel=1e-4, abs=1e-6)
    assert sorted(result.plan["removed"]) == sorted([first, second])
    assert sum(result.model.blocks_per_stage) == len(reps.units) - 2


def _mean_loss_bypassed(model: torch.nn.Module, loader: DataLoader, names: list[str]) -> float:
    with bypass(model, names):
        return _mean_loss(model, loader)


def _prune_command(tmp_path: Path, baseline: Path, method: str, *extra: str) -> tuple[list[str], dict[str, Path]]:
    out = {"scores": tmp_path / "scores.csv", "plan": tmp_path / "plan.json", "out": tmp_path / "model.pt"}
    argv = [
        "prune", "--model", str(baseline), "--method", method, "--budget", "blocks2", "--data", json.dumps(DATA),
        *extra, *(arg for key, path in out.items() for arg in (f"--{key}", str(path))),
    ]  # fmt: skip
    return argv, out


def test_iterative_cka_fine_tunes_between_steps_through_the_command(tmp_path, tmp_path_factory, held_out):
    """The prune command with the config's whole finetune section (including ``enabled``, which is no training
    setting) and finetune_epochs_between: 1, on a small calibration subset of the digits."""
    baseline = trained_checkpoint(tmp_path_factory)
    config = validate_config(
        {"experiment": "x", "pruning": {"iterative": True, "finetune_epochs_between": 1, "min_units_per_stage": 1}}
    )
    assert config["finetune"]["enabled"] is True
    argv, out = _prune_command(
        tmp_path, baseline, "cka",
        "--pruning", json.dumps(config["pruning"]), "--finetune", json.dumps(config["finetune"]),
        "--calibration", json.dumps({"size": 64, "batch_size": 32}),
    )  # fmt: skip
    assert cli_main(argv) == 0
    plan = json.loads(out["plan"].read_text())
    assert [s["step"] for s in plan["steps"]] == [1, 2]
    assert plan["n_removed"] == 2 and sorted(r for s in plan["steps"] for r in s["removed"]) == sorted(plan["removed"])
    pruned = load_checkpoint(out["out"])
    assert pruned.meta["removed"] == plan["removed"]
    assert list(pruned.model.blocks_per_stage) == plan["blocks_per_stage_after"]
    scores = pd.read_csv(out["scores"])
    assert len(scores) == 7 and set(scores.loc[scores["removed"], "unit"]) == set(plan["removed"])
    # the weights were trained in between: the pruned model no longer equals the bypassed baseline
    model = load_checkpoint(baseline).model.eval()
    with torch.no_grad():
        with bypass(model, plan["removed"]):
            bypassed = model(held_out)
        got = pruned.model.eval()(held_out)
    assert not torch.allclose(got, bypassed, atol=1e-3)


def test_the_plan_is_on_disk_when_surgery_fails(tmp_path, tmp_path_factory, monkeypatch, capsys):
    import layerprune.pruning

    def failing_surgery(model, names):
        raise RuntimeError(f"surgery failed on {names}")

    monkeypatch.setattr(layerprune.pruning, "remove_units", failing_surgery)
    argv, out = _prune_command(tmp_path, trained_checkpoint(tmp_path_factory), "weight_norm")
    assert cli_main(argv) == 2
    assert "surgery failed" in capsys.readouterr().err
    plan = json.loads(out["plan"].read_text())
    assert plan["method"] == "weight_norm" and plan["n_removed"] == 2
    assert set(pd.read_csv(out["scores"]).query("removed")["unit"]) == set(plan["removed"])
    assert not out["out"].exists()


def test_greedy_loss_through_the_command_needs_no_representations(tmp_path, tmp_path_factory):
    """The command builds the calibration loader greedy_loss rescores on; the plan records both steps."""
    argv, out = _prune_command(
        tmp_path, trained_checkpoint(tmp_path_factory), "greedy_loss",
        "--pruning", json.dumps({"min_units_per_stage": 1}),
        "--calibration", json.dumps({"size": 64, "batch_size": 32}),
    )  # fmt: skip
    assert cli_main(argv) == 0
    plan = json.loads(out["plan"].read_text())
    assert [len(s["removed"]) for s in plan["steps"]] == [1, 1]
    scores = pd.read_csv(out["scores"]).set_index("unit")["score"]
    assert len(scores) == 7
    assert plan["steps"][0]["removed"] == [scores.idxmin()]  # scores.csv holds the first step's scores
    assert load_checkpoint(out["out"]).meta["removed"] == plan["removed"]


def _block_angles(model: torch.nn.Module, loader: DataLoader, blocks: list[list[str]]) -> dict[str, float]:
    """Mean arccos(cos)/pi between the input of each block's first unit and the output of its last, from forward
    hooks on the baseline's own forward pass (independent of the criterion's unit-by-unit forward)."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in unit_names(model):
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(lambda _m, a, n=name: inputs.__setitem__(n, a[0])))
        handles.append(module.register_forward_hook(lambda _m, _a, o, n=name: outputs.__setitem__(n, o)))
    sums = dict.fromkeys((b[0] for b in blocks), 0.0)
    seen = 0
    try:
        with torch.no_grad():
            for x, _ in loader:
                model(x)
                for block in blocks:
                    a, b = inputs[block[0]].flatten(1).double(), outputs[block[-1]].flatten(1).double()
                    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
                    sums[block[0]] += float(torch.arccos(cos.clamp(-1, 1)).sum()) / np.pi
                seen += len(x)
    finally:
        for h in handles:
            h.remove()
    return {k: v / seen for k, v in sums.items()}


def test_angular_span_removes_the_closest_block_of_one_stage(model, reps, loader, segments):
    """Gromov's span on a CNN: blocks stay inside a stage (the downsampling unit is no candidate)."""
    blocks = [["layer1.0", "layer1.1"], ["layer1.1", "layer1.2"], ["layer2.1", "layer2.2"], ["layer3.1", "layer3.2"]]
    angles = _block_angles(model, loader, blocks)
    result = _prune("angular_span", "blocks2", model, reps, loader, segments, min_units_per_stage=1)
    assert result.plan["span"] == 2
    assert result.scores == pytest.approx(angles, rel=1e-6, abs=1e-9)
    assert result.plan["removed"] == min(blocks, key=lambda b: angles[b[0]])
    # A MAC budget: the smallest block whose MACs reach it (these units all cost the same MACs).
    units = {u.name: u for u in get_units(model, INPUT_SIZE)}
    total, _ = count_macs(model, INPUT_SIZE)
    unit_macs = units["layer1.1"].macs
    assert all(units[n].macs == unit_macs for b in blocks for n in b)
    percent = 100 * unit_macs // total + 1  # more than one unit's share, at most two units' share
    assert 100 * 2 * unit_macs >= percent * total
    macs = _prune("angular_span", f"macs{percent}", model, reps, loader, segments, min_units_per_stage=1)
    assert macs.plan["span"] == 2 and macs.plan["removed"] == result.plan["removed"]


def test_angular_span_refuses_a_block_longer_than_a_stage_allows(model, reps, loader, segments):
    with pytest.raises(ValueError, match=r"blocks3 cannot be met by one block.*longest such block has 2 units"):
        _prune("angular_span", "blocks3", model, reps, loader, segments, min_units_per_stage=1)
