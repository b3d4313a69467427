"""torchvision's ImageNet ResNets (18/34/50), described in prunable units.

We subclass :class:`torchvision.models.ResNet` rather than copy it, so the module names
and state-dict keys are torchvision's own and its weight files load unchanged. The only
addition is the forward split (stem, units, penultimate, head) every criterion relies on,
and support for stages whose depths differ from the published ones (after pruning).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["TorchvisionResNet"]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class TorchvisionResNet(ResNet):
    """A torchvision ResNet whose units are its BasicBlocks/Bottlenecks.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        blocks_per_stage: units per stage (four stages), e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        num_classes: classifier outputs.
        in_channels: input channels (the stem convolution is rebuilt when not 3).
    """

    stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        block: str,
        blocks_per_stage: Sequence[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        if block not in _BLOCKS:
            raise ValueError(f"unknown block type {block!r}; expected one of {sorted(_BLOCKS)}")
        if len(blocks_per_stage) != 4 or any(int(n) < 1 for n in blocks_per_stage):
            raise ValueError(f"blocks_per_stage must be four integers >= 1, got {list(blocks_per_stage)}")
        super().__init__(_BLOCKS[block], [int(n) for n in blocks_per_stage], num_classes=num_classes)
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.block = block
        self.blocks_per_stage = [int(n) for n in blocks_per_stage]
        self.num_classes = num_classes
        self.in_channels = in_channels

    def spec(self) -> dict:
        return {
            "arch": "torchvision_resnet",
            "block": self.block,
            "blocks_per_stage": list(self.blocks_per_stage),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
        }

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_penultimate(self, h: Tensor) -> Tensor:
        return torch.flatten(self.avgpool(h), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:  # same as torchvision's, through the split
        h = self.forward_stem(x)
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return self.forward_head(self.forward_penultimate(h))
