"""Hyper-parameters of the one training loop (baseline training and fine-tuning of pruned models).

The workflow config's ``train`` and ``finetune`` sections map one-to-one onto :class:`TrainConfig`; the defaults
here mirror the schema's so that library users get the same behaviour as the workflow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AMP_MODES", "SCHEDULES", "TrainConfig"]

SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")


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
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = field(default=())
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    amp: str = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    num_workers: int | str = "auto"
    eval_batch_size: int = 256
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        # Accept a YAML list for the milestones, but store a tuple so the config stays hashable and immutable.
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        self._validate()

    def _validate(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
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

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (lists, no tuples) for checkpoints, JSON and YAML."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d
