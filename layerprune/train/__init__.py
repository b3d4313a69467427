"""Training, evaluation and latency measurement: the one loop used for baselines and for fine-tuning pruned models.

Typical use::

    config = TrainConfig.from_dict(cfg["finetune"])
    seed_everything(config.seed)
    result = fit(model, train_set, test_set, config, workdir, log_csv=workdir / "log.csv")
"""

from __future__ import annotations

from layerprune.train.config import AMP_MODES, SCHEDULES, TrainConfig
from layerprune.train.device import (
    MAX_AUTO_WORKERS,
    autocast,
    resolve_amp,
    resolve_num_workers,
    seed_everything,
    select_device,
    use_channels_last,
)
from layerprune.train.latency import measure_latency
from layerprune.train.loop import (
    LOG_COLUMNS,
    RESUME_MAY_DIFFER,
    STATE_FILE,
    BatchLoss,
    FitResult,
    classification_loss,
    evaluate,
    fit,
    library_versions,
    weights_sha256,
)
from layerprune.train.schedule import build_scheduler, lr_at_step

__all__ = [
    "AMP_MODES",
    "LOG_COLUMNS",
    "MAX_AUTO_WORKERS",
    "RESUME_MAY_DIFFER",
    "SCHEDULES",
    "STATE_FILE",
    "BatchLoss",
    "FitResult",
    "TrainConfig",
    "autocast",
    "build_scheduler",
    "classification_loss",
    "evaluate",
    "fit",
    "library_versions",
    "lr_at_step",
    "measure_latency",
    "resolve_amp",
    "resolve_num_workers",
    "seed_everything",
    "select_device",
    "use_channels_last",
    "weights_sha256",
]
