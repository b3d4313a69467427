"""The robustness section fails at config time, naming the key and what is allowed: attack names and params,
corruption names, and the real data sets it points at."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layerprune.config import ConfigError, load_schema, validate_config
from layerprune.robustness.attack_specs import ATTACKS, attack_params
from layerprune.robustness.corruptions import CORRUPTIONS
from layerprune.robustness.published import OOD_SETS

REPO = Path(__file__).resolve().parents[3]


def _config(**robustness) -> dict:
    return {"experiment": "x", "robustness": robustness}


def test_unknown_attack_name_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"robustness\.attacks\.0\.name: 'bim' is not one of \['fgsm', 'pgd'"):
        validate_config(_config(attacks=[{"name": "bim", "epsilons": [0.1]}]))


def test_unknown_attack_param_names_it_and_the_allowed_ones() -> None:
    cfg = _config(
        attacks=[{"name": "fgsm", "epsilons": [0.1]}, {"name": "pgd", "epsilons": [0.1], "params": {"stepz": 3}}]
    )
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert "robustness.attacks.1" in message and "'pgd'" in message and "'stepz'" in message
    assert str(attack_params("pgd")) in message  # the allowed names
    assert "rel_stepsize" in message


def test_a_param_of_another_attack_is_rejected() -> None:
    # binary_search_steps is a cw param: valid somewhere, not for deepfool
    with pytest.raises(
        ConfigError, match=r"attacks\.0: attack 'deepfool' got unknown params \['binary_search_steps'\]"
    ):
        validate_config(
            _config(attacks=[{"name": "deepfool", "epsilons": [0.1], "params": {"binary_search_steps": 2}}])
        )


def test_unknown_corruption_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"robustness\.corruptions\.1: 'fogg' is not one of \['gaussian_noise'"):
        validate_config(_config(corruptions=["fog", "fogg"]))


def test_schema_names_match_the_registries() -> None:
    section = load_schema()["properties"]["robustness"]["properties"]
    assert section["attacks"]["items"]["properties"]["name"]["enum"] == list(ATTACKS)
    assert section["corruptions"]["items"]["enum"] == list(CORRUPTIONS)
    assert section["ood_sets"]["items"]["properties"]["name"]["enum"] == list(OOD_SETS)


def test_default_config_passes_and_lists_no_ood_set() -> None:
    config = validate_config({"experiment": "x"})
    assert config["robustness"]["ood_sets"] == [] and config["robustness"]["cifar10c_root"] is None


def test_missing_cifar10c_root_names_the_key_the_path_and_the_source(tmp_path) -> None:
    missing = tmp_path / "CIFAR-10-C"
    with pytest.raises(ConfigError, match=r"robustness\.cifar10c_root: folder .*CIFAR-10-C' does not exist.*zenodo"):
        validate_config(_config(cifar10c_root=str(missing)))


def test_cifar10c_root_lacking_a_configured_corruption_names_the_file(tmp_path) -> None:
    np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
    np.save(tmp_path / "fog.npy", np.zeros((5, 32, 32, 3), np.uint8))
    validate_config(_config(cifar10c_root=str(tmp_path), corruptions=["fog"]))  # complete: passes
    with pytest.raises(ConfigError, match=r"robustness\.cifar10c_root: .* lacks \['contrast\.npy'\]"):
        validate_config(_config(cifar10c_root=str(tmp_path), corruptions=["fog", "contrast"]))


def test_missing_ood_set_names_the_path_the_files_and_the_source(tmp_path) -> None:
    cfg = {
        "experiment": "x",
        "data": {"name": "cifar10"},
        "robustness": {"ood_sets": [{"name": "cifar10.1", "path": str(tmp_path / "c101")}]},
    }
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert "robustness.ood_sets cifar10.1" in message and str(tmp_path / "c101") in message
    assert "cifar10.1_v6_data.npy" in message and "https://github.com/modestyachts/CIFAR-10.1" in message


def test_ood_sets_are_checked_by_name_and_data_set(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"ood_sets\.0\.name: 'cifar10.3' is not one of \['cifar10.1', 'cifar10.2'\]"):
        validate_config(_config(ood_sets=[{"name": "cifar10.3", "path": str(tmp_path)}]))
    (tmp_path / "cifar102_test.npz").touch()
    twice = [{"name": "cifar10.2", "path": str(tmp_path)}] * 2
    with pytest.raises(ConfigError, match=r"robustness\.ood_sets: \['cifar10.2'\] listed more than once"):
        validate_config({"experiment": "x", "data": {"name": "cifar10"}, "robustness": {"ood_sets": twice}})
    with pytest.raises(ConfigError, match=r"robustness\.ood_sets: .* cannot evaluate a digits model"):
        validate_config(_config(ood_sets=twice[:1]))  # the default data set is digits
    validate_config({"experiment": "x", "data": {"name": "cifar10"}, "robustness": {"ood_sets": twice[:1]}})


def test_disabled_robustness_skips_the_file_checks_but_not_the_params(tmp_path) -> None:
    validate_config(_config(enabled=False, cifar10c_root=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="stepz"):
        validate_config(_config(enabled=False, attacks=[{"name": "pgd", "epsilons": [0.1], "params": {"stepz": 1}}]))


def test_config_check_imports_no_torch() -> None:
    # the workflow runs it when Snakemake parses the Snakefile (on a cluster: once per job)
    code = (
        "import sys; from layerprune.config import validate_config; validate_config({'experiment': 'x'}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_workflow_calls_the_check_right_after_validate() -> None:
    # common.smk validates through layerprune.config.validate_config, which runs check_robustness right after
    # the schema (one line per bad key instead of Snakemake's validate(), issue 19)
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "config.update(validate_config(config))" in text
    source = (REPO / "layerprune" / "config.py").read_text()
    body = source.split("def validate_config(", 1)[1].split("\ndef ", 1)[0]
    after = body.split('raise ConfigError("invalid config:\\n" + "\\n".join(lines))\n', 1)[1]
    assert after.lstrip().startswith("check_robustness(config)")
