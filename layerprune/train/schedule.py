"""Learning-rate schedules, evaluated per optimisation step.

Written as one closed-form function of the step (instead of chaining torch's ``LinearLR``/``CosineAnnealingLR``/
``MultiStepLR`` with ``SequentialLR``) so that the lr of any step can be computed, logged and tested without
replaying the optimiser, and so that a resumed run lands on exactly the same value.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from layerprune.train.config import TrainConfig

__all__ = ["build_scheduler", "lr_at_step"]


def lr_at_step(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate used by optimisation step ``step`` (0-based, counted over the whole run).

    Args:
        config: Provides ``lr``, ``epochs``, ``schedule``, ``milestones``, ``gamma`` and ``warmup_epochs``.
        step: Global step index; epoch ``k`` covers steps ``[k * steps_per_epoch, (k + 1) * steps_per_epoch)``.
        steps_per_epoch: Optimisation steps in one epoch.

    Returns:
        The learning rate. Warm-up rises linearly to ``lr`` over ``warmup_epochs`` (its first step already uses
        ``lr / warmup_steps``, never 0). Cosine then decays as ``lr * (1 + cos(pi * p)) / 2`` with ``p`` the
        fraction of the post-warm-up epochs done; step multiplies by ``gamma`` once per milestone reached
        (milestone ``m`` applies from the first step of epoch ``m``, as in torch's ``MultiStepLR``).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} is invalid; expected >= 1 (is the training set empty?)")
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    epoch_progress = step / steps_per_epoch
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        passed = sum(1 for m in config.milestones if step >= m * steps_per_epoch)
        return config.lr * config.gamma**passed
    if config.schedule == "cosine":
        fraction = (epoch_progress - config.warmup_epochs) / (config.epochs - config.warmup_epochs)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))
    raise ValueError(f"schedule={config.schedule!r} is unknown; expected 'cosine', 'step' or 'constant'")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A ``LambdaLR`` that follows :func:`lr_at_step`; call ``scheduler.step()`` after every optimiser step.

    The optimiser's base lr must be ``config.lr``.
    """
    return LambdaLR(optimizer, lambda step: lr_at_step(config, step, steps_per_epoch) / config.lr)
