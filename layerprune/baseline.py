"""The baseline stage: the unpruned model, trained here or imported from published weights."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from layerprune.data import build_dataset, dataset_info
from layerprune.emissions import track
from layerprune.io import write_text
from layerprune.models import get_model, save_checkpoint
from layerprune.models.checkpoint import (
    NotACheckpointError,
    load_checkpoint,
    load_external_weights,
)
from layerprune.train import (
    LOG_COLUMNS,
    TrainConfig,
    fit,
    library_versions,
    seed_everything,
)

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
    country_iso_code: str = "USA",
    seed: int = 0,
) -> nn.Module:
    """Trains the configured architecture (or imports ``model_cfg["checkpoint"]``) and saves it.

    The saved checkpoint carries the data set's preprocessing, so later stages need no
    config to feed it. Training resumes from ``workdir`` after an interruption; a state left by
    another run (other data, model or train config) is discarded and training starts over.
    The emissions row covers the whole run, summed over the processes of a resumed one.
    """
    if model_cfg["family"] == "causal_lm":  # a pretrained language model: imported, never trained here
        from layerprune.lm.model import baseline_language_model

        model, preprocessing = baseline_language_model(model_cfg, data_cfg)
        meta = {"stage": "baseline", "versions": library_versions(), "imported_from": model.source}
        write_text(log_csv, ",".join(LOG_COLUMNS) + "\n")  # nothing trained: an empty log
        save_checkpoint(out_model, model.cpu(), preprocessing=preprocessing, meta=meta)
        return model
    info = dataset_info(data_cfg)
    preprocessing = info.preprocessing()
    seed_everything(seed)
    model = get_model(
        model_cfg["arch"],
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        blocks_per_stage=model_cfg.get("blocks_per_stage"),
    )
    source = model_cfg.get("checkpoint")
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
        config = TrainConfig.from_dict({**train_cfg, "seed": seed})
        train_set = build_dataset(data_cfg, "train", augment=data_cfg.get("augment", True))
        test_set = build_dataset(data_cfg, "test")
        with track(
            "train",
            emissions_csv or Path("unused.csv"),
            country_iso_code=country_iso_code,
            enabled=emissions_csv is not None,
        ) as record:
            # The data and model configs join the fingerprint, so a changed config retrains instead of resuming.
            result = fit(
                model,
                train_set,
                test_set,
                config,
                workdir,
                log_csv=log_csv,
                run_inputs={"data": data_cfg, "model": model_cfg},
                usage=record.usage,
            )
            record.earlier = result.usage_before  # energy of the processes before a resume
            record.extra.update(result.coverage())
        meta["train"] = result.to_dict()
    save_checkpoint(out_model, model.cpu(), preprocessing=preprocessing, meta=meta)
    return model
