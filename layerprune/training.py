"""The training stages' orchestration, shared by baseline training and fine-tuning (and by any model family).

:func:`tracked_fit` runs :func:`layerprune.train.fit` inside a CodeCarbon phase whose one row covers the whole run:
every process of a data-parallel job (each measures its own GPU, CPU and RAM; rank 0 writes the sum) and every
process of a run resumed after a kill (the trainer carries their totals in ``last.pt``). :func:`finetune_checkpoint`
is the ``finetune`` stage: a pruned checkpoint in, the fine-tuned checkpoint out. The baseline stage
(:mod:`layerprune.baseline`) calls :func:`tracked_fit` the same way.

Data-parallel runs (``devices > 1``): the command relaunches itself through torchrun
(:func:`layerprune.train.distributed.relaunch_under_torchrun`); each process calls the stage function, which joins
the process group, trains its share, and returns ``None`` on every rank but 0, which alone writes artifacts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from layerprune.config import validate_section
from layerprune.data import build_dataset
from layerprune.emissions import track
from layerprune.models import load_checkpoint, save_checkpoint
from layerprune.models.checkpoint import Checkpoint
from layerprune.train import BatchLoss, FitResult, TrainConfig, classification_loss, fit
from layerprune.train.distributed import DistContext, process_group, reduce_usage

__all__ = ["finetune_checkpoint", "gpu_id", "tracked_fit"]

log = logging.getLogger(__name__)


def gpu_id(ctx: DistContext | None) -> list[int | str] | None:
    """The GPU a data-parallel process should measure, as CodeCarbon names it (``CUDA_VISIBLE_DEVICES`` entry)."""
    if ctx is None or ctx.device.type != "cuda":
        return None
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    index = ctx.device.index or 0
    if index < len(visible):
        entry = visible[index]
        return [int(entry) if entry.isdigit() else entry]
    return [index]


def tracked_fit(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset | None,
    config: TrainConfig,
    *,
    phase: str,
    workdir: Path,
    log_csv: Path,
    emissions_csv: Path | None,
    country_iso_code: str,
    run_inputs: dict[str, Any],
    ctx: DistContext | None = None,
    batch_loss: BatchLoss = classification_loss,
) -> FitResult:
    """Train with :func:`layerprune.train.fit` and record the run's energy as one row of ``emissions_csv``.

    Args:
        model: The model to train in place.
        train_set: Training data (its transform holds the augmentation).
        test_set: Evaluated after every epoch, or ``None``.
        config: The run's settings (see :meth:`TrainConfig.from_section`).
        phase: The emissions row's phase (``"train"``, ``"finetune"``...).
        workdir: Folder of the resumable ``last.pt``.
        log_csv: Per-epoch log.
        emissions_csv: Tidy CodeCarbon CSV to append the row to; ``None`` turns tracking off.
        country_iso_code: Grid of the carbon intensity.
        run_inputs: What else determines the run (data and model configs, parent checkpoint): part of the
            fingerprint, so a changed input retrains instead of resuming a stale state.
        ctx: This process's place in a data-parallel job (from :func:`layerprune.train.distributed.process_group`).
        batch_loss: The task's loss (:class:`layerprune.train.BatchLoss`); the default is image classification.

    Returns:
        The trainer's result (the same on every process).
    """
    main = ctx is None or ctx.is_main
    with track(
        phase,
        emissions_csv or Path("unused.csv"),
        country_iso_code=country_iso_code,
        enabled=emissions_csv is not None,
        gpu_ids=gpu_id(ctx),
        combine=reduce_usage if ctx is not None else None,
        write=main,
    ) as record:
        result = fit(
            model,
            train_set,
            test_set,
            config,
            workdir,
            log_csv=log_csv,
            run_inputs=run_inputs,
            usage=record.usage,
            batch_loss=batch_loss,
        )
        record.earlier = result.usage_before  # energy of the processes before a resume
        record.extra.update(result.coverage())
    return result


def finetune_checkpoint(
    model_path: Path,
    data_cfg: dict,
    finetune_cfg: dict,
    *,
    seed: int | None,
    out: Path,
    workdir: Path,
    log_csv: Path,
    emissions_csv: Path | None,
    country_iso_code: str,
    threads: int | None = None,
    shortcut: dict | None = None,
) -> Checkpoint | None:
    """The ``finetune`` stage: fine-tune a pruned checkpoint and save it with its training record.

    Args:
        model_path: The pruned checkpoint.
        data_cfg: The config's ``data`` section (validated; missing keys take the schema's defaults).
        finetune_cfg: The config's ``finetune`` section.
        seed: The run's seed (``None``: the schema's first seed).
        out: Fine-tuned checkpoint to write.
        workdir: Folder of the resumable training state.
        log_csv: Per-epoch log.
        emissions_csv: CodeCarbon CSV (``None``: not tracked).
        country_iso_code: Grid of the carbon intensity.
        threads: CPU threads of the whole job (shared by the processes of a data-parallel run).
        shortcut: The config's ``shortcut`` section: fine-tune on its biased training set instead of the clean one.

    Returns:
        The fine-tuned checkpoint on rank 0 (and in a one-process run), ``None`` on the other ranks.
    """
    ckpt = load_checkpoint(model_path)
    config = TrainConfig.from_section(finetune_cfg, seed=seed)
    data = validate_section("data", data_cfg)
    if shortcut is None:
        train_set = build_dataset(data, "train", augment=data["augment"])
    else:  # the biased training set of the shortcut evaluation
        from layerprune.robustness.shortcut import biased_train_set

        train_set = biased_train_set(data, shortcut)
    test_set = build_dataset(data, "test")
    with process_group(config.devices, threads) as ctx:
        # The fingerprint covers the pruned model's spec and weights; add the data config, so that a new pruned
        # model or data set retrains instead of resuming a stale state.
        result = tracked_fit(
            ckpt.model,
            train_set,
            test_set,
            config,
            phase="finetune",
            workdir=workdir,
            log_csv=log_csv,
            emissions_csv=emissions_csv,
            country_iso_code=country_iso_code,
            run_inputs={"data": data_cfg, **({} if shortcut is None else {"shortcut": shortcut})},
            ctx=ctx,
        )
        if ctx is not None and not ctx.is_main:
            return None
    meta = {**ckpt.meta, "stage": "finetuned", "finetune": result.to_dict(), "parent": str(model_path)}
    if shortcut is not None:
        meta["shortcut"] = shortcut
    save_checkpoint(out, ckpt.model.cpu(), preprocessing=ckpt.preprocessing, meta=meta)
    return ckpt
