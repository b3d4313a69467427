"""Run ``layerprune.train.fit`` data-parallel under torchrun (used by the DDP tests).

Usage: ``torchrun --standalone --nproc_per_node W ddp_fit_helper.py DATA_PT WORKDIR RESULT_PT [--kill-after-epoch K]``,
with DATA_PT from :func:`fit_digits_helper.save_digits`. Every process joins the gloo process group and trains
:func:`tiny_plain_net` on the digits; rank 0 saves the final state dict to RESULT_PT. With ``--kill-after-epoch``
rank 0 SIGKILLs itself right after epoch K has been checkpointed (torchrun then stops the other process), like a
pre-empted job. Run with ``W = 1`` and no torchrun it is the one-process reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
from pathlib import Path

import torch
from fit_digits_helper import THREADS
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from layerprune.train import TrainConfig, fit, seed_everything
from layerprune.train.distributed import process_group

# 1,400 training images, 6 steps of 64 per epoch: a global batch splits evenly over 1, 2 or 4 processes.
CONFIG = TrainConfig(epochs=3, batch_size=64, lr=0.05, seed=11, max_steps_per_epoch=6, num_workers=0)


def tiny_plain_net() -> nn.Module:
    """A conv net without BatchNorm or dropout: its data-parallel gradient is the one-process gradient."""
    seed_everything(CONFIG.seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))


def digits_sets(path: Path) -> tuple[Dataset, Dataset]:
    data = torch.load(path, weights_only=True)
    x, y = data["x"], data["y"]
    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


def run(
    data: Path,
    workdir: Path,
    result: Path,
    devices: int,
    kill_after_epoch: int | None = None,
    device: str = "cpu",
    **overrides: object,
) -> None:
    torch.set_num_threads(THREADS)
    config = dataclasses.replace(CONFIG, devices=devices, **overrides)
    train_set, test_set = digits_sets(data)
    with process_group(devices) as ctx:
        model = tiny_plain_net()

        def maybe_die(epoch: int, row: dict[str, float]) -> None:
            if epoch == kill_after_epoch and (ctx is None or ctx.is_main):
                os.kill(os.getpid(), signal.SIGKILL)

        out = fit(model, train_set, test_set, config, workdir, log_csv=workdir / "log.csv", device=device,
                  progress=False, on_epoch_end=maybe_die)  # fmt: skip
        if ctx is None or ctx.is_main:
            torch.save({"state": model.state_dict(), "result": out.to_dict()}, result)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--kill-after-epoch", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    args = parser.parse_args()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    run(args.data, args.workdir, args.result, world_size, args.kill_after_epoch, args.device)


if __name__ == "__main__":
    main()
