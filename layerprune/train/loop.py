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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from layerprune.config import defaults
from layerprune.io import write_text
from layerprune.train.config import TrainConfig
from layerprune.train.device import (
    autocast,
    resolve_amp,
    resolve_num_workers,
    seed_everything,
    select_device,
    use_channels_last,
)
from layerprune.train.distributed import DistContext, GlobalOrderSampler, loader_order, reduce_usage, shard
from layerprune.train.schedule import build_scheduler
from layerprune.train.state import atomic_torch_save, get_rng_state, load_state, set_rng_state

__all__ = [
    "LOG_COLUMNS",
    "RESUME_MAY_DIFFER",
    "STATE_FILE",
    "BatchLoss",
    "FitResult",
    "classification_loss",
    "evaluate",
    "fit",
    "library_versions",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

STATE_FILE = "last.pt"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
# Config keys that may change between an interrupted run and its resumption. eval_batch_size does not change the
# optimisation trajectory; devices and sync_batchnorm (the data-parallel layout) change it only by float summation
# order and per-process BatchNorm statistics, and a run resumed on another number of processes is logged as such.
# Every other key is part of the run's fingerprint. num_workers is not here: 0 and >0 workers (or 2 and 4) draw the
# augmentation from different random streams, so the resolved count is fingerprinted.
RESUME_MAY_DIFFER = ("eval_batch_size", "devices", "sync_batchnorm")
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
        devices: Processes that trained data-parallel in the last session (1: the one-process loop).
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
    devices: int = 1

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
    dataset: Dataset,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    num_workers: int,
    ctx: DistContext | None = None,
) -> DataLoader:
    """The epoch's training loader: shuffled from ``(seed, epoch)``; with ``ctx``, this process's share of it."""
    n = len(dataset)  # type: ignore[arg-type]
    generator = torch.Generator()
    generator.manual_seed(_epoch_seed(config.seed, epoch))
    if ctx is not None:
        sampler = GlobalOrderSampler(
            dataset, lambda e: _global_order(dataset, config, e, ctx), rank=ctx.rank, world_size=ctx.world_size
        )
        sampler.set_epoch(epoch)
        generator.manual_seed(_epoch_seed(config.seed, epoch) + ctx.rank)  # the workers' seeds differ per rank
        return DataLoader(
            dataset,
            batch_size=config.batch_size // ctx.world_size,
            sampler=sampler,
            generator=generator,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            worker_init_fn=_seed_worker if num_workers > 0 else None,
            persistent_workers=False,
        )
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


def _global_order(dataset: Dataset, config: TrainConfig, epoch: int, ctx: DistContext) -> list[int]:
    """The one-process run's sample order of ``epoch``, trimmed so that no process gets a last batch of one."""
    order = loader_order(_train_loader(dataset, config, epoch, torch.device("cpu"), 0), _progress_bar)
    local_batch = config.batch_size // ctx.world_size
    if len(order) > config.batch_size and math.ceil(len(order) / ctx.world_size) % local_batch == 1:
        order = order[: len(order) - len(order) % config.batch_size]
    return order


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class BatchLoss(Protocol):
    """How the loop turns one batch into a loss: the only task-specific part of training and evaluation.

    Called as ``batch_loss(model, batch, device, channels_last=..., amp_dtype=..., label_smoothing=...,
    reduction=...)`` with ``batch`` as the data loader yields it; runs the forward pass (under ``autocast`` for
    ``amp_dtype``) and returns ``(loss, n, correct)``: the loss over the batch's ``n`` items (``reduction``
    ``"mean"`` in training, ``"sum"`` in evaluation, in fp32) and the number of correct predictions (an int64
    tensor; zeros where accuracy means nothing). :func:`classification_loss` is the default; a language model
    passes its next-token loss (items = tokens).
    """

    def __call__(
        self,
        model: nn.Module,
        batch: Any,
        device: torch.device,
        *,
        channels_last: bool,
        amp_dtype: torch.dtype | None,
        label_smoothing: float,
        reduction: str,
    ) -> tuple[torch.Tensor, int, torch.Tensor]: ...


def classification_loss(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    *,
    channels_last: bool,
    amp_dtype: torch.dtype | None,
    label_smoothing: float,
    reduction: str,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Cross-entropy on ``(inputs, targets)``: an image classifier's ``(images (n, C, H, W), labels (n,))``, or a
    causal LM's ``(tokens (B, T), next tokens (B, T))`` with logits ``(B, V, T)`` (items = tokens); see
    :class:`BatchLoss`."""
    x, y = batch
    x = _to_device(x, device, channels_last)
    y = y.to(device, non_blocking=device.type == "cuda")
    with autocast(device, amp_dtype):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing, reduction=reduction)
    return loss, y.numel(), (logits.detach().argmax(dim=1) == y).sum()  # images, or tokens (targets (B, T))


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    batch_loss: BatchLoss = classification_loss,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``dataset``, in fp32 and eval mode.

    Args:
        model: Classifier mapping images ``(n, C, H, W)`` to logits ``(n, num_classes)``. It is moved to ``device``
            in place (as ``nn.Module.to`` does) and its train/eval mode is restored afterwards.
        dataset: Yields ``(image, int label)``.
        batch_size: Evaluation batch size (``None``: the schema's ``evaluation.batch_size``).
        device: ``None``/``"auto"`` picks CUDA when available, else CPU.
        num_workers: DataLoader worker processes (0: main process).
        batch_loss: The task's loss (:class:`BatchLoss`); accuracy and loss are per item it counts.

    Returns:
        ``{"top1": accuracy in [0, 1], "loss": mean cross-entropy, "n": number of items}``.

    Raises:
        ValueError: If the dataset is empty.
    """
    n_total = len(dataset)  # type: ignore[arg-type]
    if n_total == 0:
        raise ValueError("cannot evaluate on an empty dataset; check the data config and subset size")
    dev = select_device(device)
    if batch_size is None:
        batch_size = defaults("evaluation")["batch_size"]
    loss_sum, correct, n = _eval_sums(
        model, dataset, batch_size=batch_size, device=dev, num_workers=num_workers, batch_loss=batch_loss
    )
    return {"top1": correct.item() / n, "loss": loss_sum.item() / n, "n": n}


def _eval_sums(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    num_workers: int,
    batch_loss: BatchLoss,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed loss (float64), correct predictions (int64) and items of ``model`` on ``dataset``."""
    model.to(device)
    channels_last = any(
        p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    items = 0
    try:
        with torch.inference_mode():
            for batch in loader:
                loss, n, right = batch_loss(
                    model,
                    batch,
                    device,
                    channels_last=channels_last,
                    amp_dtype=None,
                    label_smoothing=0.0,
                    reduction="sum",
                )
                loss_sum += loss.double()
                correct += right
                items += n
    finally:
        model.train(was_training)
    return loss_sum, correct, items


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
    write_text(path, buf.getvalue())


@dataclass
class _Run:
    """What one call of :func:`fit` trains with: built by :func:`_prepare`, restored by :func:`_restore`."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    ctx: DistContext | None
    num_workers: int
    amp_dtype: torch.dtype | None
    channels_last: bool
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    state_path: Path
    identity: dict[str, Any]
    fingerprint: str
    train_model: nn.Module | None = None
    batchnorm_types: dict[str, type[nn.Module]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    samples_total: int = 0
    usage_before: dict[str, float] = field(default_factory=dict)
    batch_loss: BatchLoss = classification_loss

    @property
    def is_main(self) -> bool:
        return self.ctx is None or self.ctx.is_main

    @property
    def world_size(self) -> int:
        return 1 if self.ctx is None else self.ctx.world_size

    @property
    def rank(self) -> int:
        return 0 if self.ctx is None else self.ctx.rank


def _placement(config: TrainConfig, device: str | torch.device | None) -> tuple[torch.device, DistContext | None]:
    """The device to train on and, inside a torchrun process group of several processes, this process's place."""
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if world_size != config.devices:
        raise RuntimeError(
            f"train config devices={config.devices} but {world_size} process(es) are running; start a data-parallel "
            "run through the layerprune command (it relaunches itself with torchrun) or torchrun --nproc_per_node "
            f"{config.devices}, and a one-process run with devices: 1"
        )
    if world_size == 1:
        return select_device(device), None
    dev = select_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # torchrun's LOCAL_RANK, set by process_group
    if config.sync_batchnorm and dev.type != "cuda":
        raise ValueError(
            "train config sync_batchnorm=true needs CUDA (torch's SyncBatchNorm has no CPU kernel); set it to false "
            "for a CPU data-parallel run"
        )
    return dev, DistContext(rank=dist.get_rank(), world_size=world_size, device=dev)


def _prepare(
    model: nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    workdir: Path,
    device: str | torch.device | None,
    run_inputs: dict[str, Any] | None,
    batch_loss: BatchLoss,
) -> _Run:
    """Place the model, build the optimiser, lr schedule and grad scaler, and fingerprint the run."""
    dev, ctx = _placement(config, device)
    num_workers = resolve_num_workers(config.num_workers, dev)
    identity = _run_identity(model, config, num_workers, run_inputs)  # before any weights are loaded
    amp_dtype = resolve_amp(config.amp, dev)
    channels_last = use_channels_last(config.channels_last, model)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    batchnorm_types: dict[str, type[nn.Module]] = {}
    if ctx is not None and config.sync_batchnorm:
        batchnorm_types = {
            n: type(m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        }
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module; parameters are shared
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
    batches = len(_train_loader(train_set, config, 0, dev, num_workers, ctx))
    steps_per_epoch = min(batches, config.max_steps_per_epoch or batches)
    return _Run(
        model=model,
        config=config,
        device=dev,
        ctx=ctx,
        num_workers=num_workers,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config, steps_per_epoch),
        scaler=torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16),
        steps_per_epoch=steps_per_epoch,
        state_path=workdir / STATE_FILE,
        identity=identity,
        fingerprint=_sha256_json(identity),
        batchnorm_types=batchnorm_types,
        batch_loss=batch_loss,
    )


def _same_run(saved: dict[str, Any], run: _Run) -> bool:
    """Whether a saved state belongs to this run; across a changed process count, the resolved worker count (which
    ``"auto"`` derives from the threads of each process) may differ too."""
    if saved.get("fingerprint") == run.fingerprint:
        return True
    old_settings = saved.get("identity", {}).get("settings", {})
    if saved.get("world_size", 1) == run.world_size or "num_workers" not in old_settings:
        return False
    identity = {**run.identity, "settings": {**run.identity["settings"], "num_workers": old_settings["num_workers"]}}
    return saved.get("fingerprint") == _sha256_json(identity)


def _restore(run: _Run, log_csv: Path | None) -> None:
    """Continue from ``last.pt`` if it holds this run, else discard it and seed a fresh start."""
    state_path, config = run.state_path, run.config
    saved = load_state(state_path) if state_path.exists() else None
    if run.ctx is not None:
        dist.barrier()  # every process has read the state before rank 0 may delete it
    if saved is not None and not _same_run(saved, run):
        logger.warning(
            "training state %s belongs to another run (%s); discarding it and training from scratch",
            state_path,
            _identity_changes(saved, run.identity),
        )
        saved = None
        if run.is_main:
            state_path.unlink()
            if log_csv is not None:
                _write_log(Path(log_csv), [])  # the old run's epochs must not pass for this run's
    if saved is None:
        seed_everything(config.seed + run.rank)
        return
    runtime = [k for k in RESUME_MAY_DIFFER if saved.get("config", {}).get(k) != config.to_dict().get(k)]
    if runtime:
        logger.info("resuming with changed runtime settings %s (results stay valid)", runtime)
    try:
        run.model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise RuntimeError(
            f"training checkpoint {str(state_path)!r} does not fit this model ({exc}); use another workdir "
            "or delete the file"
        ) from exc
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.scaler.load_state_dict(saved["scaler"])
    run.start_epoch = int(saved["epoch"])
    saved_world = int(saved.get("world_size", 1))
    if saved_world == run.world_size:
        set_rng_state(saved["rng_ranks"][run.rank] if run.world_size > 1 else saved["rng"])
    else:
        # The weights, optimiser and data order continue exactly; the random augmentation streams cannot (they
        # were per process), so the rest of the run is a valid run but not the bit-exact continuation.
        logger.warning(
            "resuming %s, written by %d process(es), on %d: weights, optimiser and data order continue, but "
            "the per-process augmentation and BatchNorm statistics differ from an uninterrupted run",
            state_path,
            saved_world,
            run.world_size,
        )
        seed_everything(_epoch_seed(config.seed, run.start_epoch) % 2**32 + run.rank)
    run.history = [dict(row) for row in saved["history"]]
    run.samples_total = int(saved["samples"])
    run.usage_before = {k: float(v) for k, v in saved.get("usage", {}).items()}
    logger.info("resuming %s at epoch %d/%d", state_path, run.start_epoch + 1, config.epochs)
    if log_csv is not None and run.is_main:
        _write_log(Path(log_csv), run.history)


def _wrap_for_training(run: _Run) -> None:
    """DDP (several processes) and ``torch.compile`` around the model; the caller's module is updated in place."""
    model: nn.Module = run.model
    if run.ctx is not None:
        model = DistributedDataParallel(model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    run.train_model = torch.compile(model) if run.config.compile else model  # type: ignore[assignment]


def _all_reduce(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sums over the processes (float64, exact for counts below 2**53)."""
    packed = torch.stack([v.detach().to(torch.float64) for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())


def _progress_bar(loader: DataLoader, **kwargs: Any) -> tqdm:
    """The epoch's progress bar around ``loader`` (the one-process order depends on it: tqdm.auto starts one
    iterator of the loader when it is built, which draws from the loader's generator before the pass)."""
    return tqdm(loader, leave=False, **{"disable": True, **kwargs})


def _train_epoch(run: _Run, train_set: Dataset, epoch: int, progress: bool) -> tuple[float, float, int]:
    """One pass of SGD; returns the mean training loss, the training accuracy and the samples seen (all processes)."""
    config, dev, steps_per_epoch = run.config, run.device, run.steps_per_epoch
    show_bar = progress and run.is_main and sys.stderr.isatty()
    log_progress = progress and run.is_main and not show_bar
    tenth = max(1, math.ceil(steps_per_epoch / 10))
    t0 = last_line = time.perf_counter()
    run.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    seen = 0
    loader = _train_loader(train_set, config, epoch, dev, run.num_workers, run.ctx)
    bar = _progress_bar(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_bar)
    for step, batch in enumerate(bar):
        if step >= steps_per_epoch:
            break
        loss, n, right = run.batch_loss(
            run.train_model,  # type: ignore[arg-type]
            batch,
            dev,
            channels_last=run.channels_last,
            amp_dtype=run.amp_dtype,
            label_smoothing=config.label_smoothing,
            reduction="mean",
        )
        _check_finite(run, loss, epoch, step)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        loss_sum += loss.detach().double() * n
        correct += right
        seen += n
        if show_bar and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
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
    if run.ctx is None:
        return loss_sum.item() / seen, correct.item() / seen, seen
    total_loss, total_correct, total_seen = _all_reduce(loss_sum, correct, torch.tensor(seen, device=dev))
    n = int(total_seen.item())
    return total_loss.item() / n, total_correct.item() / n, n


def _check_finite(run: _Run, loss: torch.Tensor, epoch: int, step: int) -> None:
    """Stop on a NaN or infinite loss (in every process at once, so that none waits for the others forever)."""
    if run.ctx is None:
        loss_value = loss.item()
    else:
        (total,) = _all_reduce(loss)
        loss_value = total.item()
    if not math.isfinite(loss_value):
        config = run.config
        saved_note = f"{run.state_path} still holds epoch {epoch}" if epoch else "no checkpoint was written"
        raise RuntimeError(
            f"training loss is {loss_value} at epoch {epoch + 1}/{config.epochs}, step "
            f"{step + 1}/{run.steps_per_epoch} (lr {run.optimizer.param_groups[0]['lr']:.4g}); this epoch was not "
            f"saved ({saved_note}). Lower the learning rate, add warmup_epochs, or set amp to 'off'"
        )


def _test_metrics(run: _Run, test_set: Dataset | None) -> dict[str, float]:
    """Test accuracy and loss of the model as rank 0 holds it; with several processes, sharded and all-reduced."""
    if test_set is None:
        return {"top1": math.nan, "loss": math.nan}
    batch_size = run.config.eval_batch_size
    settings = {"batch_size": batch_size, "device": run.device, "num_workers": run.num_workers}
    if run.ctx is None:
        return evaluate(run.model, test_set, batch_loss=run.batch_loss, **settings)
    for buffer in run.model.buffers():  # BatchNorm running statistics: rank 0's are the saved ones
        dist.broadcast(buffer, src=0)
    part = shard(test_set, run.rank, run.world_size)
    loss_sum, correct, n = (
        _eval_sums(run.model, part, batch_loss=run.batch_loss, **settings)
        if len(part)  # type: ignore[arg-type]
        else (torch.zeros((), dtype=torch.float64, device=run.device), torch.zeros((), device=run.device), 0)
    )
    total_loss, total_correct, total_n = _all_reduce(loss_sum, correct, torch.tensor(n, device=run.device))
    return {"top1": total_correct.item() / total_n.item(), "loss": total_loss.item() / total_n.item()}


def _checkpoint(run: _Run, epoch: int, usage: Callable[[], dict[str, float] | None] | None) -> None:
    """Rank 0 writes ``last.pt`` atomically after ``epoch`` (0-based); with several processes, every RNG state."""
    rng = get_rng_state()
    now = usage() if usage is not None else None
    state: dict[str, Any] = {"rng": rng, "world_size": run.world_size}
    if run.ctx is not None:
        rng_ranks: list[Any] = [None] * run.world_size
        dist.all_gather_object(rng_ranks, rng)
        state["rng_ranks"] = rng_ranks
        now = reduce_usage(now)
    if run.is_main:
        atomic_torch_save(
            {
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(),
                "epoch": epoch + 1,
                "seconds": sum(r["seconds"] for r in run.history),
                "history": run.history,
                **state,
                "config": run.config.to_dict(),
                "versions": library_versions(),
                "fingerprint": run.fingerprint,
                "identity": run.identity,
                "samples": run.samples_total,
                "usage": _add_usage(run.usage_before, now),
            },
            run.state_path,
        )
    if run.ctx is not None:
        dist.barrier()  # the epoch is on disk before any process starts the next one


def _unwrap(run: _Run) -> None:
    """Give the caller's model back as it came: plain BatchNorm, contiguous memory format, eval mode."""
    for name, cls in run.batchnorm_types.items():
        parent_name, _, child = name.rpartition(".")
        parent = run.model.get_submodule(parent_name)
        sync = getattr(parent, child)
        plain = cls(sync.num_features, sync.eps, sync.momentum, sync.affine, sync.track_running_stats)
        plain.load_state_dict(sync.state_dict())
        setattr(parent, child, plain.to(run.device))
    if run.channels_last:
        run.model.to(memory_format=torch.contiguous_format)
    run.model.eval()


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
    batch_loss: BatchLoss = classification_loss,
) -> FitResult:
    """Train ``model`` in place with SGD, checkpointing every epoch and resuming after an interruption.

    With ``config.devices > 1`` every process of a torchrun job calls this (see :mod:`layerprune.train.distributed`):
    the model trains data-parallel, and only rank 0 writes ``last.pt`` and ``log_csv``.

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
        on_epoch_end: Called as ``on_epoch_end(epoch, row)`` after epoch ``epoch`` (1-based) is checkpointed (in
            every process of a data-parallel run).
        run_inputs: JSON-able description of what else determines the run, e.g. ``{"data": data_cfg,
            "parent": checkpoint_sha256}``; part of the fingerprint.
        usage: Returns cumulative counters of this process so far (e.g. energy from
            :meth:`layerprune.emissions.PhaseRecord.usage`), or ``None``. Each epoch's state stores the counters of
            earlier processes of the run plus this one's (summed over the processes of a data-parallel run, see
            :func:`layerprune.train.distributed.reduce_usage`), and :attr:`FitResult.usage_before` returns the
            earlier ones, so a resumed run can report its whole cost. Work after the last checkpoint of a killed
            process is not counted.

    Returns:
        Final metrics, run metadata and the per-epoch history.

    Raises:
        ValueError: If the training set is empty.
        RuntimeError: If ``last.pt`` cannot be read, the process count differs from ``config.devices``, or the loss
            becomes NaN or infinite; that epoch is not checkpointed, so ``last.pt`` still holds the last good epoch
            (or does not exist) and no broken model is ever saved.
    """
    workdir = Path(workdir)
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise ValueError("the training set is empty; check the data config and subset size")
    run = _prepare(model, train_set, config, workdir, device, run_inputs, batch_loss)
    _restore(run, log_csv)
    _wrap_for_training(run)
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        lr_first = run.optimizer.param_groups[0]["lr"]
        train_loss, train_acc, seen = _train_epoch(run, train_set, epoch, progress)
        test = _test_metrics(run, test_set)
        row = {
            "epoch": epoch + 1,
            "lr": lr_first,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test["loss"],
            "test_acc": test["top1"],
            "seconds": time.perf_counter() - t0,
        }
        run.history.append(row)
        run.samples_total += seen
        _checkpoint(run, epoch, usage)
        if log_csv is not None and run.is_main:
            _write_log(Path(log_csv), run.history)
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
    _unwrap(run)
    last = run.history[-1]
    return FitResult(
        top1=float(last["test_acc"]),
        loss=float(last["test_loss"]),
        train_loss=float(last["train_loss"]),
        train_acc=float(last["train_acc"]),
        epochs=int(last["epoch"]),
        seconds=sum(r["seconds"] for r in run.history),
        seed=config.seed,
        device=str(run.device),
        amp={None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[run.amp_dtype],
        resumed_from_epoch=run.start_epoch,
        versions=library_versions(),
        history=run.history,
        train_samples=run.samples_total,
        usage_before=run.usage_before,
        fingerprint=run.fingerprint,
        devices=run.world_size,
    )
