"""Self-describing checkpoints: architecture spec + weights + preprocessing, loadable
without the workflow, and importers for published weight files."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerprune.io import atomic_path
from layerprune.models.registry import build_model

__all__ = [
    "Checkpoint",
    "NotACheckpointError",
    "load_checkpoint",
    "load_external_weights",
    "save_checkpoint",
]

FORMAT = "layerprune-checkpoint"
VERSION = 1
PREPROCESSING_KEYS = ("mean", "std", "input_size", "num_classes")


class NotACheckpointError(ValueError):
    """A readable torch file that is not a layerprune checkpoint (e.g. a published state dict)."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the rebuilt model, in eval mode, on the CPU.
        spec: architecture spec (``model.spec()``).
        preprocessing: ``mean``/``std`` per channel for inputs in [0, 1], ``input_size``
            [C, H, W], ``num_classes`` and ``dataset``.
        meta: free-form provenance (stage, seed, removed units, versions).
    """

    model: nn.Module
    spec: dict
    preprocessing: dict
    meta: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    preprocessing: dict,
    meta: dict | None = None,
) -> Path:
    """Writes ``model`` atomically as a self-describing checkpoint.

    Raises:
        ValueError: ``preprocessing`` lacks one of ``mean, std, input_size, num_classes``.
    """
    missing = [k for k in PREPROCESSING_KEYS if k not in preprocessing]
    if missing:
        raise ValueError(f"preprocessing lacks {missing}; a checkpoint must say how to feed the model")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": model.spec(),
        "preprocessing": _plain(preprocessing),
        "meta": _plain(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler also fails on garbage with LookupError (IndexError, KeyError
    # on bad opcodes), ValueError or TypeError; all mean the same to the user.
    except (
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        LookupError,
        ValueError,
        TypeError,
    ) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if not _looks_like_torch_file(path):
            raise NotACheckpointError(
                f"{path} is not a checkpoint: it is not a file torch.save writes ({_what_it_is(path)}); "
                "give a model.pt written by a layerprune stage (baseline, prune, finetune)"
            ) from None
        raise ValueError(
            f"checkpoint {path} is a torch file that cannot be read ({reason}); it may be truncated (a copy or "
            "write cut short): copy it again, or rerun the stage that wrote it"
        ) from None


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in the legacy format, a pickle starting with the PROTO opcode)."""
    with path.open("rb") as fh:
        head = fh.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"  # a zip's first local header (kept when truncated)


def _what_it_is(path: Path) -> str:
    """A short guess at what a non-torch file is, from its name and first bytes, for error messages."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8]!r}"
    kinds = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".csv": "CSV", ".md": "Markdown", ".py": "Python"}
    kind = kinds.get(path.suffix.lower(), "text")
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"it is {kind}, starting {first!r}"


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is corrupt, is not a layerprune checkpoint, or its weights do not
            match its spec.
    """
    path = Path(path)
    payload = _read(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NotACheckpointError(
            f"{path} is not a layerprune checkpoint; to start from published weights, set "
            "model.checkpoint in the config (the baseline stage imports them)"
        )
    if payload.get("version", 0) > VERSION:
        raise ValueError(f"{path} has checkpoint version {payload['version']}; upgrade layerprune")
    lacking = [key for key in ("spec", "state_dict", "preprocessing") if not isinstance(payload.get(key), dict)]
    if lacking:
        raise ValueError(
            f"checkpoint {path} lacks {lacking}: it was not written by layerprune's save_checkpoint (or is "
            "truncated); give a model.pt written by a layerprune stage"
        )
    model = build_model(payload["spec"])
    _load_state(model, payload["state_dict"], path)
    model.eval()
    return Checkpoint(model, payload["spec"], payload["preprocessing"], payload.get("meta", {}))


def load_external_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Loads a published weight file into ``model`` (in place) and returns it.

    Accepts a plain state dict (torchvision's files) or a dict with a ``state_dict`` entry
    (akamaster's CIFAR ResNets), and strips the ``module.`` prefix DataParallel adds.
    """
    path = Path(path)
    payload = _read(path)
    if isinstance(payload, dict) and (payload.get("format") == FORMAT or "state_dict" in payload):
        payload = payload["state_dict"]
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a {type(payload).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in payload.items()}
    _load_state(model, state, path)
    return model


def _load_state(model: nn.Module, state: dict, path: Path) -> None:
    own = model.state_dict()
    # Older files (e.g. the published CIFAR ResNets) predate BatchNorm's counter buffer.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights in {path} do not fit {type(model).__name__} {model.spec()}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {shapes[:3]}; "
            "check model.arch, num_classes and in_channels in the config"
        )
    model.load_state_dict(state, strict=False)


def _plain(obj: Any) -> Any:
    """Converts tuples/numpy scalars to plain types so ``weights_only`` loading accepts them."""
    if isinstance(obj, str):  # also str subclasses such as torch's TorchVersion
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
