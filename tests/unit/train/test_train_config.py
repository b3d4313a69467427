"""TrainConfig: built from workflow sections, typos and bad values are rejected with helpful messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerprune.train import (
    MAX_AUTO_WORKERS,
    TrainConfig,
    resolve_amp,
    resolve_num_workers,
    select_device,
    use_channels_last,
)


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


def test_num_workers_auto_follows_device_and_threads() -> None:
    assert TrainConfig().num_workers == "auto"  # the schema's default
    assert TrainConfig.from_dict({"num_workers": 3}).num_workers == 3
    for bad in ("many", True, 1.5):
        with pytest.raises(ValueError, match="expected 'auto' or an integer >= 0"):
            TrainConfig.from_dict({"num_workers": bad})
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    # on the CPU, workers would only take cores from the intra-op threads
    assert [resolve_num_workers("auto", cpu, threads) for threads in (1, 4, 32)] == [0, 0, 0]
    # on CUDA, the rule's threads minus the main process's, in [1, MAX_AUTO_WORKERS]
    assert [resolve_num_workers("auto", cuda, threads) for threads in (1, 2, 4, 32)] == [1, 1, 3, MAX_AUTO_WORKERS]
    assert resolve_num_workers("auto", cuda) == max(1, min(torch.get_num_threads() - 1, MAX_AUTO_WORKERS))
    assert resolve_num_workers(5, cpu, 2) == resolve_num_workers(5, cuda, 2) == 5  # an explicit count is kept
    with pytest.raises(ValueError, match="num_workers=-1"):
        resolve_num_workers(-1, cpu)


def test_resolve_amp_per_device() -> None:
    cpu = torch.device("cpu")
    assert [resolve_amp(mode, cpu) for mode in ("auto", "off", "bf16", "fp16")] == [
        None,
        None,
        torch.bfloat16,
        torch.float16,
    ]
    assert resolve_amp("auto", torch.device("meta")) is None  # anything but CUDA stays fp32
    with pytest.raises(ValueError, match="amp='fp8'"):
        resolve_amp("fp8", cpu)
    if torch.cuda.is_available():
        cuda = torch.device("cuda", 0)
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert resolve_amp("auto", cuda) is expected
        assert resolve_amp("off", cuda) is None
