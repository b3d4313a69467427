"""The config schema: defaults fill nested sections, typos and bad values fail naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layerprune.config import ConfigError, defaults, load_config, load_schema, validate_config, validate_section

REPO = Path(__file__).resolve().parents[2]


def test_defaults_fill_every_section() -> None:
    config = validate_config({"experiment": "x"})
    assert config["train"]["epochs"] == 30
    assert config["train"]["batch_size"] == 128
    assert config["finetune"]["lr"] == 0.01
    assert config["data"]["name"] == "digits"
    assert config["model"]["arch"] == "resnet20"
    assert config["seeds"] == [0]
    assert config["pruning"]["segments"] == "auto"


def test_defaults_fill_a_partly_given_section_and_input_is_not_modified() -> None:
    given = {"experiment": "x", "train": {"epochs": 3}}
    config = validate_config(given)
    assert config["train"]["epochs"] == 3 and config["train"]["lr"] == 0.1
    assert given == {"experiment": "x", "train": {"epochs": 3}}


def test_default_lists_are_copies() -> None:
    a = validate_config({"experiment": "a"})
    a["methods"].append("extra")
    a["robustness"]["attacks"][0]["epsilons"].append(9.0)
    b = validate_config({"experiment": "b"})
    assert "extra" not in b["methods"]
    assert 9.0 not in b["robustness"]["attacks"][0]["epsilons"]


@pytest.mark.parametrize(
    "config, key, typo",
    [
        ({"experiment": "x", "trian": {}}, "<top level>", "trian"),
        ({"experiment": "x", "train": {"epoch": 3}}, "train", "epoch"),
        ({"experiment": "x", "data": {"name": "digits", "rot": "data"}}, "data", "rot"),
        (
            {"experiment": "x", "robustness": {"attacks": [{"name": "fgsm", "epsilons": [0.1], "eps": 1}]}},
            "robustness.attacks.0",
            "eps",
        ),
    ],
)
def test_unknown_keys_fail_naming_the_key(config: dict, key: str, typo: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: .*'{typo}' was unexpected"):
        validate_config(config)


def test_bad_enum_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"data\.name: 'mnist' is not one of \['digits', 'fashion-mnist'"):
        validate_config({"experiment": "x", "data": {"name": "mnist"}})
    with pytest.raises(ConfigError, match=r"methods\.1: 'sglpp' is not one of \['cka', 'sglp'"):
        validate_config({"experiment": "x", "methods": ["cka", "sglpp"]})


@pytest.mark.parametrize("budget", ["blocks2.5", "macs100", "macs", "2blocks", "blocks-1", "MACS40"])
def test_bad_budget_string_fails(budget: str) -> None:
    with pytest.raises(ConfigError, match=r"budgets\.0: .* does not match"):
        validate_config({"experiment": "x", "budgets": [budget]})


@pytest.mark.parametrize("budget", ["blocks2", "blocks12", "macs5", "macs40"])
def test_good_budget_strings_pass(budget: str) -> None:
    assert validate_config({"experiment": "x", "budgets": [budget]})["budgets"] == [budget]


@pytest.mark.parametrize("name", ["", "../escape", "with space", "-dash-first", "a/b"])
def test_bad_experiment_name_fails(name: str) -> None:
    with pytest.raises(ConfigError, match="experiment: "):
        validate_config({"experiment": name})


def test_missing_experiment_and_every_violation_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"train": {"epochs": 0}, "seeds": []})
    message = str(err.value)
    assert "'experiment' is a required property" in message
    assert "train.epochs: 0 is less than the minimum of 1" in message
    assert "seeds: [] should be non-empty" in message


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- experiment\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_repo_config_validates() -> None:
    config = load_config(REPO / "config.yaml")
    assert config["experiment"]


EXPERIMENT_CONFIGS = sorted((REPO / "configs").glob("*.y*ml"))


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: p.name)
def test_every_experiment_config_validates_and_names_its_own_experiment(path: Path) -> None:
    config = load_config(path)
    assert config["experiment"] != load_config(REPO / "config.yaml")["experiment"], (
        f"{path.name} must name its own experiment, or its results overwrite the quick run's"
    )


def test_an_experiment_configfile_replaces_the_quick_default_in_the_workflow(tmp_path: Path) -> None:
    """With --configfile, the workflow sees that experiment alone: none of config.yaml's quick
    digits settings (image_size 16, 8 epochs) leak into it; --config still overrides keys."""
    experiment = tmp_path / "fashion.yaml"
    experiment.write_text("experiment: fashion-check\ndata: {name: fashion-mnist, root: fashion}\n")
    (tmp_path / "fashion").mkdir()  # the files the check before any job looks for (the dry run reads none)
    for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (tmp_path / "fashion" / f"{name}-ubyte.gz").write_bytes(b"")
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(experiment), "--config", "budgets=[blocks3]", "--dry-run", "--printshellcmds",
        "--cores", "1", "results/fashion-check/baseline/model.pt",
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shell = result.stdout
    assert '\\"name\\": \\"fashion-mnist\\"' in shell or '"name": "fashion-mnist"' in shell, shell[-2000:]
    assert '"image_size": null' in shell and '"epochs": 30' in shell, shell[-2000:]


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ({}, {"name": "text"}, "set model.family: causal_lm"),
        ({"family": "causal_lm", "path": "m"}, {"name": "digits"}, "a causal_lm reads data.name: text"),
        (
            {"family": "causal_lm"},
            {"name": "text", "tokenizer": "t", "train_text": "a", "test_text": "b"},
            "exactly one of model.path",
        ),
        (
            {"family": "causal_lm", "path": "m"},
            {"name": "text", "train_text": "a", "test_text": "b"},
            "data.tokenizer: required",
        ),
        (
            {"family": "causal_lm", "path": "m"},
            {"name": "text", "tokenizer": "t", "test_text": "b"},
            "data.train_text: required",
        ),
        (
            {"family": "causal_lm", "path": "m"},
            {"name": "text", "tokenizer": "t", "train_text": "a", "test_text": "b", "seq_len": 64, "stride": 64},
            "data.stride: 64 must be below data.seq_len",
        ),
    ],
)
def test_language_model_config_errors_name_the_key(model: dict, data: dict, message: str) -> None:
    from layerprune.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=message):
        validate_config({"experiment": "lm", "model": model, "data": data})


def test_defaults_and_sections_come_from_the_schema() -> None:
    schema = load_schema()["properties"]["pruning"]["properties"]
    pruning = defaults("pruning")

    def default(spec: dict) -> object:  # a nested section (pruning.protocol) gets its own keys' defaults
        return {k: default(v) for k, v in spec["properties"].items()} if "properties" in spec else spec["default"]

    assert pruning == {key: default(spec) for key, spec in schema.items()}
    assert pruning["protocol"] == {"cka": "layerprune", "sglp": "layerprune", "consensus": "layerprune"}
    pruning["segments"] = 3  # a copy: the next caller gets the schema's default again
    assert defaults("pruning")["segments"] == "auto"
    assert (
        validate_section("pruning", {"segments": 3})["min_units_per_stage"] == schema["min_units_per_stage"]["default"]
    )
    with pytest.raises(ConfigError, match=r"pruning\.segmnts|'segmnts' was unexpected"):
        validate_section("pruning", {"segmnts": 3})


def test_a_hand_run_command_checks_its_json_sections(capsys: pytest.CaptureFixture[str]) -> None:
    """`layerprune prune --pruning '{...}'` run by hand fails at parsing, naming the key and the bad value."""
    from layerprune.cli import main

    argv = ["prune", "--model", "m.pt", "--method", "random", "--budget", "blocks1", "--scores", "s", "--plan", "p"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", "o", "--pruning", '{"min_units_per_stage": 0}'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--pruning" in err and "pruning.min_units_per_stage: 0 is less than the minimum of 1" in err, err


def test_profile_placeholders_are_refused_naming_each():
    from layerprune.config import check_profile_resources

    check_profile_resources(["mem_mb=4000", "slurm_partition=gpu"], {"finetune_model": {"gpu": 1}})
    with pytest.raises(ConfigError, match="slurm_partition=EDIT_ME_partition") as err:
        check_profile_resources(["mem_mb=4000", "slurm_partition=EDIT_ME_partition"], {})
    assert "sinfo -s" in str(err.value)
    with pytest.raises(ConfigError, match="finetune_model: slurm_partition=EDIT_ME_gpu"):
        check_profile_resources([], {"finetune_model": {"slurm_partition": "EDIT_ME_gpu"}})


def test_shipped_slurm_profile_still_needs_editing_and_a_dry_run_says_so(tmp_path):
    """The profile as shipped stops `snakemake --profile profiles/slurm -n` before any job, naming both values."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config.yaml"), "--profile", str(REPO / "profiles" / "slurm"), "-n"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "slurm_partition=EDIT_ME_partition" in out and "slurm_account=EDIT_ME_account" in out


def test_dropping_bypassed_features_is_refused_with_consensus() -> None:
    lean = {"experiment": "x", "similarity": {"bypassed_features": False}}
    with pytest.raises(ConfigError, match=r"similarity.bypassed_features: false, but methods \['consensus'\]"):
        validate_config({**lean, "methods": ["cka", "consensus"]})
    assert validate_config({**lean, "methods": ["cka", "angular_span"]})["similarity"]["bypassed_features"] is False
    assert validate_config({"experiment": "x"})["similarity"]["bypassed_features"] is True
