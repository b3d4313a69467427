"""Resumable training state: atomic ``last.pt`` files and RNG snapshots.

The file holds everything needed to continue a run bit-exactly on the CPU: model, optimiser, scheduler and
GradScaler states, the number of finished epochs, the per-epoch history and the python/numpy/torch RNG states.
It is loaded with ``weights_only=True``, so it only contains tensors and plain python values (the numpy RNG key is
stored as a tensor for that reason).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerprune.io import write_with

__all__ = ["atomic_torch_save", "get_rng_state", "load_state", "set_rng_state"]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through the one atomic writer (:func:`layerprune.io.write_with`), fsynced before the rename."""
    write_with(path, lambda tmp: torch.save(obj, tmp), fsync=True)


def get_rng_state() -> dict[str, Any]:
    """Snapshot of python, numpy, torch-CPU and (if initialised) CUDA RNG states, in a weights-only-safe form."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`get_rng_state`."""
    py = state["python"]
    # weights_only loading turns the inner tuple into a list; random.setstate needs tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["key"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: Path) -> dict[str, Any]:
    """Load a ``last.pt`` written by :func:`layerprune.train.fit`.

    Raises:
        RuntimeError: If the file cannot be read (a truncated or foreign file); the message says to delete it.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, weights-only) for a bad file
        raise RuntimeError(
            f"cannot read training checkpoint {str(path)!r} ({exc}); delete it to start the run from scratch"
        ) from exc
