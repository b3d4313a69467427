"""The loop is task-agnostic: a model family passes its own batch loss (here a toy next-token model)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from layerprune.train import TrainConfig, autocast, evaluate, fit, seed_everything

VOCAB, LENGTH = 7, 12


class Sequences(Dataset):
    """Token sequences where each next token is (token + 1) mod VOCAB: learnable from the current token alone."""

    def __init__(self, n: int, seed: int) -> None:
        starts = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(seed))
        self.tokens = (starts + torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i]


def next_token_loss(
    model: nn.Module,
    batch: torch.Tensor,
    device: torch.device,
    *,
    channels_last: bool,
    amp_dtype: torch.dtype | None,
    label_smoothing: float,
    reduction: str,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    tokens = batch.to(device)
    with autocast(device, amp_dtype):
        logits = model(tokens[:, :-1])  # (n, LENGTH - 1, VOCAB)
    logits, targets = logits.float().reshape(-1, VOCAB), tokens[:, 1:].reshape(-1)
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction=reduction)
    return loss, targets.numel(), (logits.detach().argmax(dim=1) == targets).sum()


def test_fit_and_evaluate_take_the_tasks_batch_loss(tmp_path: Path) -> None:
    seed_everything(0)
    model = nn.Sequential(nn.Embedding(VOCAB, 16), nn.Linear(16, VOCAB))
    train_set, test_set = Sequences(256, seed=1), Sequences(64, seed=2)
    before = evaluate(model, test_set, device="cpu", batch_loss=next_token_loss)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.5, channels_last=False)
    result = fit(model, train_set, test_set, config, tmp_path, device="cpu", progress=False, batch_loss=next_token_loss)
    after = evaluate(model, test_set, device="cpu", batch_loss=next_token_loss)
    assert before["n"] == after["n"] == 64 * (LENGTH - 1)  # items are the predicted tokens
    assert result.train_samples == 3 * 256 * (LENGTH - 1)
    assert after["loss"] < 0.5 * before["loss"] and after["top1"] > 0.9
    assert result.top1 == after["top1"] and result.loss == after["loss"]
