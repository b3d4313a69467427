"""MACs and parameters of CIFAR and torchvision ResNets derived from layer shapes alone.

The tests compare ``count_macs``/``count_params``/``get_units`` against these, so the
expected numbers never come from the code under test. Conventions (those of the pruning
papers): a convolution costs ``Cout * Hout * Wout * Cin * k * k`` MACs, a linear layer
``in * out``; batch norm, activations, pooling and additions cost nothing; a batch norm
has ``2 * C`` parameters (weight and bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Cost:
    stem_macs: int = 0
    stem_params: int = 0
    head_macs: int = 0
    head_params: int = 0
    unit_macs: list[int] = field(default_factory=list)
    unit_params: list[int] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.stem_macs + sum(self.unit_macs) + self.head_macs

    @property
    def params(self) -> int:
        return self.stem_params + sum(self.unit_params) + self.head_params


def _out(side: int, k: int, stride: int, pad: int) -> int:
    return (side + 2 * pad - k) // stride + 1


def _conv(cin: int, cout: int, k: int, side_out: int) -> tuple[int, int]:
    return cout * side_out * side_out * cin * k * k, cout * cin * k * k


def cifar_cost(
    blocks: Sequence[int],
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    side: int = 32,
    widths: Sequence[int] = (16, 32, 64),
) -> Cost:
    """He et al. 2016, section 4.2: 3x3 stem, BasicBlocks, option-A (parameter-free) shortcuts."""
    cost = Cost()
    cost.stem_macs, p = _conv(in_channels, widths[0], 3, side)
    cost.stem_params = p + 2 * widths[0]
    cin = widths[0]
    for stage, (n, w) in enumerate(zip(blocks, widths)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            side = _out(side, 3, stride, 1)
            m1, p1 = _conv(cin, w, 3, side)
            m2, p2 = _conv(w, w, 3, side)
            cost.unit_macs.append(m1 + m2)
            cost.unit_params.append(p1 + p2 + 2 * (2 * w))
            cin = w
    cost.head_macs = cin * num_classes
    cost.head_params = cin * num_classes + num_classes
    return cost


def torchvision_cost(
    block: str,
    blocks: Sequence[int],
    *,
    in_channels: int = 3,
    num_classes: int = 1000,
    side: int = 224,
) -> Cost:
    """torchvision's ResNet (V1.5: the stride of a Bottleneck is on its 3x3 convolution)."""
    cost = Cost()
    side = _out(side, 7, 2, 3)
    cost.stem_macs, p = _conv(in_channels, 64, 7, side)
    cost.stem_params = p + 2 * 64
    side = _out(side, 3, 2, 1)  # max pool
    expansion = 1 if block == "basic" else 4
    cin = 64
    for stage, n in enumerate(blocks):
        planes = 64 * 2**stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            side_in, side = side, _out(side, 3, stride, 1)
            macs = params = 0
            if block == "basic":
                layers = [(cin, planes, 3, side), (planes, planes, 3, side)]
            else:
                layers = [(cin, planes, 1, side_in), (planes, planes, 3, side), (planes, planes * 4, 1, side)]
            if stride != 1 or cin != planes * expansion:
                layers.append((cin, planes * expansion, 1, side))  # downsample projection
            for c_in, c_out, k, s in layers:
                m, p = _conv(c_in, c_out, k, s)
                macs += m
                params += p + 2 * c_out  # each convolution is followed by a batch norm
            cost.unit_macs.append(macs)
            cost.unit_params.append(params)
            cin = planes * expansion
    cost.head_macs = cin * num_classes
    cost.head_params = cin * num_classes + num_classes
    return cost
