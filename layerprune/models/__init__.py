"""Models described in prunable units: CIFAR ResNets and torchvision's ImageNet ResNets."""

from layerprune.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from layerprune.models.cifar_resnet import (
    CifarResNet,
    cifar_resnet,
    cifar_resnet20,
    cifar_resnet32,
    cifar_resnet44,
    cifar_resnet56,
    cifar_resnet110,
)
from layerprune.models.cost import count_macs, count_params
from layerprune.models.registry import ARCHITECTURES, build_model, get_model
from layerprune.models.units import Unit, bypass, get_units, unit_module, unit_names

__all__ = [
    "ARCHITECTURES",
    "Checkpoint",
    "CifarResNet",
    "TorchvisionResNet",
    "Unit",
    "build_model",
    "bypass",
    "cifar_resnet",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "cifar_resnet110",
    "count_macs",
    "count_params",
    "get_model",
    "get_units",
    "load_checkpoint",
    "save_checkpoint",
    "unit_module",
    "unit_names",
]


def __getattr__(name: str):
    """``TorchvisionResNet`` on first use (build one with ``get_model("resnet50")``): importing
    torchvision costs seconds, and most jobs only need the CIFAR ResNets."""
    if name == "TorchvisionResNet":
        from layerprune.models import imagenet_resnet

        return getattr(imagenet_resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
