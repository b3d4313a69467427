"""Physical removal of units: the smaller model computes the bypassed one, costs drop exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from layerprune.models import (
    count_macs,
    count_params,
    get_model,
    get_units,
    load_checkpoint,
    save_checkpoint,
    unit_module,
    unit_names,
)
from layerprune.models.units import bypass
from layerprune.surgery import remove_units


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random batch norms (affine and running statistics), so every unit is distinguishable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def _preprocessing(channels: int, side: int) -> dict:
    return {"mean": [0.5] * channels, "std": [0.25] * channels, "input_size": [channels, side, side], "num_classes": 10}


CASES = [
    # name, blocks_per_stage, input side, units to remove, blocks_per_stage after
    ("resnet20", None, 32, ["layer1.1", "layer3.2", "layer2.1"], [2, 2, 2]),
    ("resnet56", None, 32, ["layer1.0", "layer1.8", "layer2.4", "layer3.1", "layer3.2"], [7, 8, 7]),
    ("resnet18", None, 64, ["layer1.0", "layer4.1"], [1, 2, 2, 1]),
    ("resnet50", [3, 2, 2, 2], 64, ["layer1.1", "layer3.1"], [2, 2, 1, 2]),
]


@pytest.mark.parametrize("name, blocks, side, remove, after", CASES)
def test_removed_saved_loaded_model_computes_the_bypassed_original(
    tmp_path: Path, name: str, blocks, side: int, remove: list[str], after: list[int]
) -> None:
    model = _randomized(get_model(name, num_classes=10, blocks_per_stage=blocks), seed=0)
    names_before, blocks_before = unit_names(model), list(model.blocks_per_stage)
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        intact = model(x)

    pruned = remove_units(model, remove)
    assert pruned.blocks_per_stage == after
    assert pruned.spec()["blocks_per_stage"] == after
    path = save_checkpoint(tmp_path / "model.pt", pruned, preprocessing=_preprocessing(3, side))
    loaded = load_checkpoint(path).model
    assert loaded.spec() == pruned.spec()

    with torch.no_grad():
        with bypass(model, remove):
            expected = model(x)
        got = loaded(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, intact, atol=1e-3)  # removing them did change the function

    # the original is untouched: same units, same weights, same function
    assert unit_names(model) == names_before
    assert model.blocks_per_stage == blocks_before
    assert all(torch.equal(state_before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(model(x), intact, rtol=0, atol=0)


def test_units_after_a_removed_one_move_up_with_their_weights() -> None:
    model = _randomized(get_model("resnet20", num_classes=10), seed=2)
    pruned = remove_units(model, ["layer3.1"])
    assert unit_names(pruned)[-2:] == ["layer3.0", "layer3.1"]
    moved, original = unit_module(pruned, "layer3.1"), unit_module(model, "layer3.2")
    assert moved is not original  # a copy, not shared modules
    for (k, v), (k0, v0) in zip(moved.state_dict().items(), original.state_dict().items()):
        assert k == k0 and torch.equal(v, v0)


@pytest.mark.parametrize(
    "name, side, remove",
    [("resnet20", 32, ["layer1.0", "layer2.2", "layer3.1"]), ("resnet18", 32, ["layer1.1", "layer3.1"])],
)
def test_macs_and_params_drop_by_exactly_the_removed_units(name: str, side: int, remove: list[str]) -> None:
    model = get_model(name, num_classes=10)
    size = [3, side, side]
    units = {u.name: u for u in get_units(model, size)}
    pruned = remove_units(model, remove)
    assert count_macs(pruned, size)[0] == count_macs(model, size)[0] - sum(units[n].macs for n in remove)
    assert count_params(pruned) == count_params(model) - sum(units[n].params for n in remove)


def test_duplicate_unknown_and_downsampling_units_are_refused() -> None:
    model = get_model("resnet20", num_classes=10)
    with pytest.raises(ValueError, match="duplicates"):
        remove_units(model, ["layer1.1", "layer2.1", "layer1.1"])
    with pytest.raises(KeyError, match=r"no unit named 'layer4\.1'"):
        remove_units(model, ["layer1.1", "layer4.1"])
    with pytest.raises(ValueError, match=r"'layer2\.0' downsamples"):
        remove_units(model, ["layer2.0"])
    assert model.blocks_per_stage == [3, 3, 3] and len(unit_names(model)) == 9


def test_removing_every_removable_unit_of_a_stage_leaves_a_working_one_unit_stage(tmp_path: Path) -> None:
    model = _randomized(get_model("resnet20", num_classes=10), seed=3)
    remove = ["layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    pruned = remove_units(model, remove)
    assert pruned.blocks_per_stage == [3, 1, 1]
    assert [u.removable for u in get_units(pruned, [3, 32, 32])] == [True, True, True, False, False]
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", pruned, preprocessing=_preprocessing(3, 32))).model
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        with bypass(model, remove):
            expected = model(x)
        torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-5)
    # pruning again from the pruned model still works
    again = remove_units(loaded, ["layer1.0"])
    assert again.blocks_per_stage == [2, 1, 1]


def test_a_stage_cannot_lose_all_its_units() -> None:
    model = get_model("resnet20", num_classes=10)  # every unit of layer1 is removable
    with pytest.raises(ValueError, match="stage 'layer1' without units"):
        remove_units(model, ["layer1.0", "layer1.1", "layer1.2"])
