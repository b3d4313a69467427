"""``layerprune info``, run as a user runs it: a subprocess of ``python -m layerprune``.

Each subprocess pays for importing torch and torchvision (seconds here), so the module starts
all of them at once in one fixture and the tests read their results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerprune.cli import main
from layerprune.cli.info import describe
from layerprune.models import count_macs, count_params, get_model, save_checkpoint
from layerprune.surgery import remove_units

REPO = Path(__file__).resolve().parents[2]
PREPROCESSING = {"dataset": "digits", "mean": [0.3], "std": [0.4], "input_size": [1, 16, 16], "num_classes": 10}
REMOVED = ["layer1.1", "layer2.2", "layer3.1"]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)  # the whole of stdout is one JSON object


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("cli_info")
    pruned = remove_units(get_model("resnet20", num_classes=10, in_channels=1), REMOVED)
    save_checkpoint(tmp / "pruned.pt", pruned, preprocessing=PREPROCESSING, meta={"removed": REMOVED})
    (tmp / "corrupt.pt").write_bytes(b"\x00garbage, not a checkpoint")
    commands = {
        "arch": ["--arch", "resnet56", "--json"],
        "blocks": ["--arch", "resnet56", "--blocks", "2,2,3", "--json"],
        "checkpoint": [str(tmp / "pruned.pt"), "--json"],
        "corrupt": [str(tmp / "corrupt.pt"), "--json"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread each: they run side by side
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-m", "layerprune", "info", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, args in commands.items()
    }
    results = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[key] = Run(proc.returncode, stdout, stderr)
    results["path"] = Run(0, str(tmp / "corrupt.pt"), "")
    return results


def test_info_arch_json_describes_units_and_cost(runs: dict[str, Run]) -> None:
    info = runs["arch"].json()
    assert info["params"] == 853_018
    assert info["macs"] == 125_485_696
    assert info["blocks_per_stage"] == [9, 9, 9]
    assert info["input_size"] == [3, 32, 32]
    units = info["units"]
    assert len(units) == 27
    assert all(set(u) >= {"name", "stage", "removable", "macs"} for u in units)
    assert units[0]["name"] == "layer1.0" and units[-1]["name"] == "layer3.8"
    assert [u["stage"] for u in units] == [0] * 9 + [1] * 9 + [2] * 9
    assert {u["name"] for u in units if not u["removable"]} == {"layer2.0", "layer3.0"}
    # the units plus the stem (3x3 conv 3->16 at 32x32) and the head (64->10) are the whole model
    assert sum(u["macs"] for u in units) + 16 * 32 * 32 * 3 * 9 + 64 * 10 == info["macs"]


def test_info_blocks_changes_the_model(runs: dict[str, Run]) -> None:
    info = runs["blocks"].json()
    assert info["blocks_per_stage"] == [2, 2, 3]
    assert [u["name"] for u in info["units"]] == [
        "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer3.2",
    ]  # fmt: skip
    expected = get_model("resnet20", num_classes=10, blocks_per_stage=[2, 2, 3])
    assert info["params"] == count_params(expected)
    assert info["macs"] == count_macs(expected, [3, 32, 32])[0]
    assert info["macs"] < runs["arch"].json()["macs"]


def test_info_on_a_pruned_checkpoint_reports_the_reduced_model(runs: dict[str, Run]) -> None:
    info = runs["checkpoint"].json()
    model = get_model("resnet20", num_classes=10, in_channels=1)
    full = describe(model, [1, 16, 16])
    removed = {u["name"]: u for u in full["units"] if u["name"] in REMOVED}
    assert info["blocks_per_stage"] == [2, 2, 2]
    assert len(info["units"]) == 6
    assert info["params"] == full["params"] - sum(u["params"] for u in removed.values())
    assert info["macs"] == full["macs"] - sum(u["macs"] for u in removed.values())
    assert info["input_size"] == [1, 16, 16]
    assert info["preprocessing"] == PREPROCESSING
    assert info["meta"] == {"removed": REMOVED}


def test_info_on_a_corrupt_checkpoint_fails_with_exit_2_and_one_line(runs: dict[str, Run]) -> None:
    result = runs["corrupt"]
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("layerprune info: error: ")
    assert runs["path"].stdout in lines[0]
    assert "is not a checkpoint" in lines[0] and "delete" not in lines[0]
    assert "Traceback" not in result.stderr


def test_info_usage_errors_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pt"
    assert main(["info", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"layerprune info: error: checkpoint {missing} does not exist"
    assert main(["info"]) == 2
    assert "give a CHECKPOINT file or --arch NAME" in capsys.readouterr().err
    assert main(["info", str(missing), "--arch", "resnet20"]) == 2
    assert "not both" in capsys.readouterr().err


def test_info_imagenet_arch_defaults_to_1000_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--arch", "resnet50", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 25_557_032  # torchvision's published ResNet-50 count
    assert info["blocks_per_stage"] == [3, 4, 6, 3]


@pytest.mark.parametrize("blocks", ["9,x", "9,0,9", ""])
def test_info_bad_blocks_name_the_flag(blocks: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--arch", "resnet56", "--blocks", blocks, "--json"])
    assert exit_info.value.code == 2
    assert "argument --blocks" in capsys.readouterr().err
