"""Behaviour of the training loop on scikit-learn digits with a tiny conv net (CPU, seconds)."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from fit_digits_helper import (
    CONFIG,
    THREADS,
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


@pytest.fixture
def helper_threads() -> Iterator[None]:
    """Run this process's training on the helper's thread count (restored afterwards), for bitwise comparisons."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    env["OMP_NUM_THREADS"] = str(THREADS)
    return subprocess.run(
        [sys.executable, str(HELPER), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, helper_threads: None) -> None:
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
    assert resumed.fingerprint == reference.fingerprint
    assert resumed.train_samples == reference.train_samples == CONFIG.epochs * CONFIG.max_steps_per_epoch * 64


def test_finished_run_is_loaded_not_retrained(tmp_path: Path) -> None:
    train_set, test_set = digits()
    first_model = _fresh_model()
    first = fit(first_model, train_set, test_set, CONFIG, tmp_path, device="cpu", progress=False)
    digest = weights_digest(first_model)

    epochs_run: list[int] = []
    again_model = _fresh_model()  # the same initialisation: the same run
    assert weights_digest(again_model) != digest
    again = fit(
        again_model,
        train_set,
        test_set,
        CONFIG,
        tmp_path,
        device="cpu",
        progress=False,
        on_epoch_end=lambda epoch, row: epochs_run.append(epoch),
    )
    assert epochs_run == []  # nothing retrained
    assert again.resumed_from_epoch == CONFIG.epochs
    assert _metrics(again.history) == _metrics(first.history)
    assert (again.seconds, again.train_samples) == (first.seconds, first.train_samples)
    assert again.fingerprint == first.fingerprint
    assert weights_digest(again_model) == digest  # the finished weights were loaded from last.pt

    # a runtime-only setting may change: still the same run
    runtime = TrainConfig.from_dict({**CONFIG.to_dict(), "eval_batch_size": 64})
    reloaded = fit(_fresh_model(), train_set, test_set, runtime, tmp_path, device="cpu")
    assert reloaded.resumed_from_epoch == CONFIG.epochs and reloaded.top1 == first.top1


def _subset(dataset: torch.utils.data.Dataset, n: int) -> torch.utils.data.Dataset:
    return torch.utils.data.Subset(dataset, range(n))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("lr", r"training settings lr 0\.05 -> 0\.5"),
        ("epochs", r"training settings epochs 3 -> 2"),
        ("num_workers", r"training settings num_workers 0 -> 1"),
        ("initial_weights", r"the initial weights changed"),
        ("data", r"the run inputs \(data config, parent checkpoint\) changed"),
    ],
)
def test_state_of_another_run_is_discarded_and_training_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str, reason: str
) -> None:
    """A changed config, data or initial model must not pick up the old run's finished weights (stale resume)."""
    train_set, test_set = digits()
    stale_model = _fresh_model()
    workdir = tmp_path / "w"
    fit(
        stale_model,
        train_set,
        test_set,
        CONFIG,
        workdir,
        log_csv=workdir / "log.csv",
        device="cpu",
        progress=False,
        run_inputs={"data": {"name": "digits", "train_subset": None}},
    )
    stale = weights_digest(stale_model)

    config, seed, inputs, data = CONFIG, 0, {"data": {"name": "digits", "train_subset": None}}, train_set
    if change in ("lr", "epochs", "num_workers"):
        config = TrainConfig.from_dict({**CONFIG.to_dict(), change: {"lr": 0.5, "epochs": 2, "num_workers": 1}[change]})
    elif change == "initial_weights":
        seed = 123  # e.g. another pruned model to fine-tune
    else:
        inputs, data = {"data": {"name": "digits", "train_subset": 1000}}, _subset(train_set, 1000)

    def run(folder: Path) -> tuple[torch.nn.Module, object]:
        model = _fresh_model(seed)
        result = fit(model, data, test_set, config, folder, log_csv=folder / "log.csv", device="cpu",
                     progress=False, run_inputs=inputs)  # fmt: skip
        return model, result

    with caplog.at_level(logging.WARNING, logger="layerprune.train.loop"):
        restarted_model, restarted = run(workdir)
    assert "belongs to another run" in caplog.text and "training from scratch" in caplog.text
    assert re.search(reason, caplog.text), caplog.text
    assert restarted.resumed_from_epoch == 0
    assert weights_digest(restarted_model) != stale
    # a clean restart: bit-identical to the same run in an empty workdir, and the log holds only its epochs
    fresh_model, fresh = run(tmp_path / "fresh")
    assert weights_digest(restarted_model) == weights_digest(fresh_model)
    assert _metrics(restarted.history) == _metrics(fresh.history)
    assert pd.read_csv(workdir / "log.csv")["epoch"].tolist() == list(range(1, config.epochs + 1))
    # ... and its own state now resumes: a third call loads it without training
    again_model, again = run(workdir)
    assert again.resumed_from_epoch == config.epochs and weights_digest(again_model) == weights_digest(fresh_model)


def test_interrupted_run_resumes_and_carries_usage_counters(tmp_path: Path) -> None:
    """An unchanged, interrupted run resumes (bit-identically) and the usage counters of earlier processes add up."""
    train_set, test_set = digits()
    reference_model = _fresh_model()
    reference = fit(reference_model, train_set, test_set, CONFIG, tmp_path / "ref", device="cpu", progress=False)

    def counter(step: float) -> object:
        calls = [0]

        def usage() -> dict[str, float]:  # this process's cumulative counters, as the emissions tracker reports them
            calls[0] += 1
            return {"energy_kwh": step * calls[0], "duration_s": 10.0 * calls[0]}

        return usage

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch: int, row: dict[str, float]) -> None:
        if epoch == 1:
            raise Interrupt

    workdir = tmp_path / "w"
    with pytest.raises(Interrupt):
        fit(_fresh_model(), train_set, test_set, CONFIG, workdir, device="cpu", progress=False,
            usage=counter(1.0), on_epoch_end=stop_after_first)  # fmt: skip
    model = _fresh_model()
    resumed = fit(model, train_set, test_set, CONFIG, workdir, device="cpu", progress=False, usage=counter(0.5))
    assert resumed.resumed_from_epoch == 1
    assert resumed.usage_before == {"energy_kwh": 1.0, "duration_s": 10.0}  # the first process, up to epoch 1
    assert weights_digest(model) == weights_digest(reference_model)
    assert _metrics(resumed.history) == _metrics(reference.history)
    assert reference.usage_before == {}

    # the finished state holds the first process's counters plus the second's (2 epochs: 0.5 then 1.0 kWh)
    reloaded = fit(_fresh_model(), train_set, test_set, CONFIG, workdir, device="cpu", progress=False)
    assert reloaded.resumed_from_epoch == CONFIG.epochs
    assert reloaded.usage_before == pytest.approx({"energy_kwh": 2.0, "duration_s": 30.0})
    assert reloaded.coverage() == {
        "n_samples": CONFIG.epochs * CONFIG.max_steps_per_epoch * 64,
        "epochs": CONFIG.epochs,
        "resumed_from_epoch": CONFIG.epochs,
    }


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


def test_progress_lines_in_non_terminal_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal, tqdm stays off and a line is logged every tenth of an epoch (rate-limited in time)."""
    import io

    from layerprune.train import loop

    train_set, _ = digits()
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, max_steps_per_epoch=20)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a rule's log file, not a terminal

    def step_lines(progress: bool) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="layerprune.train.loop"):
            fit(_fresh_model(), train_set, None, config, tmp_path / f"w{len(list(tmp_path.iterdir()))}",
                device="cpu", progress=progress)  # fmt: skip
        return [r.getMessage() for r in caplog.records if "step" in r.getMessage()]

    # these epochs take well under PROGRESS_MIN_SECONDS: no lines beyond the epoch lines
    assert step_lines(True) == []
    monkeypatch.setattr(loop, "PROGRESS_MIN_SECONDS", 0.0)
    lines = step_lines(True)
    expected = [f"epoch {e}/2: step {s}/20 ({5 * s}%)" for e in (1, 2) for s in range(2, 20, 2)]
    assert [line.split(", train loss")[0] for line in lines] == expected
    assert all(re.search(r"train loss \d+\.\d{4}, \d+ s$", line) for line in lines)
    assert step_lines(False) == []  # progress=False stays quiet
    # a slow stretch gets a line even between tenths
    monkeypatch.setattr(loop, "PROGRESS_MIN_SECONDS", 1e9)
    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 0.0)
    assert len(step_lines(True)) == 2 * 19


def test_bf16_autocast_trains_on_the_cpu(tmp_path: Path) -> None:
    """amp='bf16' runs the forward pass in bfloat16 on the CPU, keeps fp32 weights and still learns."""
    train_set, test_set = digits()
    model = _fresh_model()
    before = weights_digest(model)
    conv_dtypes: set[torch.dtype] = set()
    model[0].register_forward_hook(lambda m, i, out: conv_dtypes.add(out.dtype) if m.training else None)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, amp="bf16", max_steps_per_epoch=10)
    result = fit(model, train_set, test_set, config, tmp_path / "w", device="cpu", progress=False)
    assert result.amp == "bf16"
    assert conv_dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert weights_digest(model) != before
    assert math.isfinite(result.train_loss) and math.isfinite(result.loss)
    assert result.top1 > 0.5  # chance is 0.1
