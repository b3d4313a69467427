"""Hyper-parameters of the one training loop (baseline training and fine-tuning of pruned models).

The workflow config's ``train`` and ``finetune`` sections map one-to-one onto :class:`TrainConfig` (less the
workflow's ``enabled`` switch, see :meth:`TrainConfig.from_section`). The field defaults are read from the schema's
``train`` section (``workflow/schemas/config.schema.yaml``), the one place where defaults are written, so that library
users get the same behaviour as the workflow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from layerprune.config import defaults

__all__ = ["AMP_MODES", "SCHEDULES", "WORKFLOW_KEYS", "TrainConfig"]

SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# Keys of the workflow's train/finetune sections that steer the workflow, not the training (dropped by from_section).
WORKFLOW_KEYS = ("enabled",)


_DEFAULTS = defaults("train")
_FIRST_SEED = defaults("seeds")[0]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`layerprune.train.fit`.

    Attributes:
        epochs: Number of passes over the training set.
        batch_size: Training mini-batch size.
        lr: Peak learning rate of SGD (reached after warm-up).
        momentum: SGD momentum.
        nesterov: Use Nesterov momentum.
        weight_decay: L2 penalty applied by SGD to every parameter.
        schedule: ``"cosine"`` (decay to 0 over the epochs after warm-up), ``"step"`` (multiply by ``gamma`` at
            each milestone epoch) or ``"constant"``. The lr is updated every step, so cosine and warm-up are smooth.
        milestones: Epochs at which the step schedule multiplies the lr by ``gamma``.
        gamma: Multiplicative factor of the step schedule.
        warmup_epochs: Linear warm-up length in epochs (0 disables it); useful for large lr or batch sizes.
        label_smoothing: Label smoothing of the training cross-entropy (the test loss never smooths).
        seed: Seeds python, numpy and torch, and the per-epoch shuffling.
        amp: Mixed precision: ``"auto"`` (bf16 on CUDA where supported, else fp16 with a GradScaler; off on CPU),
            ``"off"``, ``"bf16"`` or ``"fp16"``.
        channels_last: ``"auto"`` (on for models with 2-D convolutions, on CUDA and CPU), ``True`` or ``False``.
        compile: Wrap the model with ``torch.compile`` for training (the caller's model is still updated in place).
        num_workers: DataLoader worker processes: ``"auto"`` (on CUDA, the process's torch threads minus one, in
            [1, 8]; on the CPU 0, because workers would only take cores from the intra-op threads; see
            :func:`layerprune.train.resolve_num_workers`), or an integer (0 loads in the main process). The worker
            count changes the random augmentation stream, so a resumed run must use the same resolved count.
        eval_batch_size: Batch size of the per-epoch test evaluation.
        max_steps_per_epoch: Cap on optimisation steps per epoch (``None``: the whole training set); for quick tests.
        devices: Processes of the data-parallel run (:mod:`layerprune.train.distributed`); ``batch_size`` is the
            global batch and must be divisible by it. 1 is the plain one-process loop.
        sync_batchnorm: With ``devices > 1`` on CUDA, convert BatchNorm to SyncBatchNorm for training.
    """

    epochs: int = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    lr: float = _DEFAULTS["lr"]
    momentum: float = _DEFAULTS["momentum"]
    nesterov: bool = _DEFAULTS["nesterov"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    schedule: str = _DEFAULTS["schedule"]
    milestones: tuple[int, ...] = field(default=tuple(_DEFAULTS["milestones"]))
    gamma: float = _DEFAULTS["gamma"]
    warmup_epochs: int = _DEFAULTS["warmup_epochs"]
    label_smoothing: float = _DEFAULTS["label_smoothing"]
    seed: int = _FIRST_SEED  # the workflow passes each run's seed (config key seeds), not a section key
    amp: str = _DEFAULTS["amp"]
    channels_last: str | bool = _DEFAULTS["channels_last"]
    compile: bool = _DEFAULTS["compile"]
    num_workers: int | str = _DEFAULTS["num_workers"]
    eval_batch_size: int = _DEFAULTS["eval_batch_size"]
    max_steps_per_epoch: int | None = _DEFAULTS["max_steps_per_epoch"]
    devices: int = _DEFAULTS["devices"]
    sync_batchnorm: bool = _DEFAULTS["sync_batchnorm"]

    def __post_init__(self) -> None:
        # Accept a YAML list for the milestones, but store a tuple so the config stays hashable and immutable.
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        self._validate()

    def _validate(self) -> None:
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "devices": self.devices,
        }
        for key, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"train config {key}={value!r} is invalid; expected an integer >= 1")
        if self.max_steps_per_epoch is not None and (
            not isinstance(self.max_steps_per_epoch, int) or self.max_steps_per_epoch < 1
        ):
            raise ValueError(
                f"train config max_steps_per_epoch={self.max_steps_per_epoch!r} is invalid; "
                "expected null (whole epoch) or an integer >= 1"
            )
        if not self.lr > 0:
            raise ValueError(f"train config lr={self.lr!r} is invalid; expected a positive learning rate")
        for key in ("momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, key)
            if not 0 <= value < (1 if key != "weight_decay" else float("inf")):
                raise ValueError(f"train config {key}={value!r} is out of range; expected a value >= 0 (and < 1)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("train config nesterov=true needs momentum > 0 (got momentum=0); set one of them")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train config schedule={self.schedule!r} is unknown; expected one of {list(SCHEDULES)}")
        if self.schedule == "step" and not self.milestones:
            raise ValueError("train config schedule='step' needs milestones (epochs where lr *= gamma), got none")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(
                f"train config milestones={list(self.milestones)} are invalid; expected increasing epochs >= 1"
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"train config gamma={self.gamma!r} is out of range; expected 0 < gamma <= 1")
        if not 0 <= self.warmup_epochs < self.epochs or not isinstance(self.warmup_epochs, int):
            raise ValueError(
                f"train config warmup_epochs={self.warmup_epochs!r} is invalid; expected an integer in "
                f"[0, epochs={self.epochs})"
            )
        if self.amp not in AMP_MODES:
            raise ValueError(f"train config amp={self.amp!r} is unknown; expected one of {list(AMP_MODES)}")
        if self.channels_last not in ("auto", True, False):
            raise ValueError(
                f"train config channels_last={self.channels_last!r} is invalid; expected 'auto', true or false"
            )
        if self.num_workers != "auto" and (
            not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0
        ):
            raise ValueError(
                f"train config num_workers={self.num_workers!r} is invalid; expected 'auto' or an integer >= 0"
            )
        if self.batch_size % self.devices:
            raise ValueError(
                f"train config batch_size={self.batch_size} is not divisible by devices={self.devices}; batch_size is "
                "the global batch, split evenly over the processes: make it a multiple of devices"
            )
        if not isinstance(self.sync_batchnorm, bool):
            raise ValueError(f"train config sync_batchnorm={self.sync_batchnorm!r} is invalid; expected true or false")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"train config seed={self.seed!r} is invalid; expected an integer >= 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        """Build a config from a workflow section (``train`` or ``finetune``), rejecting unknown keys.

        Args:
            d: Mapping of field names to values; missing keys take the defaults. ``None`` means all defaults.

        Returns:
            The validated config.

        Raises:
            ValueError: If a key is not a field (typos must not be silently ignored) or a value is out of range.
        """
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown train config key(s) {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_section(cls, section: dict[str, Any] | None, *, seed: int | None, **overrides: Any) -> TrainConfig:
        """Build the config of one run from a workflow ``train`` or ``finetune`` section.

        Args:
            section: The section as validated by the schema; the workflow-only :data:`WORKFLOW_KEYS` are dropped.
            seed: The run's seed (one of the config's ``seeds``); ``None`` takes the schema's first seed.
            **overrides: Fields that replace the section's (e.g. ``epochs`` for fine-tuning between pruning steps).

        Returns:
            The validated config.
        """
        settings = {k: v for k, v in (section or {}).items() if k not in WORKFLOW_KEYS}
        return cls.from_dict({**settings, **overrides, **({} if seed is None else {"seed": seed})})

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (lists, no tuples) for checkpoints, JSON and YAML."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d
