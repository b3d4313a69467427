"""CIFAR-style ResNets (He et al., 2016, section 4.2): ResNet-20/32/44/56/110.

Depth is data, as in torchvision: one :class:`CifarResNet` takes the number of units
(BasicBlocks) per stage. The module names (``conv1``, ``bn1``, ``layer{1,2,3}.{i}``,
``linear``) match the checkpoints of akamaster/pytorch_resnet_cifar10, so those load
after stripping the ``module.`` prefix.

Paper: https://arxiv.org/abs/1512.03385
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "cifar_resnet",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "cifar_resnet110",
]

CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut ("option A"): subsample by 2, zero-pad the channels.

    The paper's CIFAR models use it so that every parameter is in the residual branch;
    the pretrained checkpoints we load rely on it (they have no projection weights).
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; the prunable unit of CIFAR ResNets."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: a 3x3 stem, three stages of BasicBlocks, global pooling, a linear classifier.

    Args:
        blocks_per_stage: number of units in each stage; ``[9, 9, 9]`` is ResNet-56. A stage
            may hold a single unit (its first, downsampling one), which is what remains after
            pruning all its removable units.
        num_classes: classifier outputs.
        in_channels: input image channels (3 for CIFAR, 1 for grey-scale data sets).
        widths: channels of the three stages.
    """

    stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3")

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != 3 or any(int(n) < 1 for n in blocks_per_stage):
            raise ValueError(f"blocks_per_stage must be three integers >= 1, got {list(blocks_per_stage)}")
        if len(widths) != 3:
            raise ValueError(f"widths must have three entries, got {list(widths)}")
        self.blocks_per_stage = [int(n) for n in blocks_per_stage]
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.widths = [int(w) for w in widths]

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for stage, (n, planes) in enumerate(zip(self.blocks_per_stage, self.widths)):
            stride = 1 if stage == 0 else 2
            blocks = [BasicBlock(in_planes, planes, stride)]
            blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
            setattr(self, self.stage_names[stage], nn.Sequential(*blocks))
            in_planes = planes
        self.linear = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def spec(self) -> dict:
        """The architecture as plain data: ``build_model(model.spec())`` rebuilds it."""
        return {
            "arch": "cifar_resnet",
            "blocks_per_stage": list(self.blocks_per_stage),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "widths": list(self.widths),
        }

    def forward_stem(self, x: Tensor) -> Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def forward_penultimate(self, h: Tensor) -> Tensor:
        """Global average pool of the last unit's output: the classifier's input, (n, 64)."""
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.linear(features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.forward_stem(x)
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return self.forward_head(self.forward_penultimate(h))


def cifar_resnet(depth: int, *, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """Builds ResNet-``depth`` (6n + 2 layers) for CIFAR-sized inputs."""
    if depth not in CIFAR_DEPTHS:
        raise ValueError(f"unknown CIFAR ResNet depth {depth}; expected one of {sorted(CIFAR_DEPTHS)}")
    n = CIFAR_DEPTHS[depth]
    return CifarResNet([n, n, n], num_classes=num_classes, in_channels=in_channels)


def cifar_resnet20(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return cifar_resnet(20, num_classes=num_classes, in_channels=in_channels)


def cifar_resnet32(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return cifar_resnet(32, num_classes=num_classes, in_channels=in_channels)


def cifar_resnet44(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return cifar_resnet(44, num_classes=num_classes, in_channels=in_channels)


def cifar_resnet56(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return cifar_resnet(56, num_classes=num_classes, in_channels=in_channels)


def cifar_resnet110(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return cifar_resnet(110, num_classes=num_classes, in_channels=in_channels)
