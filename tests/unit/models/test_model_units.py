"""The prunable-unit view of a model: bypass, output recording and the cached-prefix forward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from layerprune.models import get_model, unit_module, unit_names
from layerprune.models.units import (
    bypass,
    forward_from,
    forward_units,
    get_units,
    is_removable,
    parse_unit_name,
    record_outputs,
    renumber_after_removal,
    unit_name,
)


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random batch-norm affine parameters and running statistics, in eval mode.

    Fresh models have identical batch norms everywhere (weight 1, bias 0, mean 0, var 1),
    which would hide a unit being swapped for another; random ones do not.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def _removable(model: nn.Module) -> list[str]:
    """Units with an identity shortcut: all but the first unit of every stage after the first
    (and, for Bottlenecks, the first unit of the first stage too)."""
    first = model.stage_names[0]
    return [
        n
        for n in unit_names(model)
        if not n.endswith(".0") or (n.startswith(f"{first}.") and getattr(model, "block", "basic") == "basic")
    ]


@pytest.mark.parametrize(
    "name, blocks, units, last_bn, side",
    [
        ("resnet20", None, ["layer2.1"], "bn2", 32),
        ("resnet20", None, ["layer1.0", "layer1.2", "layer3.1"], "bn2", 32),
        ("resnet18", None, ["layer3.1"], "bn2", 32),
        ("resnet50", [3, 2, 1, 1], ["layer1.2", "layer2.1"], "bn3", 32),
    ],
)
def test_bypass_equals_blocks_whose_residual_branch_gives_zero(name, blocks, units, last_bn, side) -> None:
    model = _randomized(get_model(name, num_classes=10, blocks_per_stage=blocks), seed=0)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for unit in units:  # relu(bn(.) + x) with bn giving 0 is relu(x) = x for x >= 0
            bn = getattr(unit_module(zeroed, unit), last_bn)
            bn.weight.zero_()
            bn.bias.zero_()
    x = torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, intact = zeroed(x), model(x)
        with bypass(model, units) as bypassed:
            got = bypassed(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, intact, atol=1e-3)  # the units did matter


def test_bypass_restores_units_after_exit_and_after_errors() -> None:
    model = get_model("resnet20", num_classes=10)
    originals = {n: unit_module(model, n) for n in unit_names(model)}
    keys = list(model.state_dict())

    def restored() -> bool:
        return all(unit_module(model, n) is m for n, m in originals.items()) and list(model.state_dict()) == keys

    with bypass(model, ["layer1.1", "layer3.2"]):
        assert isinstance(unit_module(model, "layer1.1"), nn.Identity)
        assert isinstance(unit_module(model, "layer3.2"), nn.Identity)
        assert unit_module(model, "layer1.0") is originals["layer1.0"]
    assert restored()

    with pytest.raises(RuntimeError, match="raised inside"), bypass(model, ["layer2.2"]):
        raise RuntimeError("raised inside the block")
    assert restored()

    # a refused unit after an accepted one: nothing stays bypassed
    with pytest.raises(ValueError, match=r"'layer3\.0'.*not removable"), bypass(model, ["layer2.1", "layer3.0"]):
        pass
    assert restored()
    with pytest.raises(KeyError, match=r"layer4\.0"), bypass(model, ["layer1.1", "layer4.0"]):
        pass
    assert restored()


@pytest.mark.parametrize("unit", ["layer2.0", "layer3.0"])
def test_bypass_refuses_a_downsampling_unit(unit: str) -> None:
    model = get_model("resnet20", num_classes=10)
    with pytest.raises(ValueError, match="downsampling"), bypass(model, [unit]):
        pass


def test_record_outputs_captures_units_and_penultimate_with_their_shapes() -> None:
    model = _randomized(get_model("resnet20", num_classes=10), seed=2)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    names = ["layer1.0", "layer2.0", "layer2.2", "layer3.2", "penultimate"]
    with torch.no_grad(), record_outputs(model, names) as out:
        logits = model(x)
    assert set(out) == set(names)
    assert out["layer1.0"].shape == (3, 16, 32, 32)
    assert out["layer2.0"].shape == (3, 32, 16, 16)
    assert out["layer2.2"].shape == (3, 32, 16, 16)
    assert out["layer3.2"].shape == (3, 64, 8, 8)
    assert out["penultimate"].shape == (3, 64)
    torch.testing.assert_close(out["penultimate"], out["layer3.2"].mean(dim=(2, 3)))
    torch.testing.assert_close(model.forward_head(out["penultimate"]), logits)

    with torch.no_grad():
        stem, outputs = forward_units(model, x)
    assert stem.shape == (3, 16, 32, 32)
    position = {n: i for i, n in enumerate(unit_names(model))}
    for name in names[:-1]:
        torch.testing.assert_close(out[name], outputs[position[name]])

    out.clear()  # after exit the hooks are gone and forward_penultimate is the class's again
    with torch.no_grad():
        model(x)
    assert out == {}
    assert "forward_penultimate" not in vars(model)


def test_record_outputs_on_torchvision_resnet() -> None:
    model = get_model("resnet18", num_classes=10).eval()
    with torch.no_grad(), record_outputs(model, ["layer1.1", "layer4.1", "penultimate"]) as out:
        model(torch.randn(2, 3, 64, 64))
    assert out["layer1.1"].shape == (2, 64, 16, 16)
    assert out["layer4.1"].shape == (2, 512, 2, 2)
    assert out["penultimate"].shape == (2, 512)


@pytest.mark.parametrize(
    "name, blocks, side", [("resnet20", None, 32), ("resnet18", None, 32), ("resnet50", [2, 2, 1, 1], 32)]
)
def test_forward_from_a_unit_input_equals_the_bypassed_model(name: str, blocks, side: int) -> None:
    model = _randomized(get_model(name, num_classes=10, blocks_per_stage=blocks), seed=4)
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(5))
    names = unit_names(model)
    with torch.no_grad():
        stem, outputs = forward_units(model, x)
        inputs = [stem, *outputs[:-1]]  # input of unit i
        torch.testing.assert_close(forward_from(model, stem, 0), model.forward_penultimate(outputs[-1]))
        for unit in _removable(model):
            i = names.index(unit)
            with bypass(model, [unit]), record_outputs(model, ["penultimate"]) as rec:
                model(x)
            torch.testing.assert_close(forward_from(model, inputs[i], i + 1), rec["penultimate"], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(
                forward_from(model, inputs[i], i, skip=i), rec["penultimate"], rtol=1e-5, atol=1e-5
            )


def test_removable_helper_agrees_with_get_units() -> None:
    """Guards the shortcut ``_removable`` used above against the real definition."""
    for name, blocks, side in [("resnet20", None, 32), ("resnet50", [2, 2, 1, 1], 32)]:
        model = get_model(name, num_classes=10, blocks_per_stage=blocks)
        assert _removable(model) == [u.name for u in get_units(model, [3, side, side]) if u.removable]


def test_a_model_without_units_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(TypeError, match="stage_names"):
        get_units(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), [3, 8, 8])


def test_unknown_unit_name_lists_the_valid_ones() -> None:
    model = get_model("resnet20", num_classes=10)
    with pytest.raises(KeyError, match=r"'layer3\.3'.*layer3\.2"):
        unit_module(model, "layer3.3")


def test_unit_names_are_built_and_parsed_in_one_place() -> None:
    assert unit_name("layer2", 3) == "layer2.3" and parse_unit_name("layer2.3") == ("layer2", 3)
    assert parse_unit_name("model.layers.11") == ("model.layers", 11)  # a dotted stage path parses too
    for bad in ("layer2", "layer2.x", ".3"):
        with pytest.raises(ValueError, match="not a unit name"):
            parse_unit_name(bad)


def test_renumbering_after_removal_matches_the_pruned_model() -> None:
    from layerprune.surgery import remove_units

    model = get_model("resnet20", num_classes=10)
    removed = ["layer1.0", "layer2.1"]
    renamed = renumber_after_removal(unit_names(model), removed)
    assert renamed["layer1.2"] == "layer1.1" and renamed["layer2.2"] == "layer2.1" and renamed["layer3.0"] == "layer3.0"
    assert sorted(renamed.values()) == sorted(unit_names(remove_units(model, removed)))
    pruned = remove_units(model, removed)
    for old, new in renamed.items():  # the same module (weights) under its new name
        assert torch.equal(next(unit_module(model, old).parameters()), next(unit_module(pruned, new).parameters()))
    with pytest.raises(KeyError, match="layer9.0"):
        renumber_after_removal(unit_names(model), ["layer9.0"])


def test_is_removable_agrees_with_the_shapes_on_every_family() -> None:
    for arch, size in (("resnet20", (3, 32, 32)), ("resnet18", (3, 64, 64)), ("resnet50", (3, 64, 64))):
        model = get_model(arch, num_classes=10)
        units = get_units(model, size)  # raises if a declared-removable unit changed the shape
        assert [u.removable for u in units] == [is_removable(unit_module(model, u.name)) for u in units]
        assert not all(u.removable for u in units) and any(u.removable for u in units)
