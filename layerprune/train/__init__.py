"""Training, evaluation and latency measurement: the one loop used for baselines and for fine-tuning pruned models.

Typical use::

    config = TrainConfig.from_dict(cfg["finetune"])
    seed_everything(config.seed)
    result = fit(model, train_set, test_set, config, workdir, log_csv=workdir / "log.csv")
"""

from __future__ import annotations

from layerprune.train.config import AMP_MODES, SCHEDULES, TrainConfig
from layerprune.train.device import autocast, resolve_amp, seed_everything, select_device, use_channels_last
from layerprune.train.latency import measure_latency
from layerprune.train.loop import LOG_COLUMNS, STATE_FILE, FitResult, evaluate, fit, library_versions
from layerprune.train.schedule import build_scheduler, lr_at_step

__all__ = [
    "AMP_MODES",
    "LOG_COLUMNS",
    "SCHEDULES",
    "STATE_FILE",
    "FitResult",
    "TrainConfig",
    "autocast",
    "build_scheduler",
    "evaluate",
    "fit",
    "library_versions",
    "lr_at_step",
    "measure_latency",
    "resolve_amp",
    "seed_everything",
    "select_device",
    "use_channels_last",
]
