"""The papers' protocols of the criteria (``pruning.protocol``): Pons et al.'s candidates and schedule, SGLP's
combination GradNorm in train mode. Small untrained CIFAR ResNets on random tensors keep these to seconds; the
expected values are computed here (by hand, or with plain torch calls), not by the code under test."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from layerprune.config import ConfigError, validate_config
from layerprune.criteria.protocols import pons_settings, pons_units, protocol_of
from layerprune.criteria.sglp_paper import combination_gradnorm, select_by_combination_gradnorm
from layerprune.models import count_macs, get_model, get_units
from layerprune.pruning import plan_pruning
from layerprune.selection import Budget
from layerprune.surgery import remove_units
from layerprune.train import TrainConfig

INPUT = (1, 16, 16)


def _model(seed: int = 0, arch: str = "resnet20") -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_model(arch, num_classes=10, in_channels=1)


def _loader(n: int = 32, batch: int = 16, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, *INPUT, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch, shuffle=False)


def test_pons_candidates_on_resnet56():
    # ResNet-56: 27 units, the first of stages 2 and 3 downsample (not removable) -> 25 candidates; the reference
    # never offers the first unit of stage 1 either -> 24.
    units = get_units(_model(arch="resnet56"), (1, 8, 8))
    assert sum(u.removable for u in units) == 25
    restricted = pons_units(units)
    assert sum(u.removable for u in restricted) == 24
    assert [u.name for u in restricted if not u.removable] == ["layer1.0", "layer2.0", "layer3.0"]
    assert [u.name for u in restricted] == [u.name for u in units]


def test_pons_settings_fix_the_schedule():
    assert pons_settings({"finetune_epochs_between": 3, "min_units_per_stage": 1}) == {
        "iterative": True,
        "units_per_step": 1,
        "min_units_per_stage": 2,
        "finetune_epochs_between": 3,
    }
    assert pons_settings({"finetune_epochs_between": 1, "min_units_per_stage": 4})["min_units_per_stage"] == 4
    with pytest.raises(ValueError, match="finetune_epochs_between"):
        pons_settings({"finetune_epochs_between": 0})


def test_protocol_of_defaults_and_rejects_unknown_values():
    assert protocol_of({}, "cka") == "layerprune"
    assert protocol_of({"protocol": {"sglp": "paper"}}, "sglp") == "paper"
    with pytest.raises(ValueError, match="pruning.protocol.cka"):
        protocol_of({"protocol": {"cka": "pons"}}, "cka")


def test_config_rejects_paper_cka_without_finetuning_between_steps():
    with pytest.raises(ConfigError, match="finetune_epochs_between is 0"):
        validate_config({"experiment": "x", "pruning": {"protocol": {"cka": "paper"}}})
    config = validate_config(
        {"experiment": "x", "pruning": {"protocol": {"cka": "paper"}, "finetune_epochs_between": 1}}
    )
    assert config["pruning"]["protocol"] == {"cka": "paper", "sglp": "layerprune", "consensus": "layerprune"}
    # Without the cka criterion the paper protocol of cka is never used, so nothing to check.
    validate_config({"experiment": "x", "methods": ["random"], "pruning": {"protocol": {"cka": "paper"}}})


def _identity_first_unit(model: torch.nn.Module) -> torch.nn.Module:
    """layer1.0 computes relu(x + 0) = x on its (non-negative) input: bypassing it changes nothing (CKA 1)."""
    block = model.layer1[0]
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)
    return model


def test_pons_paper_never_removes_the_first_unit_and_goes_one_unit_a_step():
    model = _identity_first_unit(_model(1)).eval()
    loader = _loader()
    common = {"calibration_loader": loader, "min_units_per_stage": 1}
    default = plan_pruning("cka", Budget.blocks(2), model, INPUT, iterative=True, units_per_step=2, **common)
    assert "layer1.0" in default.plan["removed"]  # the safest unit by CKA, taken by the default protocol
    finetune = (TrainConfig(epochs=1, batch_size=16, lr=0.01, seed=0), loader.dataset)
    paper = plan_pruning("cka", Budget.blocks(3), model, INPUT, finetune_between=finetune, protocol="paper", **common)
    assert "layer1.0" not in paper.plan["removed"]
    assert [len(step["removed"]) for step in paper.steps] == [1, 1, 1]
    # 2 units stay in every stage although min_units_per_stage=1 was passed: one removal per stage of 3, and
    # a fourth is impossible.
    assert sorted(n.split(".")[0] for n in paper.plan["removed"]) == ["layer1", "layer2", "layer3"]
    with pytest.raises(ValueError, match="min_units_per_stage=2"):
        plan_pruning("cka", Budget.blocks(4), model, INPUT, finetune_between=finetune, protocol="paper", **common)
    # Every step fine-tuned the smaller model: the weights of a unit that stays changed.
    assert not torch.equal(paper.pruned.layer1[0].conv1.weight, model.layer1[0].conv1.weight)


def _grad_norm_by_hand(model: torch.nn.Module, removed, loader: DataLoader, train: bool) -> float:
    net = remove_units(copy.deepcopy(model), list(removed))
    net.train(train)
    norms = []
    for x, y in loader:
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        norms.append(torch.sqrt(sum((p.grad**2).sum() for p in net.parameters())).item())
    return sum(norms) / len(norms)


def test_combination_gradnorm_is_the_train_mode_mean_over_batches():
    model = _model(2).eval()
    loader = _loader()
    value = combination_gradnorm(model, ["layer2.1"], loader)
    assert value == pytest.approx(_grad_norm_by_hand(model, ["layer2.1"], loader, train=True), rel=1e-5)
    # Train mode (batch statistics) is not eval mode (running statistics): a different number.
    assert value != pytest.approx(_grad_norm_by_hand(model, ["layer2.1"], loader, train=False), rel=1e-3)
    assert not model.training  # the model passed in is untouched


def test_combination_selection_keeps_the_largest_gradnorm_per_segment():
    model = _model(3).eval()
    loader = _loader()
    units = get_units(model, INPUT)
    total_macs, _ = count_macs(model, INPUT)
    segments = [["layer1.0", "layer1.1", "layer1.2"], ["layer2.0", "layer2.1", "layer2.2", "layer3.0", "layer3.1"]]
    segments.append(["layer3.2"])
    removed, scores = select_by_combination_gradnorm(
        model, units, segments, Budget.blocks(2), total_macs, lambda: loader, min_units_per_stage=1
    )
    # Proportional shares of 2 over segment sizes 3, 5, 1 -> 1 and 1 (largest remainder), 0 for the last.
    by_hand_1 = {c: _grad_norm_by_hand(model, [c], loader, True) for c in ["layer1.0", "layer1.1", "layer1.2"]}
    by_hand_2 = {c: _grad_norm_by_hand(model, [c], loader, True) for c in ["layer2.1", "layer2.2", "layer3.1"]}
    expected = sorted([max(by_hand_1, key=by_hand_1.get), max(by_hand_2, key=by_hand_2.get)])
    assert sorted(removed) == expected
    assert all(scores[name] <= 0 for name in removed)
    assert scores["layer3.2"] == 0.0
    # Score = best GradNorm among combinations keeping the unit - best among those removing it (float32 grads).
    for name, value in by_hand_1.items():
        others = [v for c, v in by_hand_1.items() if c != name]
        assert scores[name] == pytest.approx(max(others) - value, abs=1e-4)


def test_combination_selection_guards_the_combinatorial_explosion(monkeypatch):
    from layerprune.criteria import sglp_paper

    monkeypatch.setattr(sglp_paper, "MAX_COMBINATIONS", 2)
    model = _model(4)
    units = get_units(model, INPUT)
    total_macs, _ = count_macs(model, INPUT)
    names = [u.name for u in units]
    with pytest.raises(ValueError, match="combinations"):
        select_by_combination_gradnorm(
            model, units, [names], Budget.blocks(2), total_macs, _loader, min_units_per_stage=1
        )


def test_sglp_paper_protocol_through_plan_pruning():
    model = _model(5).eval()
    loader = _loader()
    segments = [["layer1.0", "layer1.1", "layer1.2", "layer2.0"], ["layer2.1", "layer2.2"], ["layer3.0", "layer3.1"]]
    segments[-1].append("layer3.2")
    planned = plan_pruning(
        "sglp", Budget.blocks(1), model, INPUT, segments=segments, calibration_loader=loader,
        gradnorm_batches=2, min_units_per_stage=1, protocol="paper",
    )  # fmt: skip
    # One removal goes to the largest segment (4 units, 3 removable): its best-GradNorm combination.
    batches = list(itertools.islice(loader, 2))
    by_hand = {c: _grad_norm_by_hand(model, [c], batches, True) for c in ["layer1.0", "layer1.1", "layer1.2"]}
    assert planned.plan["removed"] == [max(by_hand, key=by_hand.get)]
