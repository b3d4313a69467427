"""From a name or a spec to a model: the one way architectures are built.

``get_model("resnet56", num_classes=10)`` builds a published architecture by name;
``build_model(spec)`` rebuilds any (possibly pruned) model from the plain-data spec that
``model.spec()`` returns and checkpoints store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from layerprune.models.cifar_resnet import CIFAR_DEPTHS, CifarResNet

__all__ = ["ARCHITECTURES", "Architecture", "build_model", "get_model"]


@dataclass(frozen=True)
class Architecture:
    """A named architecture: its family, default units per stage and how to build it."""

    name: str
    family: str
    blocks_per_stage: tuple[int, ...]
    build: Callable[[Sequence[int], int, int], nn.Module]


def _cifar(blocks: Sequence[int], num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(blocks, num_classes=num_classes, in_channels=in_channels)


# torchvision's ResNets by depth: block type and units per stage (as torchvision's builders).
# Kept here as plain data so that listing architectures does not import torchvision: its
# package import pulls in torch._dynamo (about 2 s, as long as torch's own import), which
# every workflow job would pay although most never build an ImageNet model.
TORCHVISION_LAYOUTS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _torchvision_resnet(kind: str, blocks: Sequence[int], num_classes: int, in_channels: int) -> nn.Module:
    from layerprune.models.imagenet_resnet import (
        TorchvisionResNet,  # imports torchvision
    )

    return TorchvisionResNet(kind, blocks, num_classes=num_classes, in_channels=in_channels)


def _torchvision(kind: str) -> Callable[[Sequence[int], int, int], nn.Module]:
    def build(blocks: Sequence[int], num_classes: int, in_channels: int) -> nn.Module:
        return _torchvision_resnet(kind, blocks, num_classes, in_channels)

    return build


ARCHITECTURES: dict[str, Architecture] = {}
for _depth, _n in CIFAR_DEPTHS.items():
    ARCHITECTURES[f"resnet{_depth}"] = Architecture(f"resnet{_depth}", "cifar_resnet", (_n,) * 3, _cifar)
for _depth, (_kind, _layers) in TORCHVISION_LAYOUTS.items():
    ARCHITECTURES[f"resnet{_depth}"] = Architecture(
        f"resnet{_depth}", "torchvision_resnet", _layers, _torchvision(_kind)
    )


def get_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    blocks_per_stage: Sequence[int] | None = None,
) -> nn.Module:
    """Builds architecture ``name`` with random weights.

    Args:
        name: one of :data:`ARCHITECTURES` (``resnet20``..``resnet110`` are CIFAR ResNets,
            ``resnet18/34/50`` torchvision's ImageNet ResNets).
        num_classes: classifier outputs.
        in_channels: input image channels.
        blocks_per_stage: override the published depth of each stage.

    Raises:
        ValueError: unknown name, or a ``blocks_per_stage`` of the wrong length.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    blocks = list(blocks_per_stage) if blocks_per_stage is not None else list(arch.blocks_per_stage)
    if len(blocks) != len(arch.blocks_per_stage):
        raise ValueError(
            f"{name} has {len(arch.blocks_per_stage)} stages, but blocks_per_stage={blocks} has {len(blocks)} entries"
        )
    return arch.build(blocks, num_classes, in_channels)


def build_model(spec: dict) -> nn.Module:
    """Rebuilds a model (random weights) from the spec that ``model.spec()`` returns.

    Raises:
        ValueError: the spec names an unknown family or misses a field.
    """
    family = spec.get("arch")
    try:
        if family == "causal_lm":
            from layerprune.lm.model import build_causal_lm

            return build_causal_lm(spec)
        if family == "cifar_resnet":
            return CifarResNet(
                spec["blocks_per_stage"],
                num_classes=spec["num_classes"],
                in_channels=spec["in_channels"],
                widths=spec.get("widths", (16, 32, 64)),
            )
        if family == "torchvision_resnet":
            return _torchvision_resnet(
                spec["block"], spec["blocks_per_stage"], spec["num_classes"], spec["in_channels"]
            )
    except KeyError as err:
        raise ValueError(f"model spec {spec} lacks the field {err.args[0]!r}") from None
    raise ValueError(
        f"unknown model family {family!r} in spec; expected 'cifar_resnet', 'torchvision_resnet' or 'causal_lm'"
    )
