"""Behaviour of the training loop on scikit-learn digits with a tiny conv net (CPU, seconds)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from fit_digits_helper import (
    CONFIG,
    digits,
    init_model,
    save_digits,
    tiny_net,
    weights_digest,
)
from torch.utils.data import TensorDataset

from layerprune.train import (
    LOG_COLUMNS,
    STATE_FILE,
    TrainConfig,
    evaluate,
    fit,
    lr_at_step,
    measure_latency,
    seed_everything,
)

HELPER = Path(__file__).with_name("fit_digits_helper.py")
REPO_ROOT = Path(__file__).resolve().parents[3]



def _fresh_model(seed: int = 0) -> torch.nn.Module:
    seed_everything(seed)
    return tiny_net()


def test_training_improves_accuracy_and_writes_log(tmp_path: Path) -> None:
    train_set, test_set = digits()
    model = _fresh_model()
    before = evaluate(model, test_set, device="cpu")
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05)
    result = fit(model, train_set, test_set, config, tmp_path / "w", log_csv=tmp_path / "log.csv", device="cpu")
    after = evaluate(model, test_set, device="cpu")

    assert before["n"] == after["n"] == len(test_set)
    assert before["top1"] < 0.3
    assert result.top1 > 0.85 and result.top1 > before["top1"] + 0.5
    assert result.loss < before["loss"]
    # fit's reported metrics are those of the returned, trained model
    assert after["top1"] == pytest.approx(result.top1)
    assert after["loss"] == pytest.approx(result.loss)
    assert (result.epochs, result.seed, result.device, result.amp) == (3, 0, "cpu", "off")
    assert {"python", "torch", "torchvision", "numpy"} <= set(result.versions)
    log = pd.read_csv(tmp_path / "log.csv")
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["epoch"].tolist() == [1, 2, 3]
    assert log["test_acc"].iloc[-1] == pytest.approx(result.top1)
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]


def _metrics(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_same_seed_gives_identical_metrics_and_weights(tmp_path: Path) -> None:
    train_set, test_set = digits()
    runs = []
    for name in ("a", "b"):
        model = _fresh_model(seed=CONFIG.seed)
        result = fit(model, train_set, test_set, CONFIG, tmp_path / name, device="cpu", progress=False)
        runs.append((result, model.state_dict()))
    (ra, wa), (rb, wb) = runs
    assert _metrics(ra.history) == _metrics(rb.history)
    assert (ra.top1, ra.loss) == (rb.top1, rb.loss)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # the seed matters: another training seed (same init) gives another trajectory
    other = TrainConfig.from_dict({**CONFIG.to_dict(), "seed": CONFIG.seed + 1})
    model = _fresh_model(seed=CONFIG.seed)
    rc = fit(model, train_set, test_set, other, tmp_path / "c", device="cpu", progress=False)
    assert _metrics(rc.history) != _metrics(ra.history)


def _run_helper(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, str(HELPER), *args], env=env, capture_output=True, text=True, timeout=120)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    """A training process SIGKILLed after epoch 1, then resumed, ends bit-identical to an uninterrupted run."""
    data = tmp_path / "digits.pt"
    save_digits(data)
    workdir = tmp_path / "resumed"
    killed = _run_helper(str(data), str(workdir), str(tmp_path / "unused.json"), "--kill-after-epoch", "1")
    assert killed.returncode == -9, killed.stderr  # really killed, mid-run
    assert not (tmp_path / "unused.json").exists()
    saved = torch.load(workdir / STATE_FILE, weights_only=True)
    assert saved["epoch"] == 1
    assert len(pd.read_csv(workdir / "log.csv")) == 1

    train_set, test_set = digits()
    reference_model = init_model()
    reference = fit(reference_model, train_set, test_set, CONFIG, tmp_path / "full", device="cpu", progress=False)

    resumed_model = init_model()
    resumed = fit(
        resumed_model, train_set, test_set, CONFIG, workdir, log_csv=workdir / "log.csv", device="cpu", progress=False
    )
    assert (reference.resumed_from_epoch, resumed.resumed_from_epoch) == (0, 1)
    assert resumed.epochs == reference.epochs == CONFIG.epochs
    assert (resumed.top1, resumed.loss, resumed.train_loss, resumed.train_acc) == (
        reference.top1,
        reference.loss,
        reference.train_loss,
        reference.train_acc,
    )
    assert _metrics(resumed.history) == _metrics(reference.history)
    assert weights_digest(resumed_model) == weights_digest(reference_model)
    assert pd.read_csv(workdir / "log.csv")["epoch"].tolist() == [1, 2, 3]


def test_finished_run_is_not_retrained_and_changed_config_is_refused(tmp_path: Path) -> None:
    train_set, test_set = digits()
    model = _fresh_model()
    first = fit(model, train_set, test_set, CONFIG, tmp_path, device="cpu", progress=False)
    digest = weights_digest(model)

    again_model = _fresh_model(seed=123)  # different init: the finished weights must be loaded from last.pt
    again = fit(again_model, train_set, test_set, CONFIG, tmp_path, device="cpu", progress=False)
    assert again.resumed_from_epoch == CONFIG.epochs
    assert _metrics(again.history) == _metrics(first.history)
    assert weights_digest(again_model) == digest

    changed = TrainConfig.from_dict({**CONFIG.to_dict(), "lr": 0.5})
    with pytest.raises(ValueError, match=r"lr: checkpoint 0\.05 vs now 0\.5"):
        fit(_fresh_model(), train_set, test_set, changed, tmp_path, device="cpu", progress=False)

    # a runtime-only setting may change
    runtime = TrainConfig.from_dict({**CONFIG.to_dict(), "eval_batch_size": 64})
    assert fit(_fresh_model(), train_set, test_set, runtime, tmp_path, device="cpu").top1 == first.top1


def test_nan_loss_raises_and_saves_no_model(tmp_path: Path) -> None:
    train_set, test_set = digits()
    x = torch.stack([train_set[i][0] for i in range(len(train_set))])
    y = torch.stack([train_set[i][1] for i in range(len(train_set))])
    x[5] = float("nan")  # one corrupt image poisons the first batch that contains it
    bad = TensorDataset(x, y)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    with pytest.raises(RuntimeError, match=r"training loss is nan at epoch 1/2, step \d+/\d+.*Lower the learning rate"):
        fit(_fresh_model(), bad, test_set, config, tmp_path / "w", log_csv=tmp_path / "w" / "log.csv", device="cpu")
    workdir = tmp_path / "w"
    assert not (workdir / STATE_FILE).exists()
    assert not (workdir / "log.csv").exists()
    assert not workdir.exists() or not any(workdir.iterdir())  # no temp file left behind either


@pytest.mark.parametrize(
    ("overrides", "expected_factors"),
    [
        ({"schedule": "cosine"}, [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]),
        ({"schedule": "step", "milestones": [2, 3], "gamma": 0.1}, [1.0, 1.0, 0.1, 0.01]),
        ({"schedule": "constant"}, [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_schedules_set_expected_lr_per_epoch(
    tmp_path: Path, overrides: dict[str, object], expected_factors: list[float]
) -> None:
    train_set, _ = digits()
    config = TrainConfig.from_dict({"epochs": 4, "batch_size": 64, "lr": 0.2, "max_steps_per_epoch": 2, **overrides})
    fit(_fresh_model(), train_set, None, config, tmp_path / "w", log_csv=tmp_path / "log.csv", device="cpu")
    lrs = pd.read_csv(tmp_path / "log.csv")["lr"].tolist()
    assert lrs == pytest.approx([0.2 * f for f in expected_factors])


def test_lr_at_step_warmup_then_cosine() -> None:
    config = TrainConfig(epochs=5, lr=1.0, warmup_epochs=1, schedule="cosine")
    spe = 10
    warm = [lr_at_step(config, s, spe) for s in range(spe)]
    assert warm == pytest.approx([(s + 1) / spe for s in range(spe)])  # linear, never 0, reaches lr
    assert lr_at_step(config, spe, spe) == pytest.approx(1.0)  # cosine starts at the peak after warm-up
    assert lr_at_step(config, 3 * spe, spe) == pytest.approx(0.5)  # halfway through the 4 cosine epochs
    assert lr_at_step(config, 5 * spe - 1, spe) < 0.01
    step = TrainConfig(epochs=6, lr=1.0, schedule="step", milestones=(2, 4), gamma=0.5)
    assert [lr_at_step(step, e * spe, spe) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert lr_at_step(step, 2 * spe - 1, spe) == 1.0  # a milestone applies from the first step of its epoch


def test_evaluate_restores_mode_and_latency_is_positive() -> None:
    _, test_set = digits()
    model = _fresh_model()
    model.train()
    metrics = evaluate(model, test_set, batch_size=100, device="cpu")
    assert model.training
    assert metrics["n"] == len(test_set) and 0 <= metrics["top1"] <= 1 and metrics["loss"] > 0
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate(model, TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))
    latency = measure_latency(model, (1, 8, 8), batch_size=16, device="cpu", warmup=1, repeats=5)
    assert latency["median_ms"] > 0 and latency["samples_per_s"] > 0
    assert latency["batch_size"] == 16 and latency["repeats"] == 5
    assert model.training
