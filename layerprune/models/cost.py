"""Model cost as the pruning papers report it: MACs and parameters.

MACs are multiply-accumulates of convolutions and linear layers for one input; batch
norm, activations, pooling and residual additions are not counted (the convention of
the CKA, SGLP and Consensus papers: ResNet-56 on 32x32 is 125.49 M). We use torch's own
``FlopCounterMode`` (2 FLOPs per MAC, counting exactly convolutions and matrix
multiplies) rather than a third-party counter, so the count follows torch's operators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "count_params", "example_input", "inputs_per_example"]


def example_input(model: nn.Module, input_size: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """One input for ``model``: zeros of shape (1, C, H, W) for images, or what the model's own
    ``example_input`` builds from its input spec (token ids (1, T) for a causal LM)."""
    if hasattr(model, "example_input"):
        return model.example_input(input_size, device)
    return torch.zeros(1, *input_size, device=device)


def inputs_per_example(model: nn.Module, input_size: Sequence[int]) -> int:
    """What costs are reported per: 1 for an image, T for a sequence of T tokens (per-token cost)."""
    return model.inputs_per_example(input_size) if hasattr(model, "inputs_per_example") else 1


def count_macs(model: nn.Module, input_size: Sequence[int]) -> tuple[int, dict[str, int]]:
    """MACs of one forward pass of a single input of shape ``input_size`` (C, H, W), or per token
    of a sequence of ``input_size = (T,)`` tokens for a causal LM (the total over T tokens,
    including the T x T attention matmuls, divided by T).

    Returns:
        The total, and the MACs of every module by its dotted name (``""`` is unused;
        parents include their children, e.g. ``"layer1"`` and ``"layer1.0"``).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model(example_input(model, input_size, device))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per = inputs_per_example(model, input_size)
    per_module: dict[str, int] = {}
    for key, ops in counts.items():
        if key in ("Global", root):
            continue
        name = key.split(".", 1)[1] if key.startswith(root + ".") else key
        per_module[name] = int(sum(ops.values())) // 2 // per
    total = int(sum(counts.get("Global", {}).values())) // 2 // per
    return total, per_module


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
