"""Device, precision and seeding helpers shared by training, evaluation and latency measurement."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = [
    "MAX_AUTO_WORKERS",
    "autocast",
    "resolve_amp",
    "resolve_num_workers",
    "seed_everything",
    "select_device",
    "use_channels_last",
]

logger = logging.getLogger(__name__)

# More loader processes than this rarely help one GPU (CIFAR/ImageNet augmentations) and each costs memory.
MAX_AUTO_WORKERS = 8


def select_device(pref: str | torch.device | None = "auto") -> torch.device:
    """Pick the device to run on.

    Args:
        pref: ``"auto"`` or ``None`` (CUDA when available, else CPU), or an explicit device such as ``"cpu"`` or
            ``"cuda:1"``.

    Returns:
        The torch device.

    Raises:
        RuntimeError: If CUDA is requested but not available.
    """
    if pref is None or pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(pref)!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return device


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Turn the config's ``amp`` setting into an autocast dtype (``None`` = full fp32).

    Args:
        amp: ``"auto"``, ``"off"``, ``"bf16"`` or ``"fp16"``.
        device: Device the model runs on.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None``. ``"auto"`` gives bf16 on CUDA devices that support it
        (no loss scaling needed), fp16 on older GPUs, and ``None`` on CPU, where reduced precision is usually
        slower and would break bit-exact CPU reproducibility.
    """
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    raise ValueError(f"amp={amp!r} is unknown; expected 'auto', 'off', 'bf16' or 'fp16'")


def resolve_num_workers(setting: int | str, device: torch.device, threads: int | None = None) -> int:
    """Turn the config's ``num_workers`` into a DataLoader worker count.

    Args:
        setting: ``"auto"`` or an explicit count (returned unchanged).
        device: Device the model trains on.
        threads: CPU threads the job may use (the workflow rule's ``threads``, which the CLI's ``--threads`` hands
            to ``torch.set_num_threads``); ``None`` reads ``torch.get_num_threads()``.

    Returns:
        For ``"auto"``: on CUDA ``threads - 1`` (one core stays with the main process, which feeds the GPU),
        clipped to ``[1, MAX_AUTO_WORKERS]``; on the CPU 0, because there the main process computes on all the
        job's threads and worker processes would only take cores from it.

    Raises:
        ValueError: If ``setting`` is neither ``"auto"`` nor an integer >= 0.
    """
    if setting == "auto":
        if device.type != "cuda":
            return 0
        n = torch.get_num_threads() if threads is None else threads
        return max(1, min(n - 1, MAX_AUTO_WORKERS))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(f"num_workers={setting!r} is invalid; expected 'auto' or an integer >= 0")
    return setting


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or a no-op when ``dtype`` is ``None``."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def use_channels_last(setting: str | bool, model: nn.Module) -> bool:
    """Whether to store activations and weights channels-last (NHWC).

    ``"auto"`` turns it on for any model with a 2-D convolution: cuDNN and oneDNN both pick faster NHWC kernels
    (about 1.3x for CIFAR ResNets on this project's CPUs); it does nothing useful for MLPs and transformers.
    """
    if setting == "auto":
        return any(isinstance(m, nn.Conv2d) for m in model.modules())
    return bool(setting)


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device).

    Call it before building a model so that its random initialisation is reproducible too.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
