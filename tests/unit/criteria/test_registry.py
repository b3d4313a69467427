"""The criterion registry: the one place a criterion is defined, read by the schema, the CLI, the summary and the figures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from layerprune.cli import build_parser
from layerprune.config import defaults, load_schema
from layerprune.criteria import (
    CALIBRATION,
    CANDIDATES,
    INPUTS,
    REPRESENTATIONS,
    SEGMENTS,
    Criterion,
    criteria,
    criterion_names,
    get_criterion,
    register_criterion,
)
from layerprune.criteria import registry as registry_module
from layerprune.figures.style import method_color
from layerprune.summary import method_label


def test_schema_method_enum_equals_the_registry_names() -> None:
    methods = load_schema()["properties"]["methods"]
    default = [c.name for c in criteria() if c.in_default]
    fix = (
        f"list exactly {list(criterion_names())} in the schema's methods enum and {default} (the records with "
        "in_default) in its default, in registration order"
    )
    assert methods["items"]["enum"] == list(criterion_names()), fix
    assert methods["default"] == default, fix


def test_every_record_is_complete() -> None:
    for c in criteria():
        assert c.label and c.reference and c.description, c
        assert set(c.needs) <= set(INPUTS), c
        assert callable(c.score), c
        pruning = defaults("pruning")
        assert set(c.pruning_keys(pruning)) <= set(pruning), c


def test_the_command_summary_and_figures_read_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("prune")
    required = ["prune", "--model", "m.pt", "--budget", "blocks1", "--scores", "s", "--plan", "p", "--out", "o"]
    for name in criterion_names():
        assert parser.parse_args([*required, "--method", name]).method == name
    with pytest.raises(SystemExit):
        parser.parse_args([*required, "--method", "gradnorm"])  # a stale label once, never a criterion
    assert "invalid choice: 'gradnorm'" in capsys.readouterr().err
    assert [method_label(c.name) for c in criteria()] == [c.label for c in criteria()]
    colours = [method_color(c.name) for c in criteria()]
    assert len(set(colours)) == len(colours)  # every registered criterion has its own colour


def test_unknown_and_duplicate_names_are_errors_that_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown criterion 'ckaa'; expected one of \[.*'cka'"):
        get_criterion("ckaa")
    with pytest.raises(ValueError, match="'random' is already registered"):
        register_criterion(get_criterion("random"))
    with pytest.raises(ValueError, match="unknown inputs"):
        Criterion(name="x", label="X", reference="-", score=dict, needs=frozenset({"weights"}))


@pytest.mark.parametrize(
    ("name", "pruning", "inputs", "keys", "finetune"),
    [
        ("random", {}, (), ("min_units_per_stage",), False),
        ("weight_norm", {}, (), ("min_units_per_stage",), False),
        ("consensus", {}, (CANDIDATES,), ("min_units_per_stage",), False),
        ("sglp", {}, (SEGMENTS, CALIBRATION), ("min_units_per_stage", "gradnorm_batches", "allocation"), False),
        ("cka", {}, (REPRESENTATIONS,), ("min_units_per_stage", "iterative"), False),
        ("cka", {"iterative": True}, (CALIBRATION,),
         ("min_units_per_stage", "iterative", "units_per_step", "finetune_epochs_between"), False),
        ("cka", {"iterative": True, "finetune_epochs_between": 2}, (CALIBRATION,),
         ("min_units_per_stage", "iterative", "units_per_step", "finetune_epochs_between"), True),
        # SLEB: always iterative, one unit per step, never fine-tunes, whatever the config says
        ("greedy_loss", {"iterative": True, "finetune_epochs_between": 2}, (CALIBRATION,),
         ("min_units_per_stage",), False),
        ("block_influence", {"iterative": True}, (REPRESENTATIONS,), ("min_units_per_stage",), False),
    ],
)  # fmt: skip
def test_what_the_pruning_stage_reads(name, pruning, inputs, keys, finetune) -> None:
    criterion = get_criterion(name)
    section = {**defaults("pruning"), **pruning}
    assert criterion.stage_inputs(section) == inputs
    assert criterion.pruning_keys(section) == keys
    assert criterion.reads_finetune(section) is finetune


def test_a_new_criterion_is_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a record is all the registry needs (a throwaway one here, removed afterwards)."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    record = register_criterion(
        Criterion(name="unit_index", label="Unit index", reference="-", score=lambda i: {c: 0.0 for c in i.candidates})
    )
    assert get_criterion("unit_index") is record and criterion_names()[-1] == "unit_index"


def test_reading_the_registry_imports_no_torch() -> None:
    """The workflow reads the registry while it builds the job graph: that must stay cheap."""
    code = "import sys, layerprune.criteria; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
