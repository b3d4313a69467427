"""The trainer's CUDA paths on a real GPU (skipped without CUDA; ``pytest -m gpu`` runs them, see bench/gpu_check.sh).

Each test trains the tiny BatchNorm net of ``fit_digits_helper`` for a few steps on the digits and compares the path
under test with the plain fp32 path on the same GPU: mixed precision may change the numbers a little, never the
outcome (test accuracy within 0.1 of fp32's, finite weights).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_fit_helper import run as ddp_run
from fit_digits_helper import CONFIG, digits, init_model, save_digits
from torch import nn

from layerprune.train import FitResult, evaluate, fit
from layerprune.train.loop import _train_loader

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
HELPER = Path(__file__).with_name("ddp_fit_helper.py")


def _fit(tmp_path: Path, **overrides: object) -> tuple[nn.Module, FitResult, list[torch.Tensor]]:
    """Train on the GPU with CONFIG changed by ``overrides``; also returns the first conv's inputs and outputs."""
    train_set, test_set = digits()
    model = init_model()
    seen: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda m, args, out: seen.extend([args[0], out]) if len(seen) < 2 else None)
    config = dataclasses.replace(CONFIG, **overrides)
    result = fit(model, train_set, test_set, config, tmp_path / "work", device="cuda", progress=False)
    return model, result, seen


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    return _fit(tmp_path_factory.mktemp("fp32"), amp="off", channels_last=False)[1]


def _finite(model: nn.Module) -> bool:
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def test_fp16_autocast_with_grad_scaler(tmp_path: Path, fp32: FitResult) -> None:
    model, result, seen = _fit(tmp_path, amp="fp16")
    assert result.amp == "fp16" and seen[1].dtype == torch.float16
    scaler = torch.load(tmp_path / "work" / "last.pt", weights_only=True)["scaler"]
    assert scaler["scale"] > 0  # the GradScaler ran (its state is empty when disabled)
    assert _finite(model) and abs(result.top1 - fp32.top1) < 0.1


def test_bf16_autocast_without_scaler(tmp_path: Path, fp32: FitResult) -> None:
    model, result, seen = _fit(tmp_path, amp="bf16")
    assert result.amp == "bf16" and seen[1].dtype == torch.bfloat16
    assert torch.load(tmp_path / "work" / "last.pt", weights_only=True)["scaler"] == {}
    assert _finite(model) and abs(result.top1 - fp32.top1) < 0.1


def test_auto_amp_picks_bf16_where_supported(tmp_path: Path) -> None:
    _, result, _ = _fit(tmp_path, amp="auto")
    assert result.amp == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


def test_channels_last_inputs_and_weights(tmp_path: Path, fp32: FitResult) -> None:
    model, result, seen = _fit(tmp_path, amp="off", channels_last=True)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in model.parameters())  # handed back in the default format
    assert abs(result.top1 - fp32.top1) < 0.1


def test_compiled_training_updates_the_callers_model(tmp_path: Path, fp32: FitResult) -> None:
    before = {k: v.clone() for k, v in init_model().state_dict().items()}
    model, result, _ = _fit(tmp_path, amp="off", compile=True)
    assert type(model) is nn.Sequential  # the compiled wrapper is not handed back
    assert not torch.equal(model.state_dict()["0.weight"].cpu(), before["0.weight"])
    assert _finite(model) and abs(result.top1 - fp32.top1) < 0.1


def test_pinned_memory_and_gpu_evaluation_match_the_cpu(tmp_path: Path) -> None:
    train_set, test_set = digits()
    assert _train_loader(train_set, CONFIG, 0, torch.device("cuda"), 0).pin_memory
    model = init_model()
    on_cpu = evaluate(model, test_set, device="cpu")
    on_gpu = evaluate(model, test_set, device="cuda")
    assert on_gpu["top1"] == pytest.approx(on_cpu["top1"], abs=2 / len(test_set))
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)


def test_ddp_over_nccl_on_the_gpus_present(tmp_path: Path) -> None:
    """Two GPUs or more: two NCCL processes reach the one-process weights (to 1e-3, cuDNN is not bit-exact).
    One GPU: NCCL cannot put two processes on one device; one torchrun process still joins an NCCL group."""
    data = tmp_path / "digits.pt"
    save_digits(data)
    nproc = min(2, torch.cuda.device_count())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(HELPER),
               str(data), str(tmp_path / "work"), str(tmp_path / "ddp.pt"), "--device", "cuda"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)
    assert ddp["result"]["devices"] == nproc and ddp["result"]["device"].startswith("cuda")
    if nproc < 2:
        return
    ddp_run(data, tmp_path / "one", tmp_path / "one.pt", devices=1, device="cuda")
    one = torch.load(tmp_path / "one.pt", weights_only=False)
    for name, tensor in one["state"].items():
        assert (ddp["state"][name].float() - tensor.float()).abs().max().item() < 1e-3, name
