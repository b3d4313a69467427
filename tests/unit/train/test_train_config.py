"""TrainConfig: built from workflow sections, typos and bad values are rejected with helpful messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerprune.train import TrainConfig, resolve_amp, select_device, use_channels_last


def test_from_dict_fills_defaults_and_round_trips() -> None:
    config = TrainConfig.from_dict({"epochs": 2, "lr": 0.01, "schedule": "step", "milestones": [1]})
    assert (config.epochs, config.lr, config.milestones) == (2, 0.01, (1,))
    assert (config.momentum, config.weight_decay, config.amp, config.channels_last) == (0.9, 5e-4, "auto", "auto")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["milestones"] == [1]  # plain list for YAML/JSON
    assert TrainConfig.from_dict(None) == TrainConfig()


def test_from_dict_rejects_unknown_keys_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown train config key\(s\) \['epoch', 'learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1, "epoch": 3})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"schedule": "linear"}, "schedule='linear'"),
        ({"schedule": "step"}, "needs milestones"),
        ({"milestones": [3, 2]}, "increasing"),
        ({"amp": "fp8"}, "amp='fp8'"),
        ({"channels_last": "yes"}, "channels_last='yes'"),
        ({"warmup_epochs": 10, "epochs": 10}, "warmup_epochs=10"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov"),
        ({"max_steps_per_epoch": 0}, "max_steps_per_epoch=0"),
        ({"num_workers": -1}, "num_workers=-1"),
    ],
)
def test_invalid_values_are_rejected(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        TrainConfig.from_dict(bad)


def test_device_precision_and_layout_choices() -> None:
    cpu = torch.device("cpu")
    assert select_device("cpu") == cpu
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_amp("auto", cpu) is None  # CPU stays fp32 (bit-exact reproducibility)
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    assert resolve_amp("off", cpu) is None
    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    mlp = nn.Sequential(nn.Linear(4, 2))
    assert use_channels_last("auto", conv) and not use_channels_last("auto", mlp)
    assert not use_channels_last(False, conv) and use_channels_last(True, mlp)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")
