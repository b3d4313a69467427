"""The one training loop: SGD with a per-step lr schedule, used for baselines and for fine-tuning pruned models.

Reproducibility contract: on the CPU, the same model initialisation, data and :class:`TrainConfig` give
bit-identical weights and metrics, and a run killed after any epoch and restarted with the same ``workdir`` ends
exactly where an uninterrupted run ends. This holds because (1) the train shuffling uses its own
``torch.Generator`` seeded from ``(seed, epoch)`` rather than the global RNG, (2) every epoch writes ``last.pt``
atomically with the model, optimiser, scheduler and GradScaler states plus all RNG states, and (3) resuming
restores all of them before the next epoch. On CUDA, cuDNN autotuning and atomics make runs close but not bitwise
equal.

A state file is only resumed by the run that wrote it: ``last.pt`` stores a fingerprint (sha256) of the training
settings (except :data:`RESUME_MAY_DIFFER`, and with ``num_workers`` resolved), the model's spec, a hash of the initial
weights (for fine-tuning: the pruned model) and the caller's ``run_inputs`` (the data config, the parent checkpoint).
A state with another fingerprint belongs to another run: it is logged, deleted and training starts from scratch,
because the workflow reruns a job after any of these changed and expects fresh weights, not the old finished ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from layerprune.train.config import TrainConfig
from layerprune.train.device import (
    autocast,
    resolve_amp,
    resolve_num_workers,
    seed_everything,
    select_device,
    use_channels_last,
)
from layerprune.train.schedule import build_scheduler
from layerprune.train.state import (
    atomic_torch_save,
    atomic_write_text,
    get_rng_state,
    load_state,
    set_rng_state,
)

__all__ = [
    "LOG_COLUMNS",
    "RESUME_MAY_DIFFER",
    "STATE_FILE",
    "FitResult",
    "evaluate",
    "fit",
    "library_versions",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

STATE_FILE = "last.pt"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
# Config keys that may change between an interrupted run and its resumption because they do not change the
# optimisation trajectory. Every other key is part of the run's fingerprint. num_workers is not here: 0 and >0
# workers (or 2 and 4) draw the augmentation from different random streams, so the resolved count is fingerprinted.
RESUME_MAY_DIFFER = ("eval_batch_size",)
# Progress lines in non-terminal logs (tqdm is off there): one whenever PROGRESS_SECONDS passed since the last line,
# and one at every tenth of an epoch if at least PROGRESS_MIN_SECONDS passed, so short epochs add no lines.
PROGRESS_SECONDS = 30.0
PROGRESS_MIN_SECONDS = 10.0


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        top1: Final test top-1 accuracy in [0, 1] (NaN without a test set).
        loss: Final test cross-entropy (mean over samples, no label smoothing).
        train_loss: Mean training loss of the last epoch.
        train_acc: Training accuracy of the last epoch (on augmented batches, in train mode).
        epochs: Epochs trained in total (including those before a resume).
        seconds: Wall-clock training time in seconds, summed over interruptions.
        seed: The config's seed.
        device: Device the run finished on, e.g. ``"cpu"`` or ``"cuda:0"``.
        amp: Precision used: ``"off"``, ``"bf16"`` or ``"fp16"``.
        resumed_from_epoch: Epochs already done when this call started (0 for a fresh run).
        versions: Versions of python, torch, torchvision and numpy.
        history: One dict per epoch with the :data:`LOG_COLUMNS`.
        train_samples: Training samples processed over all epochs (including those before a resume).
        usage_before: The ``usage`` counters that earlier, interrupted processes of this run stored in ``last.pt``
            (empty for a fresh run); add them to this process's counters for the whole run's total.
        fingerprint: sha256 identifying the run (see the module docstring).
    """

    top1: float
    loss: float
    train_loss: float
    train_acc: float
    epochs: int
    seconds: float
    seed: int
    device: str
    amp: str
    resumed_from_epoch: int
    versions: dict[str, str]
    history: list[dict[str, float]]
    train_samples: int
    usage_before: dict[str, float]
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form for JSON/YAML metric files."""
        return dataclasses.asdict(self)

    def coverage(self) -> dict[str, int]:
        """What the run covers, as extra columns of its emissions row.

        ``n_samples``: training samples actually processed over all epochs (``max_steps_per_epoch`` and a dropped
        last batch included); ``epochs``: epochs of the whole run; ``resumed_from_epoch``: epochs an earlier process
        had finished (their energy is carried over through :attr:`usage_before`).
        """
        return {"n_samples": self.train_samples, "epochs": self.epochs, "resumed_from_epoch": self.resumed_from_epoch}


def library_versions() -> dict[str, str]:
    """Versions that determine numerical results, recorded with every training run."""
    versions = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__}
    try:  # read from the package metadata: importing torchvision costs about 2 s (it pulls in torch._dynamo)
        versions["torchvision"] = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:  # a dependency, but the loop itself does not need it
        versions["torchvision"] = "not installed"
    return versions


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; propagate it to numpy/python for user transforms.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    # SeedSequence mixes (seed, epoch) so that neighbouring seeds do not give shifted copies of each other's order.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def _train_loader(
    dataset: Dataset, config: TrainConfig, epoch: int, device: torch.device, num_workers: int
) -> DataLoader:
    n = len(dataset)  # type: ignore[arg-type]
    generator = torch.Generator()
    generator.manual_seed(_epoch_seed(config.seed, epoch))
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # A final batch of one sample breaks BatchNorm in train mode; drop it only in that case.
        drop_last=n > config.batch_size and n % config.batch_size == 1,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        # A fresh loader per epoch (no persistent workers), so worker RNGs depend only on (seed, epoch): resumable.
        persistent_workers=False,
    )


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``dataset``, in fp32 and eval mode.

    Args:
        model: Classifier mapping images ``(n, C, H, W)`` to logits ``(n, num_classes)``. It is moved to ``device``
            in place (as ``nn.Module.to`` does) and its train/eval mode is restored afterwards.
        dataset: Yields ``(image, int label)``.
        batch_size: Evaluation batch size.
        device: ``None``/``"auto"`` picks CUDA when available, else CPU.
        num_workers: DataLoader worker processes (0: main process).

    Returns:
        ``{"top1": accuracy in [0, 1], "loss": mean cross-entropy, "n": number of samples}``.

    Raises:
        ValueError: If the dataset is empty.
    """
    n_total = len(dataset)  # type: ignore[arg-type]
    if n_total == 0:
        raise ValueError("cannot evaluate on an empty dataset; check the data config and subset size")
    dev = select_device(device)
    model.to(dev)
    channels_last = any(
        p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=dev.type == "cuda"
    )
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    n_targets = 0  # images, or tokens of a causal LM (targets (B, T))
    try:
        with torch.inference_mode():
            for x, y in loader:
                x = _to_device(x, dev, channels_last)
                y = y.to(dev, non_blocking=dev.type == "cuda")
                logits = model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(dim=1) == y).sum()
                n_targets += y.numel()
    finally:
        model.train(was_training)
    return {"top1": correct.item() / n_targets, "loss": loss_sum.item() / n_targets, "n": n_targets}


def weights_sha256(model: nn.Module) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes and bytes of every parameter and buffer)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _run_identity(
    model: nn.Module, config: TrainConfig, num_workers: int, run_inputs: dict[str, Any] | None
) -> dict[str, Any]:
    """What makes a run this run; its digest is the fingerprint stored in ``last.pt``."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUME_MAY_DIFFER}
    settings["num_workers"] = num_workers  # the resolved count: "auto" differs between CPU and CUDA
    spec_fn = getattr(model, "spec", None)  # layerprune models describe their architecture as plain data
    spec = spec_fn() if callable(spec_fn) else None
    return {
        "settings": settings,
        "inputs": _sha256_json(run_inputs or {}),
        "model_spec": _sha256_json(spec),
        "initial_weights": weights_sha256(model),
    }


def _identity_changes(saved: dict[str, Any], identity: dict[str, Any]) -> str:
    """Human-readable reason why a saved state belongs to another run."""
    old = saved.get("identity")
    if not isinstance(old, dict):
        return "it has no run fingerprint (written by an older layerprune)"
    reasons = []
    old_settings, new_settings = old.get("settings", {}), identity["settings"]
    changed = sorted(k for k in set(old_settings) | set(new_settings) if old_settings.get(k) != new_settings.get(k))
    if changed:
        reasons.append(
            "training settings " + ", ".join(f"{k} {old_settings.get(k)!r} -> {new_settings.get(k)!r}" for k in changed)
        )
    labels = {
        "inputs": "the run inputs (data config, parent checkpoint)",
        "model_spec": "the model spec",
        "initial_weights": "the initial weights",
    }
    reasons += [f"{label} changed" for key, label in labels.items() if old.get(key) != identity[key]]
    return "; ".join(reasons) or "its fingerprint differs"


def _add_usage(before: dict[str, float], now: dict[str, float] | None) -> dict[str, float]:
    if not now:
        return dict(before)
    return {k: float(before.get(k, 0.0)) + float(now.get(k, 0.0)) for k in {*before, *now}}


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    pd.DataFrame(history, columns=list(LOG_COLUMNS)).to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def fit(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset | None,
    config: TrainConfig,
    workdir: Path,
    *,
    log_csv: Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    run_inputs: dict[str, Any] | None = None,
    usage: Callable[[], dict[str, float] | None] | None = None,
) -> FitResult:
    """Train ``model`` in place with SGD, checkpointing every epoch and resuming after an interruption.

    Args:
        model: Classifier mapping ``(n, C, H, W)`` to logits ``(n, num_classes)``; seed before building it (see
            :func:`layerprune.train.seed_everything`) for a reproducible initialisation. It is trained in place,
            left on ``device`` in the default (contiguous) memory format and in eval mode.
        train_set: Yields ``(image, int label)``; put augmentation in its transform.
        test_set: Evaluated after every epoch (fp32); ``None`` skips evaluation (test metrics are NaN).
        config: Hyper-parameters.
        workdir: Folder for ``last.pt``. If it holds the state of this same run (same fingerprint: settings, model
            spec, initial weights and ``run_inputs``), an unfinished run continues from it and a finished one is
            loaded without retraining. A state of another run is logged, deleted and training starts from scratch.
        log_csv: Per-epoch CSV (columns :data:`LOG_COLUMNS`), rewritten atomically after each epoch.
        device: ``None``/``"auto"`` (CUDA when available, else CPU) or an explicit device.
        progress: Show a tqdm bar per epoch on a terminal; elsewhere (a rule's log file) log a progress line every
            tenth of an epoch (at most one per ``PROGRESS_MIN_SECONDS``) or every ``PROGRESS_SECONDS``.
            ``False`` shows neither.
        on_epoch_end: Called as ``on_epoch_end(epoch, row)`` after epoch ``epoch`` (1-based) is checkpointed.
        run_inputs: JSON-able description of what else determines the run, e.g. ``{"data": data_cfg,
            "parent": checkpoint_sha256}``; part of the fingerprint.
        usage: Returns cumulative counters of this process so far (e.g. energy from
            :meth:`layerprune.emissions.PhaseRecord.usage`), or ``None``. Each epoch's state stores the counters of
            earlier processes of the run plus this one's, and :attr:`FitResult.usage_before` returns the earlier
            ones, so a resumed run can report its whole cost. Work after the last checkpoint of a killed process is
            not counted.

    Returns:
        Final metrics, run metadata and the per-epoch history.

    Raises:
        ValueError: If the training set is empty.
        RuntimeError: If ``last.pt`` cannot be read, or the loss becomes NaN or infinite; that epoch is not
            checkpointed, so ``last.pt`` still holds the last good epoch (or does not exist) and no broken model is
            ever saved.
    """
    workdir = Path(workdir)
    n_train = len(train_set)  # type: ignore[arg-type]
    if n_train == 0:
        raise ValueError("the training set is empty; check the data config and subset size")
    dev = select_device(device)
    num_workers = resolve_num_workers(config.num_workers, dev)
    identity = _run_identity(model, config, num_workers, run_inputs)  # before any weights are loaded
    fingerprint = _sha256_json(identity)
    amp_dtype = resolve_amp(config.amp, dev)
    amp_name = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    channels_last = use_channels_last(config.channels_last, model)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    batches = len(_train_loader(train_set, config, 0, dev, num_workers))
    steps_per_epoch = min(batches, config.max_steps_per_epoch or batches)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)

    state_path = workdir / STATE_FILE
    history: list[dict[str, float]] = []
    start_epoch = 0
    samples_total = 0
    usage_before: dict[str, float] = {}
    saved = load_state(state_path) if state_path.exists() else None
    if saved is not None and saved.get("fingerprint") != fingerprint:
        logger.warning(
            "training state %s belongs to another run (%s); discarding it and training from scratch",
            state_path,
            _identity_changes(saved, identity),
        )
        state_path.unlink()
        saved = None
        if log_csv is not None:
            _write_log(Path(log_csv), [])  # the old run's epochs must not pass for this run's
    if saved is not None:
        runtime = [k for k in RESUME_MAY_DIFFER if saved.get("config", {}).get(k) != config.to_dict().get(k)]
        if runtime:
            logger.info("resuming with changed runtime settings %s (results stay valid)", runtime)
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as exc:
            raise RuntimeError(
                f"training checkpoint {str(state_path)!r} does not fit this model ({exc}); use another workdir "
                "or delete the file"
            ) from exc
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        start_epoch = int(saved["epoch"])
        history = [dict(row) for row in saved["history"]]
        samples_total = int(saved["samples"])
        usage_before = {k: float(v) for k, v in saved.get("usage", {}).items()}
        logger.info("resuming %s at epoch %d/%d", state_path, start_epoch + 1, config.epochs)
    else:
        seed_everything(config.seed)
    if log_csv is not None and history:
        _write_log(Path(log_csv), history)

    train_model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
    show_bar = progress and sys.stderr.isatty()
    log_progress = progress and not show_bar
    tenth = max(1, math.ceil(steps_per_epoch / 10))
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        lr_first = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        last_line = t0
        loader = _train_loader(train_set, config, epoch, dev, num_workers)
        bar = tqdm(
            loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_bar, leave=False
        )
        for step, (x, y) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            x = _to_device(x, dev, channels_last)
            y = y.to(dev, non_blocking=dev.type == "cuda")
            with autocast(dev, amp_dtype):
                logits = train_model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                saved_note = f"{state_path} still holds epoch {epoch}" if epoch else "no checkpoint was written"
                raise RuntimeError(
                    f"training loss is {loss_value} at epoch {epoch + 1}/{config.epochs}, step "
                    f"{step + 1}/{steps_per_epoch} (lr {optimizer.param_groups[0]['lr']:.4g}); this epoch was not "
                    f"saved ({saved_note}). Lower the learning rate, add warmup_epochs, or set amp to 'off'"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach().double() * y.numel()  # images, or tokens
            correct += (logits.detach().argmax(dim=1) == y).sum()
            seen += y.numel()
            if show_bar and step % 10 == 0:
                bar.set_postfix(loss=f"{loss_value:.3f}")
            if log_progress and step + 1 < steps_per_epoch:  # the epoch line reports the last step
                now = time.perf_counter()
                since = now - last_line
                if since >= PROGRESS_SECONDS or ((step + 1) % tenth == 0 and since >= PROGRESS_MIN_SECONDS):
                    last_line = now
                    logger.info(
                        "epoch %d/%d: step %d/%d (%.0f%%), train loss %.4f, %.0f s",
                        epoch + 1,
                        config.epochs,
                        step + 1,
                        steps_per_epoch,
                        100 * (step + 1) / steps_per_epoch,
                        loss_sum.item() / seen,
                        now - t0,
                    )
        bar.close()

        test = (
            evaluate(model, test_set, batch_size=config.eval_batch_size, device=dev, num_workers=num_workers)
            if test_set is not None
            else {"top1": math.nan, "loss": math.nan}
        )
        row = {
            "epoch": epoch + 1,
            "lr": lr_first,
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "test_loss": test["loss"],
            "test_acc": test["top1"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        samples_total += seen
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "seconds": sum(r["seconds"] for r in history),
                "history": history,
                "rng": get_rng_state(),
                "config": config.to_dict(),
                "versions": library_versions(),
                "fingerprint": fingerprint,
                "identity": identity,
                "samples": samples_total,
                "usage": _add_usage(usage_before, usage() if usage is not None else None),
            },
            state_path,
        )
        if log_csv is not None:
            _write_log(Path(log_csv), history)
        logger.info(
            "epoch %d/%d: lr %.4g, train loss %.4f acc %.4f, test loss %.4f acc %.4f (%.1f s)",
            row["epoch"],
            config.epochs,
            row["lr"],
            row["train_loss"],
            row["train_acc"],
            row["test_loss"],
            row["test_acc"],
            row["seconds"],
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    last = history[-1]
    return FitResult(
        top1=float(last["test_acc"]),
        loss=float(last["test_loss"]),
        train_loss=float(last["train_loss"]),
        train_acc=float(last["train_acc"]),
        epochs=int(last["epoch"]),
        seconds=sum(r["seconds"] for r in history),
        seed=config.seed,
        device=str(dev),
        amp=amp_name,
        resumed_from_epoch=start_epoch,
        versions=library_versions(),
        history=history,
        train_samples=samples_total,
        usage_before=usage_before,
        fingerprint=fingerprint,
    )
