"""The baseline stage: the unpruned model, trained here or imported from published weights."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from layerprune.config import defaults, validate_section
from layerprune.data import build_dataset, dataset_info
from layerprune.io import write_text
from layerprune.models import get_model, save_checkpoint
from layerprune.models.checkpoint import (
    NotACheckpointError,
    load_checkpoint,
    load_external_weights,
)
from layerprune.train import LOG_COLUMNS, TrainConfig, library_versions, seed_everything
from layerprune.train.distributed import process_group
from layerprune.training import tracked_fit

__all__ = ["make_baseline"]

log = logging.getLogger(__name__)


def make_baseline(
    data_cfg: dict,
    model_cfg: dict,
    train_cfg: dict,
    *,
    out_model: Path,
    workdir: Path,
    log_csv: Path,
    emissions_csv: Path | None = None,
    country_iso_code: str | None = None,
    seed: int | None = None,
    threads: int | None = None,
) -> nn.Module | None:
    """Trains the configured architecture (or imports ``model_cfg["checkpoint"]``) and saves it.

    The saved checkpoint carries the data set's preprocessing, so later stages need no
    config to feed it. Training resumes from ``workdir`` after an interruption; a state left by
    another run (other data, model or train config) is discarded and training starts over.
    The emissions row covers the whole run, summed over the processes of a resumed one (and over the processes
    of a data-parallel one: ``train.devices > 1`` under torchrun, where only rank 0 saves and returns the model).
    Sections passed by hand may omit keys: they take the schema's defaults (``seed=None``: its first seed;
    ``country_iso_code=None``: its ``emissions.country_iso_code``; ``emissions_csv=None``: not tracked).
    """
    if country_iso_code is None:
        country_iso_code = defaults("emissions")["country_iso_code"]
    config = TrainConfig.from_section(train_cfg, seed=seed)
    data, arch = validate_section("data", data_cfg), validate_section("model", model_cfg)
    if arch["family"] == "causal_lm":  # a pretrained language model: imported, never trained here
        from layerprune.lm.model import baseline_language_model

        model, preprocessing = baseline_language_model(model_cfg, data_cfg)
        meta = {"stage": "baseline", "versions": library_versions(), "imported_from": model.source}
        write_text(log_csv, ",".join(LOG_COLUMNS) + "\n")  # nothing trained: an empty log
        save_checkpoint(out_model, model.cpu(), preprocessing=preprocessing, meta=meta)
        return model
    info = dataset_info(data)
    preprocessing = info.preprocessing()
    seed_everything(config.seed)
    model = get_model(
        arch["arch"],
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        blocks_per_stage=arch["blocks_per_stage"],
    )
    source = arch["checkpoint"]
    meta: dict = {"stage": "baseline", "versions": library_versions()}
    if source:
        log.info("importing weights from %s", source)
        try:
            ckpt = load_checkpoint(source)
            model, preprocessing = ckpt.model, {**preprocessing, **ckpt.preprocessing}
        except NotACheckpointError:  # a published state dict for the configured architecture
            load_external_weights(model, source)
        meta["imported_from"] = str(source)
        write_text(log_csv, ",".join(LOG_COLUMNS) + "\n")  # nothing trained: an empty log
    else:
        train_set = build_dataset(data, "train", augment=data["augment"])
        test_set = build_dataset(data, "test")
        with process_group(config.devices, threads) as ctx:
            # The data and model configs join the fingerprint, so a changed config retrains instead of resuming.
            result = tracked_fit(
                model,
                train_set,
                test_set,
                config,
                phase="train",
                workdir=workdir,
                log_csv=log_csv,
                emissions_csv=emissions_csv,
                country_iso_code=country_iso_code,
                run_inputs={"data": data_cfg, "model": model_cfg},
                ctx=ctx,
            )
            if ctx is not None and not ctx.is_main:
                return None
        meta["train"] = result.to_dict()
    save_checkpoint(out_model, model.cpu(), preprocessing=preprocessing, meta=meta)
    return model
