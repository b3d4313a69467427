"""Inference latency of a model, for the speed-up side of pruning trade-offs."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from layerprune.train.device import (
    autocast,
    resolve_amp,
    select_device,
    use_channels_last,
)

__all__ = ["measure_latency"]

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    warmup: int = 5,
    repeats: int = 20,
    amp: str = "off",
    channels_last: str | bool = "auto",
) -> dict[str, float | int | str]:
    """Time forward passes of ``model`` on random inputs of shape ``(batch_size, *input_size)``.

    The median over ``repeats`` timed passes (after ``warmup`` untimed ones, which absorb lazy initialisation,
    cuDNN autotuning and allocator growth) is robust to the occasional scheduler hiccup on a shared machine.
    CUDA work is synchronised before and after each pass so the wall-clock covers the kernels, not their launch.

    Args:
        model: Any module taking ``(n, *input_size)``; it is moved to ``device`` (and, for conv nets with
            ``channels_last``, to NHWC) and put in eval mode, and its mode and memory format are restored after.
        input_size: One input's shape without the batch dimension, e.g. ``(3, 32, 32)``.
        batch_size: Inputs per forward pass.
        device: ``None``/``"auto"`` picks CUDA when available, else CPU.
        warmup: Untimed passes before measuring.
        repeats: Timed passes.
        amp: ``"off"``, ``"auto"``, ``"bf16"`` or ``"fp16"`` (see :func:`layerprune.train.resolve_amp`).
        channels_last: ``"auto"`` (on for conv nets), ``True`` or ``False``, as in training.

    Returns:
        ``median_ms``, its quartiles ``q1_ms`` and ``q3_ms`` (the spread), ``mean_ms``, ``min_ms`` and ``max_ms`` per
        batch, every timed pass (``samples_ms``), ``samples_per_s`` (from the median), ``batch_size``,
        ``repeats`` and ``device``.

    Raises:
        ValueError: If ``batch_size`` or ``repeats`` is below 1, ``warmup`` is negative, or ``input_size`` is empty.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"batch_size={batch_size}, repeats={repeats}, warmup={warmup} are invalid; expected batch_size >= 1, "
            "repeats >= 1 and warmup >= 0"
        )
    if len(input_size) == 0:
        raise ValueError("input_size is empty; expected the shape of one input, e.g. (3, 32, 32)")
    dev = select_device(device)
    dtype = resolve_amp(amp, dev)
    nhwc = use_channels_last(channels_last, model) and len(input_size) == 3
    was_training = model.training
    model.to(dev).eval()
    if nhwc:
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *input_size), generator=generator).to(dev)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    times_ms: list[float] = []
    try:
        with torch.inference_mode(), autocast(dev, dtype):
            for i in range(warmup + repeats):
                _sync(dev)
                t0 = time.perf_counter()
                model(x)
                _sync(dev)
                if i >= warmup:
                    times_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        if nhwc:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    median = statistics.median(times_ms)
    q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive") if len(times_ms) > 1 else (median,) * 3
    return {
        "median_ms": median,
        "q1_ms": q1,
        "q3_ms": q3,
        "mean_ms": statistics.fmean(times_ms),
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "samples_ms": times_ms,
        "samples_per_s": batch_size / (median / 1e3),
        "batch_size": batch_size,
        "repeats": repeats,
        "device": str(dev),
    }
