"""Run ``layerprune.train.fit`` on scikit-learn digits in a separate process (used by the resume tests).

Usage: ``python fit_digits_helper.py DATA_PT WORKDIR RESULT_JSON [--kill-after-epoch K]``, where DATA_PT holds the
digits tensors written by :func:`save_digits` (so the child skips the slow scikit-learn import). With
``--kill-after-epoch`` the process SIGKILLs itself right after epoch K has been checkpointed, i.e. it dies like an
OOM-killed or pre-empted job, with no chance to clean up. Otherwise it writes the final metrics and a hash of the
weights to RESULT_JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from layerprune.train import TrainConfig, fit, seed_everything

CONFIG = TrainConfig(epochs=3, batch_size=64, lr=0.05, seed=7, max_steps_per_epoch=8)
# Intra-op threads of the killed child and of the runs it is compared with: float reductions (conv backward,
# BatchNorm statistics) may split and sum in another order under another thread count.
THREADS = 1


class NoisyDigits(Dataset):
    """Digits with random noise drawn from torch's global RNG, like a random augmentation would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.05 * torch.randn_like(self.x[i]), self.y[i]


def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import (
        load_digits,  # slow import: only where the data is first built
    )

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(d.target)


def _split(x: torch.Tensor, y: torch.Tensor) -> tuple[Dataset, Dataset]:
    return NoisyDigits(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


def digits() -> tuple[Dataset, Dataset]:
    """Train (1,400 noisy images) and test (397 images) sets of 8x8 digits, shape (1, 8, 8), values in [0, 1]."""
    return _split(*_digits_tensors())


def save_digits(path: Path) -> None:
    x, y = _digits_tensors()
    torch.save({"x": x, "y": y}, path)


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Flatten(),
        nn.Linear(8 * 64, 10),
    )


def init_model() -> nn.Module:
    """The tiny net, initialised from CONFIG.seed (identically in the test process and in the helper)."""
    seed_everything(CONFIG.seed)
    return tiny_net()


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--kill-after-epoch", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    data = torch.load(args.data, weights_only=True)
    train_set, test_set = _split(data["x"], data["y"])
    model = init_model()

    def maybe_die(epoch: int, row: dict[str, float]) -> None:
        if epoch == args.kill_after_epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    result = fit(
        model,
        train_set,
        test_set,
        CONFIG,
        args.workdir,
        log_csv=args.workdir / "log.csv",
        device="cpu",
        progress=False,
        on_epoch_end=maybe_die,
    )
    out = result.to_dict()
    out["weights_sha256"] = weights_digest(model)
    args.result.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
