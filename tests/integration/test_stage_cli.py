"""The stage commands end to end, as the workflow runs them: ``python -m layerprune <stage>`` in subprocesses.

extract -> similarity -> segment -> prune (consensus and sglp) -> evaluate / info / finetune, and
corrupt -> robustness on the baseline, on a ResNet-20 trained on the digits (the shared test model).
Checks every output file and its format (docs/architecture.md), that fine-tuning recovers a pruned model's
accuracy, and that bad inputs end with exit code 2 and a one-line error naming the problem.

Independent commands run side by side to overlap their start-up (importing torch costs seconds); the
read-only ``info`` and the argument errors run in-process through the same ``main``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "criteria"))
from digits_resnet import DATA, trained_checkpoint

from layerprune.cli import main as cli_main
from layerprune.models import load_checkpoint
from layerprune.robustness.corrupted_set import test_images as seeded_test_images

pytestmark = pytest.mark.slow

DATA_JSON = json.dumps(DATA)
CONSENSUS_METRICS = ["cka", "procrustes"]
FINETUNE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "seed": 0}
EVALUATION = {"latency_batch_size": 8, "latency_repeats": 2}


def _layerprune(*args: object) -> list[str]:
    return [sys.executable, "-m", "layerprune", *map(str, args)]


def run_together(*commands: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Runs the commands concurrently; returns their completed processes in order."""
    procs = [
        subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in commands
    ]
    done = []
    for cmd, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


def check_ok(*results: subprocess.CompletedProcess) -> None:
    for r in results:
        assert r.returncode == 0, f"{' '.join(r.args[2:])} failed ({r.returncode}):\n{r.stderr[-3000:]}"


class Pipeline:
    """Paths of one run of the stages, laid out as the workflow lays them out."""

    def __init__(self, root: Path, baseline: Path) -> None:
        self.root = root
        self.baseline = baseline
        self.acts = root / "activations" / "representations.npz"
        self.matrix = root / "similarity" / "unit_cka.csv"
        self.heatmap = root / "similarity" / "unit_cka.png"
        self.candidates = root / "similarity" / "candidates.csv"
        self.segments = root / "segments" / "segments.json"
        self.corrupted = root / "robustness" / "corrupted_test.npz"

    def pruned(self, method: str, budget: str) -> Path:
        return self.root / "pruned" / method / budget / "seed0"

    def finetuned(self, method: str, budget: str) -> Path:
        return self.root / "finetuned" / method / budget / "seed0"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Pipeline, dict[str, subprocess.CompletedProcess]]:
    root = tmp_path_factory.mktemp("stage_cli")
    p = Pipeline(root, trained_checkpoint(tmp_path_factory))
    results: dict[str, subprocess.CompletedProcess] = {}

    extract, corrupt, missing = run_together(
        _layerprune("extract", "--model", p.baseline, "--data", DATA_JSON, "--size", 256, "--batch-size", 64,
                    "--out", p.acts, "--threads", 1),
        _layerprune("corrupt", "--data", DATA_JSON, "--corruptions", "gaussian_noise", "contrast",
                    "--severities", 1, 2, "--size", 50, "--out", p.corrupted),
        _layerprune("prune", "--model", root / "no" / "model.pt", "--method", "cka", "--budget", "blocks2",
                    "--scores", root / "x.csv", "--plan", root / "x.json", "--out", root / "x.pt"),
        cwd=root,
    )  # fmt: skip
    check_ok(extract, corrupt)
    results["missing_checkpoint"] = missing

    robustness_dir = root / "robustness" / "baseline"
    similarity, segment, robustness = run_together(
        _layerprune("similarity", "--representations", p.acts, "--metrics", *CONSENSUS_METRICS,
                    "--matrix", p.matrix, "--candidates", p.candidates, "--heatmap", p.heatmap),
        _layerprune("segment", "--representations", p.acts, "--out", p.segments),
        _layerprune("robustness", "--model", p.baseline, "--data", DATA_JSON,
                    "--attacks", json.dumps([{"name": "fgsm", "epsilons": [0, 0.1]}]), "--size", 50,
                    "--corrupted", p.corrupted, "--adversarial", robustness_dir / "adversarial.csv",
                    "--corruptions", robustness_dir / "corruptions.csv", "--threads", 1),
        cwd=root,
    )  # fmt: skip
    check_ok(similarity, segment, robustness)

    def evaluation(folder: Path) -> list[object]:
        """The flags with which prune and finetune evaluate the model they write, as the workflow passes them."""
        return ["--metrics", folder / "metrics.json", "--evaluation", json.dumps(EVALUATION),
                "--inference-emissions", folder / "emissions_inference.csv", "--no-emissions"]  # fmt: skip

    def prune(method: str, budget: str, *extra: object) -> list[str]:
        out = p.pruned(method, budget)
        return _layerprune(
            "prune", "--model", p.baseline, "--method", method, "--budget", budget, "--data", DATA_JSON,
            "--representations", p.acts, "--scores", out / "scores.csv", "--plan", out / "plan.json",
            "--out", out / "model.pt", "--threads", 1, *extra,
        )  # fmt: skip

    check_ok(
        *run_together(
            prune("consensus", "blocks4", "--candidates", p.candidates, "--consensus-metrics", *CONSENSUS_METRICS,
                  "--pruning", json.dumps({"min_units_per_stage": 1}), *evaluation(p.pruned("consensus", "blocks4"))),
            prune("sglp", "blocks2", "--segments", p.segments, "--calibration",
                  json.dumps({"size": 128, "batch_size": 64})),
            cwd=root,
        )
    )  # fmt: skip

    pruned = p.pruned("consensus", "blocks4")
    finetuned = p.finetuned("consensus", "blocks4")
    evaluate, finetune = run_together(
        _layerprune("evaluate", "--model", pruned / "model.pt", "--data", DATA_JSON, "--out", pruned / "evaluate.json",
                    "--latency-batch-size", 8, "--latency-repeats", 2, "--threads", 1),
        _layerprune("finetune", "--model", pruned / "model.pt", "--data", DATA_JSON, "--finetune", json.dumps(FINETUNE),
                    "--out", finetuned / "model.pt", "--workdir", finetuned / "work", "--log-csv", finetuned / "log.csv",
                    "--emissions", finetuned / "emissions_finetune.csv", *evaluation(finetuned), "--threads", 1),
        cwd=root,
    )  # fmt: skip
    check_ok(evaluate, finetune)
    return p, results


def test_extract_writes_the_representations(run):
    p, _ = run
    with np.load(p.acts) as z:
        assert z["intact"].shape == (256, 64)
        assert z["bypassed"].shape == (7, 256, 64)
        assert z["cka_matrix"].shape == (10, 10)


def test_similarity_writes_tidy_tables_and_a_heatmap(run):
    p, _ = run
    matrix = pd.read_csv(p.matrix)
    assert list(matrix.columns) == ["unit_a", "unit_b", "cka"]
    assert len(matrix) == 10 * 10
    square = matrix.pivot(index="unit_a", columns="unit_b", values="cka")
    np.testing.assert_allclose(square.to_numpy(), square.to_numpy().T, atol=1e-9)
    np.testing.assert_allclose(np.diag(square.to_numpy()), 1.0, atol=1e-6)
    candidates = pd.read_csv(p.candidates)
    assert list(candidates.columns) == ["unit", "metric", "distance"]
    assert sorted(set(candidates["metric"])) == sorted(CONSENSUS_METRICS)
    assert len(candidates) == 7 * len(CONSENSUS_METRICS)
    assert np.isfinite(candidates["distance"]).all()
    assert p.heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segment_writes_contiguous_segments_covering_every_unit(run):
    p, _ = run
    seg = json.loads(p.segments.read_text())
    assert {"units", "k", "segments", "segment_units", "losses"} <= set(seg)
    assert len(seg["segment_units"]) == seg["k"] == len(seg["segments"])
    assert [u for s in seg["segment_units"] for u in s] == seg["units"]  # contiguous, in order, complete
    assert seg["segments"][0][0] == 0 and seg["segments"][-1][1] == len(seg["units"])


@pytest.mark.parametrize(
    ("method", "budget", "n_removed"),
    [("consensus", "blocks4", 4), ("sglp", "blocks2", 2)],
)
def test_prune_writes_plan_scores_and_a_smaller_checkpoint(run, method, budget, n_removed):
    p, _ = run
    out = p.pruned(method, budget)
    plan = json.loads((out / "plan.json").read_text())
    assert {
        "method", "budget", "seed", "removed", "n_removed", "removed_macs", "removed_params", "remaining_macs",
        "remaining_params", "macs_reduction", "params_reduction", "blocks_per_stage_before", "blocks_per_stage_after",
    } <= set(plan)  # fmt: skip
    assert (plan["method"], plan["budget"], plan["seed"]) == (method, budget, 0)
    assert plan["n_removed"] == len(plan["removed"]) == n_removed
    assert sum(plan["blocks_per_stage_after"]) == 9 - n_removed
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["unit", "stage", "score", "rank", "removed"]
    assert len(scores) == 7
    assert set(scores.loc[scores["removed"], "unit"]) == set(plan["removed"])
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.spec["blocks_per_stage"] == plan["blocks_per_stage_after"]
    assert ckpt.meta["removed"] == plan["removed"] and ckpt.meta["method"] == method


def test_info_reports_the_reduced_blocks_per_stage(run, capsys):
    """(In-process: ``info`` only reads the checkpoint, and a subprocess would only add torch's start-up.)"""
    p, _ = run
    plan = json.loads((p.pruned("consensus", "blocks4") / "plan.json").read_text())
    assert cli_main(["info", str(p.pruned("consensus", "blocks4") / "model.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["blocks_per_stage"] == plan["blocks_per_stage_after"]
    assert info["macs"] == plan["remaining_macs"]
    assert info["params"] == plan["remaining_params"]
    assert len(info["units"]) == 9 - 4


def test_prune_evaluates_the_pruned_model_as_evaluate_does(run):
    p, _ = run
    out = p.pruned("consensus", "blocks4")
    metrics = json.loads((out / "metrics.json").read_text())  # written by prune
    alone = json.loads((out / "evaluate.json").read_text())  # `layerprune evaluate` on its checkpoint
    timing = {"latency_ms"}
    assert {k: v for k, v in metrics.items() if k not in timing} == {k: v for k, v in alone.items() if k not in timing}
    emissions = (out / "emissions_inference.csv").read_text().splitlines()
    assert len(emissions) == 1 and emissions[0].startswith("phase,")  # tracking off: header only
    keys = {"top1", "loss", "n_test", "params", "macs", "blocks_per_stage", "latency_ms", "latency_batch_size",
            "latency_device", "model"}  # fmt: skip
    keys = {"top1", "loss", "n_test", "params", "macs", "blocks_per_stage", "latency_ms", "latency_batch_size",
            "latency_device", "model"}  # fmt: skip
    assert keys <= set(metrics)
    plan = json.loads((out / "plan.json").read_text())
    assert metrics["blocks_per_stage"] == plan["blocks_per_stage_after"]
    assert metrics["macs"] == plan["remaining_macs"] and metrics["params"] == plan["remaining_params"]
    assert metrics["n_test"] == 360 and 0 <= metrics["top1"] <= 1
    assert metrics["latency_ms"] > 0 and metrics["latency_batch_size"] == 8


def test_finetuning_recovers_the_accuracy_of_a_pruned_model(run):
    p, _ = run
    pruned_top1 = json.loads((p.pruned("consensus", "blocks4") / "metrics.json").read_text())["top1"]
    out = p.finetuned("consensus", "blocks4")
    log = pd.read_csv(out / "log.csv")
    assert list(log.columns) == [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
    ]
    assert log["epoch"].tolist() == [1]
    finetuned_top1 = float(log["test_acc"].iloc[-1])
    # removing 4 of 9 units hurts; one epoch of fine-tuning must visibly recover it
    assert finetuned_top1 > pruned_top1 + 0.1, (pruned_top1, finetuned_top1)
    metrics = json.loads((out / "metrics.json").read_text())  # the fine-tuned model, evaluated by finetune
    assert metrics["top1"] == pytest.approx(finetuned_top1, abs=1 / 360)
    plan = json.loads((p.pruned("consensus", "blocks4") / "plan.json").read_text())
    assert metrics["blocks_per_stage"] == plan["blocks_per_stage_after"]
    assert metrics["n_test"] == 360 and metrics["model"].endswith("model.pt")
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.meta["stage"] == "finetuned"
    assert (
        ckpt.spec["blocks_per_stage"]
        == json.loads((p.pruned("consensus", "blocks4") / "plan.json").read_text())["blocks_per_stage_after"]
    )
    emissions = (out / "emissions_finetune.csv").read_text().splitlines()
    assert len(emissions) == 1 and emissions[0].startswith("phase,")  # tracking off: header only


def test_robustness_tables_of_the_baseline(run):
    p, _ = run
    adversarial = pd.read_csv(p.root / "robustness" / "baseline" / "adversarial.csv")
    assert list(adversarial.columns)[:5] == [
        "attack",
        "norm",
        "epsilon",
        "robust_accuracy",
        "n",
    ]
    assert adversarial["epsilon"].tolist() == [0.0, 0.1]
    assert (adversarial["attack"] == "fgsm").all() and (adversarial["n"] == 50).all()
    # epsilon 0 is the clean accuracy on the same 50 seeded test images
    images, labels = seeded_test_images(DATA, 50, 0)
    ckpt = load_checkpoint(p.baseline)
    pre = ckpt.preprocessing
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre["mean"]).view(1, -1, 1, 1)) / torch.tensor(pre["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        correct = int((ckpt.model(x).argmax(1) == torch.from_numpy(labels)).sum())
    assert adversarial["robust_accuracy"].iloc[0] == pytest.approx(correct / 50, abs=1e-12)
    assert adversarial["robust_accuracy"].iloc[1] <= adversarial["robust_accuracy"].iloc[0]

    corruptions = pd.read_csv(p.root / "robustness" / "baseline" / "corruptions.csv")
    assert list(corruptions.columns) == [
        "corruption",
        "group",
        "severity",
        "accuracy",
        "n",
    ]
    assert list(zip(corruptions["corruption"], corruptions["severity"])) == [
        ("gaussian_noise", 1), ("gaussian_noise", 2), ("contrast", 1), ("contrast", 2),
    ]  # fmt: skip
    assert corruptions.set_index("corruption")["group"].to_dict() == {
        "gaussian_noise": "noise",
        "contrast": "digital",
    }
    assert (corruptions["n"] == 50).all() and corruptions["accuracy"].between(0, 1).all()


def _one_error_line(stderr: str, *fragments: str) -> None:
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    assert not any(line.startswith("Traceback") for line in stderr.splitlines()), stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_checkpoint_exits_2_naming_the_path(run):
    p, results = run
    r = results["missing_checkpoint"]
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr  # exactly one line
    _one_error_line(
        r.stderr,
        "layerprune prune: error:",
        str(p.root / "no" / "model.pt"),
        "does not exist",
    )


def test_bad_method_and_budget_exit_2_naming_the_value(run, tmp_path, capsys):
    p, _ = run
    outputs = [
        "--scores",
        tmp_path / "s.csv",
        "--plan",
        tmp_path / "p.json",
        "--out",
        tmp_path / "m.pt",
    ]
    argv = [
        "prune",
        "--model",
        p.baseline,
        "--method",
        "cka",
        "--budget",
        "blocks2.5",
        *outputs,
    ]
    assert cli_main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0, err
    _one_error_line(err, "layerprune prune: error:", "blocks2.5", "blocks<N>")

    argv = [
        "prune",
        "--model",
        p.baseline,
        "--method",
        "cka_typo",
        "--budget",
        "blocks2",
        *outputs,
    ]
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it before any work
        cli_main([str(a) for a in argv])
    assert exit_info.value.code == 2
    _one_error_line(capsys.readouterr().err, "--method", "'cka_typo'", "consensus")
    assert not any(tmp_path.iterdir()), "a failed command left outputs behind"
