"""Architectures: depths, costs (against values derived from layer shapes), flags and the registry."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torchvision
from _cost_by_hand import cifar_cost, torchvision_cost
from torch import nn

from layerprune.models import (
    ARCHITECTURES,
    build_model,
    count_macs,
    count_params,
    get_model,
    get_units,
    unit_names,
)
from layerprune.models.units import bypass

CIFAR_N = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
TORCHVISION = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}


# Counting MACs runs torch's FlopCounterMode, which costs seconds for the deeper models on
# this CPU: build and describe each (architecture, classes, input size) once per session.
# The tests below only read these models (bypass restores what it changes).
@cache
def _model(name: str, num_classes: int = 10) -> nn.Module:
    return get_model(name, num_classes=num_classes)


@cache
def _described(name: str, side: int) -> tuple[list, int]:
    model = _model(name)
    size = [3, side, side]
    return get_units(model, size), count_macs(model, size)[0]


@pytest.mark.parametrize("name, n", CIFAR_N.items())
def test_cifar_depth_has_n_units_per_stage_and_6n_plus_2_weighted_layers(name: str, n: int) -> None:
    model = get_model(name, num_classes=10)
    assert [len(getattr(model, s)) for s in model.stage_names] == [n, n, n]
    assert model.blocks_per_stage == [n, n, n]
    assert len(unit_names(model)) == 3 * n
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 6 * n + 2  # the depth in the name counts convolutions and the classifier


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_depth_matches_torchvision_weights_layout(name: str) -> None:
    _, layers = TORCHVISION[name]
    model = _model(name, 1000)
    assert [len(getattr(model, s)) for s in model.stage_names] == layers
    with torch.device("meta"):  # shapes only, no weight initialisation
        reference = getattr(torchvision.models, name)()
    own, ref = model.state_dict(), reference.state_dict()
    assert list(own) == list(ref)  # torchvision's weight files load unchanged
    assert all(own[k].shape == ref[k].shape for k in own)


@pytest.mark.parametrize(
    "name, macs, params",
    [("resnet20", 40_551_040, 269_722), ("resnet56", 125_485_696, 853_018)],
)
def test_cifar_cost_equals_hand_derivation_and_published_values(name: str, macs: int, params: int) -> None:
    n = CIFAR_N[name]
    expected = cifar_cost([n, n, n])
    assert (expected.macs, expected.params) == (macs, params)  # the derivation reproduces the papers' numbers
    _, total = _described(name, 32)
    assert total == macs
    assert count_params(_model(name)) == params


def test_resnet50_cost_at_224_equals_hand_derivation() -> None:
    expected = torchvision_cost("bottleneck", [3, 4, 6, 3])
    assert (expected.macs, expected.params) == (4_089_184_256, 25_557_032)
    model = _model("resnet50", 1000)
    total, _ = count_macs(model, [3, 224, 224])
    assert total == expected.macs
    assert count_params(model) == expected.params


@pytest.mark.parametrize(
    "name, side, expected",
    [
        ("resnet20", 32, cifar_cost([3, 3, 3])),
        ("resnet56", 32, cifar_cost([9, 9, 9])),
        ("resnet18", 64, torchvision_cost("basic", [2, 2, 2, 2], num_classes=10, side=64)),
        ("resnet50", 64, torchvision_cost("bottleneck", [3, 4, 6, 3], num_classes=10, side=64)),
    ],
)
def test_unit_costs_are_per_block_and_sum_with_stem_and_head_to_total(name: str, side: int, expected) -> None:
    model = _model(name)
    units, total = _described(name, side)
    assert [u.macs for u in units] == expected.unit_macs
    assert [u.params for u in units] == expected.unit_params
    assert expected.stem_macs + sum(u.macs for u in units) + expected.head_macs == total
    assert [u.position for u in units] == list(range(len(units)))
    assert [u.name for u in units] == unit_names(model)


def test_cost_follows_input_size_and_custom_depths() -> None:
    model = get_model("resnet20", num_classes=7, in_channels=1, blocks_per_stage=[2, 1, 4])
    expected = cifar_cost([2, 1, 4], in_channels=1, num_classes=7, side=16)
    assert count_macs(model, [1, 16, 16])[0] == expected.macs
    assert count_params(model) == expected.params


@pytest.mark.parametrize(
    "name, size, classes, channels",
    [("resnet20", 16, 7, 1), ("resnet56", 32, 100, 3), ("resnet18", 64, 5, 1), ("resnet50", 64, 3, 4)],
)
def test_in_channels_and_num_classes_are_configurable(name: str, size: int, classes: int, channels: int) -> None:
    model = get_model(name, num_classes=classes, in_channels=channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes)
    assert model.spec()["num_classes"] == classes and model.spec()["in_channels"] == channels


@pytest.mark.parametrize(
    "name, side, fixed",
    [
        ("resnet20", 32, {"layer2.0", "layer3.0"}),
        ("resnet56", 32, {"layer2.0", "layer3.0"}),
        ("resnet18", 64, {"layer2.0", "layer3.0", "layer4.0"}),
        # a Bottleneck widens 64 -> 256 channels in its first unit: it has a projection too
        ("resnet50", 64, {"layer1.0", "layer2.0", "layer3.0", "layer4.0"}),
    ],
)
def test_only_shape_changing_units_are_fixed(name: str, side: int, fixed: set[str]) -> None:
    model = _model(name)
    units, _ = _described(name, side)
    assert {u.name for u in units if not u.removable} == fixed
    for unit in units:  # what get_units reports agrees with what bypass accepts
        if unit.removable:
            with bypass(model, [unit.name]):
                pass
        else:
            with pytest.raises(ValueError, match="not removable"), bypass(model, [unit.name]):
                pass


def test_get_model_rejects_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet57'.*resnet56"):
        get_model("resnet57", num_classes=10)


@pytest.mark.parametrize("name, blocks", [("resnet56", [9, 9]), ("resnet18", [2, 2, 2])])
def test_get_model_rejects_wrong_number_of_stages(name: str, blocks: list[int]) -> None:
    stages = len(ARCHITECTURES[name].blocks_per_stage)
    with pytest.raises(ValueError, match=rf"{name} has {stages} stages.*{len(blocks)} entries"):
        get_model(name, num_classes=10, blocks_per_stage=blocks)


def test_empty_stage_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        get_model("resnet20", num_classes=10, blocks_per_stage=[3, 0, 3])


@pytest.mark.parametrize(
    "name, blocks, channels, size",
    [
        ("resnet20", [1, 4, 2], 1, 16),
        ("resnet32", None, 3, 32),
        ("resnet18", [1, 2, 1, 1], 3, 64),
        ("resnet50", [1, 1, 2, 1], 3, 64),
    ],
)
def test_build_model_from_spec_round_trip(name: str, blocks, channels: int, size: int) -> None:
    model = get_model(name, num_classes=10, in_channels=channels, blocks_per_stage=blocks).eval()
    rebuilt = build_model(model.spec()).eval()
    assert type(rebuilt) is type(model)
    assert rebuilt.spec() == model.spec()
    assert unit_names(rebuilt) == unit_names(model)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_build_model_rejects_unknown_family_and_missing_fields() -> None:
    with pytest.raises(ValueError, match="unknown model family 'vit'"):
        build_model({"arch": "vit", "blocks_per_stage": [1]})
    spec = get_model("resnet20", num_classes=10).spec()
    del spec["num_classes"]
    with pytest.raises(ValueError, match="'num_classes'"):
        build_model(spec)
