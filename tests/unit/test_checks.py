"""``check_inputs``: what a config names is opened and checked before any job, each problem naming key, value and fix."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from layerprune.checks import check_inputs, max_removable
from layerprune.config import ConfigError, validate_config
from layerprune.models import get_model, get_units, save_checkpoint

BASE = {"experiment": "x", "methods": ["cka"], "budgets": ["blocks1"], "emissions": {"enabled": False}}


def _config(**sections: object) -> dict:
    config = {**BASE}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return validate_config(config)


def _checkpoint(path: Path, arch: str, *, num_classes: int, in_channels: int, published: bool = False) -> str:
    model = get_model(arch, num_classes=num_classes, in_channels=in_channels)
    if published:  # a plain state dict, as the published CIFAR ResNets
        torch.save(model.state_dict(), path)
    else:
        side = 16 if in_channels == 1 else 32
        preprocessing = {
            "mean": [0.5] * in_channels,
            "std": [0.25] * in_channels,
            "input_size": [in_channels, side, side],
            "num_classes": num_classes,
        }
        save_checkpoint(path, model, preprocessing=preprocessing)
    return str(path)


def _fake_cifar100(root: Path) -> str:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"")
    return str(root)


def _problems(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        check_inputs(config)
    return str(err.value)


def test_the_quick_default_config_passes() -> None:
    from layerprune.config import load_config

    check_inputs(load_config(Path(__file__).resolve().parents[2] / "config.yaml"))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_checkpoint", ["model.checkpoint: '", "nope.pt' does not exist"]),
        ("wrong_arch_checkpoint", ["model.checkpoint:", "blocks_per_stage [5, 5, 5] (config: [3, 3, 3])"]),
        ("wrong_arch_state_dict", ["model.checkpoint:", "unexpected ['layer1.3", "resnet20 with 10 classes"]),
        ("ten_class_checkpoint_cifar100", ["model.checkpoint:", "num_classes 10 (config: 100)"]),
        ("three_channel_checkpoint_digits", ["model.checkpoint:", "in_channels 3 (config: 1)"]),
        ("missing_imagefolder_root", ["data.root: '", "nowhere' has neither train/ nor train.tar"]),
        ("imagefolder_without_classes", ["data.train_dir: '", "has no class sub-folders"]),
        ("missing_cifar10_root", ["data.root: 'resources/cifar10' lacks cifar-10-batches-py/", "data.download"]),
        ("mean_of_wrong_length", ["data.mean: [0.5, 0.5, 0.5] has 3 values", "1 channel(s)"]),
        ("std_of_wrong_length", ["data.std: [0.2, 0.2] has 2 values"]),
        ("unknown_country", ["emissions.country_iso_code: 'XYZ' is not in CodeCarbon", "'FRA'"]),
        ("blocks_budget_too_large", ["budgets: ['blocks50'] cannot be met", "at most 3 units", "blocks3"]),
        ("macs_budget_too_large", ["budgets: ['macs99'] cannot be met", "min_units_per_stage=2"]),
        (
            "span_budget_too_large",
            [
                "budgets: blocks2 (the longest such block has 1 units with min_units_per_stage=2)",
                "cannot be met by ['angular_span']",
            ],
        ),
        ("params_budget_too_large", ["budgets: ['params99'] cannot be met", "of the parameters) can go", "params"]),
        ("duplicate_seeds", ["seeds: [0, 0] repeats [0]", "list each seed once"]),
        ("too_few_classes", ["data.num_classes: 5, but digits has 10 classes", "set it to 10 or null"]),
    ],
)
def test_each_bad_input_names_the_key_the_value_and_the_fix(tmp_path: Path, case: str, expected: list[str]) -> None:
    configs = {
        "missing_checkpoint": lambda: _config(model={"checkpoint": str(tmp_path / "nope.pt")}),
        "wrong_arch_checkpoint": lambda: _config(
            model={"checkpoint": _checkpoint(tmp_path / "r32.pt", "resnet32", num_classes=10, in_channels=1)}
        ),
        "wrong_arch_state_dict": lambda: _config(
            model={
                "checkpoint": _checkpoint(
                    tmp_path / "r32.th", "resnet32", num_classes=10, in_channels=1, published=True
                )
            }
        ),
        "ten_class_checkpoint_cifar100": lambda: _config(
            data={"name": "cifar100", "root": _fake_cifar100(tmp_path / "c100")},
            model={"checkpoint": _checkpoint(tmp_path / "c10.pt", "resnet20", num_classes=10, in_channels=3)},
        ),
        "three_channel_checkpoint_digits": lambda: _config(
            model={"checkpoint": _checkpoint(tmp_path / "rgb.pt", "resnet20", num_classes=10, in_channels=3)}
        ),
        "missing_imagefolder_root": lambda: _config(data={"name": "imagefolder", "root": str(tmp_path / "nowhere")}),
        "imagefolder_without_classes": lambda: _config(
            data={"name": "imagefolder", "root": str(_empty_splits(tmp_path))}
        ),
        "missing_cifar10_root": lambda: _config(data={"name": "cifar10", "root": "resources/cifar10"}),
        "mean_of_wrong_length": lambda: _config(data={"mean": [0.5, 0.5, 0.5]}),
        "std_of_wrong_length": lambda: _config(data={"std": [0.2, 0.2]}),
        "unknown_country": lambda: _config(emissions={"enabled": True, "country_iso_code": "XYZ"}),
        "blocks_budget_too_large": lambda: _config(budgets=["blocks1", "blocks50"]),
        "macs_budget_too_large": lambda: _config(budgets=["macs99"]),
        "params_budget_too_large": lambda: _config(budgets=["params99"]),
        "span_budget_too_large": lambda: _config(methods=["cka", "angular_span"], budgets=["blocks1", "blocks2"]),
        "duplicate_seeds": lambda: _config(seeds=[0, 0]),
        "too_few_classes": lambda: _config(data={"num_classes": 5}),
    }
    message = _problems(configs[case]())
    for text in expected:
        assert text in message, message
    assert len(message.splitlines()) <= 4, message  # a few lines, not a traceback or a schema dump


def _empty_splits(root: Path) -> Path:
    for sub in ("train", "test"):
        (root / "images" / sub).mkdir(parents=True)
    return root / "images"


def test_a_matching_checkpoint_and_feasible_budgets_pass(tmp_path: Path) -> None:
    good = _checkpoint(tmp_path / "ok.pt", "resnet20", num_classes=10, in_channels=1)
    check_inputs(_config(model={"checkpoint": good}, budgets=["blocks3", "macs20", "params10"], seeds=[0, 1]))


def test_every_problem_is_listed_at_once() -> None:
    message = _problems(_config(seeds=[1, 1], data={"mean": [0.1, 0.2]}))
    assert "seeds: [1, 1]" in message and "data.mean: [0.1, 0.2]" in message


def test_a_passed_check_is_remembered_until_a_named_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    config = _config(model={"checkpoint": _checkpoint(path, "resnet20", num_classes=10, in_channels=1)})
    check_inputs(config, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    _checkpoint(path, "resnet32", num_classes=10, in_channels=1)  # replaced by another architecture
    with pytest.raises(ConfigError, match="blocks_per_stage"):
        check_inputs(config, cache_dir=tmp_path / "cache")


def _brute_force(units: list, minimum: int) -> tuple[int, int]:
    """The most units and MACs over every subset of removable units that leaves each stage it takes from at least
    ``minimum`` units (as the selection does: a stage already at or below the minimum gives nothing)."""
    best_units, best_macs = 0, 0
    removable = [u for u in units if u.removable]
    for r in range(len(removable) + 1):
        for subset in itertools.combinations(removable, r):
            left = [sum(u.stage == v.stage for u in units) - sum(u.stage == v.stage for u in subset) for v in subset]
            if all(n >= minimum for n in left):
                best_units = max(best_units, r)
                best_macs = max(best_macs, sum(u.macs for u in subset))
    return best_units, best_macs


@pytest.mark.parametrize("minimum", [1, 2, 3])
def test_max_removable_matches_a_brute_force_search(minimum: int) -> None:
    costs = [(0, True, 5), (0, True, 9), (0, True, 1), (1, False, 50), (1, True, 7), (1, True, 30), (2, True, 4)]
    units = [SimpleNamespace(stage=s, removable=r, macs=m) for s, r, m in costs]
    assert max_removable(units, minimum) == _brute_force(units, minimum)


def test_max_removable_on_resnet20() -> None:
    units = get_units(get_model("resnet20", num_classes=10, in_channels=1), [1, 16, 16])
    assert max_removable(units, 1) == _brute_force(units, 1)
    assert max_removable(units, 2)[0] == 3  # one unit of each 3-unit stage
