"""The experiment config: one YAML file, validated against ``workflow/schemas/config.schema.yaml``.

The workflow validates with Snakemake's ``validate()``; this module applies the same
schema for library and command-line users (and tests), filling the schema's defaults so
that no default is written anywhere else.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

__all__ = [
    "PLACEHOLDER",
    "SCHEMA_PATH",
    "ConfigError",
    "check_bypassed_features",
    "check_language_model",
    "check_profile_resources",
    "check_protocols",
    "check_robustness",
    "check_shortcut",
    "defaults",
    "load_config",
    "validate_config",
    "validate_section",
]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not match the schema; the message names the key and what is allowed."""


def _with_defaults(cls: type) -> type:
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Iterator:
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(Draft202012Validator)


def load_schema() -> dict:
    """The config schema (a new copy each call)."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(
            f"config schema {SCHEMA_PATH} not found; install layerprune from its repository "
            "(pip install -e .) so the workflow files are beside the package"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _errors(validator: Any, instance: Any, prefix: str = "") -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"  {_describe(e, prefix)}" for e in errors]


def _section_schema(section: str) -> dict:
    properties = _schema()["properties"]
    if section not in properties:
        raise ConfigError(f"the config has no section {section!r}; expected one of {sorted(properties)}")
    return properties[section]


def validate_section(section: str, value: Any) -> Any:
    """A copy of one config section (``pruning``, ``data``, ...) validated against its part of the schema,
    with the schema's defaults filled in: what a command run by hand does with a section given as JSON.

    Raises:
        ConfigError: listing every violation as ``section.key: problem``.
    """
    value = copy.deepcopy(value)
    lines = _errors(_Validator(_section_schema(section)), value, section)
    if lines:
        raise ConfigError(f"invalid {section} section:\n" + "\n".join(lines))
    return value


def defaults(section: str) -> Any:
    """The schema's defaults of one config section (a new copy each call): library callers take their
    defaults from here, as the workflow and the commands do, so no default is written twice."""
    schema = _section_schema(section)
    if "default" not in schema:
        raise ConfigError(f"config section {section!r} has no default; it must be given")
    return validate_section(section, schema["default"])


def validate_config(config: dict) -> dict:
    """Returns a copy of ``config`` with the schema's defaults filled in, after the checks of :func:`check_robustness`.

    Raises:
        ConfigError: listing every violation as ``key.path: problem``.
    """
    config = copy.deepcopy(config)
    lines = _errors(_Validator(_schema()), config)
    if lines:
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    check_robustness(config)
    check_language_model(config)
    check_protocols(config)
    check_shortcut(config)
    check_bypassed_features(config)
    return config


def check_bypassed_features(config: dict) -> None:
    """``similarity.bypassed_features: false`` drops what the criteria reading the candidate distance table
    (Consensus) are computed from.

    Raises:
        ConfigError: naming the key, the methods that need the features and the fix.
    """
    from layerprune.criteria import CANDIDATES, get_criterion

    if config["similarity"]["bypassed_features"]:
        return
    needing = [m for m in config["methods"] if CANDIDATES in get_criterion(m).needs]
    if needing:
        raise ConfigError(
            f"invalid config:\n  similarity.bypassed_features: false, but methods {needing} vote over distances "
            "between intact and bypassed features; set it to true or remove those methods"
        )


def check_protocols(config: dict) -> None:
    """What the schema cannot check in ``pruning.protocol``: Pons et al.'s paper protocol fine-tunes after every
    removed unit, so it needs ``pruning.finetune_epochs_between >= 1`` (checked only when ``cka`` is a method).

    Raises:
        ConfigError: naming the keys, the bad value and the fix.
    """
    pruning = config["pruning"]
    if "cka" in config["methods"] and pruning["protocol"]["cka"] == "paper" and pruning["finetune_epochs_between"] < 1:
        raise ConfigError(
            "invalid config:\n  pruning.protocol.cka: paper fine-tunes after every removed unit, but "
            f"pruning.finetune_epochs_between is {pruning['finetune_epochs_between']}; set it to at least 1 "
            "(or use pruning.protocol.cka: layerprune)"
        )


def _describe(err: Any, prefix: str = "") -> str:
    """One line for a schema violation: the key, jsonschema's message and, for a misspelt key, the likely one."""
    key = ".".join([prefix, *map(str, err.absolute_path)]).strip(".") or "<top level>"
    line = f"{key}: {err.message}"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        for name in sorted(set(err.instance) - set(allowed)):
            close = difflib.get_close_matches(name, allowed, n=1)
            line += f"; did you mean {close[0]!r} for {name!r}?" if close else f"; allowed keys: {allowed}"
    elif err.validator == "uniqueItems":
        line += "; list each value once"
    return line


#: Data sets whose models cannot be evaluated on CIFAR-10's natural-shift test sets.
_NOT_CIFAR10 = ("digits", "fashion-mnist", "cifar100")


def check_robustness(config: dict) -> None:
    """What the schema cannot check in the ``robustness`` section of a schema-validated config.

    Each attack's ``params`` against the keyword arguments of that attack (they differ per attack), and, when
    robustness is enabled, that the real data sets it names are there: ``cifar10c_root`` (when corruptions are
    evaluated) and every ``ood_sets`` path. The workflow calls this right after ``validate()``, so a typo fails
    before any job runs instead of inside the robustness job after training. Imports no torch.

    Raises:
        ConfigError: naming the key, the bad value and the allowed values (or the missing files and their source).
    """
    from layerprune.robustness.attack_specs import validate_attack_configs  # torch-free
    from layerprune.robustness.published import check_cifar10c_root, check_ood_set

    section = config["robustness"]
    for i, attack in enumerate(section["attacks"]):
        try:
            validate_attack_configs([attack])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid config:\n  robustness.attacks.{i}: {err}") from None
    names = [entry["name"] for entry in section["ood_sets"]]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"invalid config:\n  robustness.ood_sets: {repeated} listed more than once; list each set once"
        )
    if section["ood_sets"] and config["data"]["name"] in _NOT_CIFAR10:
        raise ConfigError(
            f"invalid config:\n  robustness.ood_sets: {names} are CIFAR-10 test sets (32x32 RGB, its 10 classes) and "
            f"cannot evaluate a {config['data']['name']} model; use data.name cifar10 (or an imagefolder copy of "
            "CIFAR-10) or set ood_sets: []"
        )
    if not section["enabled"]:
        return
    try:
        if section["cifar10c_root"] is not None and section["corruptions"]:
            check_cifar10c_root(section["cifar10c_root"], section["corruptions"])
        for entry in section["ood_sets"]:
            check_ood_set(entry["name"], entry["path"])
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"invalid config:\n  {err}") from None


#: Marks a profile value the user must replace (profiles/slurm/config.yaml ships with ``EDIT_ME_...``).
PLACEHOLDER = "EDIT_ME"


def check_profile_resources(default_resources: Sequence[str], set_resources: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuses resources that still hold a profile's placeholder values, before anything is submitted (a dry run
    included): a SLURM job with partition ``EDIT_ME_partition`` would be rejected by sbatch only after training
    was queued, and ``-n`` would pass silently.

    Args:
        default_resources: the profile's ``default-resources`` as Snakemake parsed them (``"name=value"``).
        set_resources: the profile's ``set-resources``, rule -> resource -> value.

    Raises:
        ConfigError: naming every placeholder and how to fill it in.
    """
    found = [str(arg) for arg in default_resources if PLACEHOLDER in str(arg)]
    for rule, resources in set_resources.items():
        for name, value in resources.items():
            try:
                shown = getattr(value, "value", value)
            except ValueError:  # Snakemake evaluates a computed resource only inside a job: not a literal
                continue
            if PLACEHOLDER in str(shown):
                found.append(f"{rule}: {name}={shown}")
    if found:
        raise ConfigError(
            f"the profile still has placeholder values: {', '.join(found)}. Edit them in its config.yaml "
            "(profiles/slurm/config.yaml: default-resources slurm_partition and slurm_account; `sinfo -s` lists "
            "partitions, `sacctmgr -n show assoc user=$USER format=account` your accounts; clusters without "
            "accounts: delete slurm_account and set slurm-no-account: true), then run again"
        )


#: Grey-scale (one-channel) data sets: the shortcut's colour cue needs RGB.
_GREY = ("digits", "fashion-mnist")


def check_shortcut(config: dict) -> None:
    """What the schema cannot check in the ``shortcut`` section of a schema-validated config: a colour cue on
    grey-scale data, and a box larger than the configured image size. Imports no torch.

    Raises:
        ConfigError: naming the key, the bad value and the fix.
    """
    section, data = config["shortcut"], config["data"]
    if not section["enabled"]:
        return
    if section["cue"] == "colour" and data["name"] in _GREY:
        raise ConfigError(
            f"invalid config:\n  shortcut.cue: colour needs RGB images, but {data['name']} is grey-scale; "
            "use cue: pattern (or auto)"
        )
    size = data.get("image_size")
    if size is not None and section["size"] > size:
        raise ConfigError(
            f"invalid config:\n  shortcut.size: {section['size']} does not fit data.image_size {size}; "
            f"choose a size <= {size}"
        )


def check_language_model(config: dict) -> None:
    """What the schema cannot check about a causal language model (``model.family: causal_lm``):
    text data, one source of weights, a tokenizer, the text files named and a stride below
    ``data.seq_len``; and that text data go with that family only. Whether the files exist is
    checked by the job that reads them (as for image data), so a config for data you have not
    fetched yet still validates. Imports no torch.

    Raises:
        ConfigError: naming the key, the bad value and the fix.
    """
    model, data = config["model"], config["data"]
    problems = []
    if model["family"] != "causal_lm":
        if data["name"] == "text":
            problems.append("data.name: text is data for a causal language model; set model.family: causal_lm")
        if problems:
            raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
        return
    if data["name"] != "text":
        problems.append(f"data.name: {data['name']!r} is image data; a causal_lm reads data.name: text")
    if config["shortcut"]["enabled"]:
        problems.append("shortcut.enabled: the shortcut cue is painted on images; set it false for a causal_lm")
    if (model["path"] is None) == (model["llama2c_checkpoint"] is None):
        problems.append("model: give exactly one of model.path (a model directory) and model.llama2c_checkpoint")
    if data["tokenizer"] is None:
        problems.append(
            "data.tokenizer: required for a causal_lm: the model directory, or for a llama2.c import its "
            "sentencepiece .model file"
        )
    if data["stride"] >= data["seq_len"]:
        problems.append(f"data.stride: {data['stride']} must be below data.seq_len ({data['seq_len']})")
    for key in ("train_text", "test_text"):
        if data[key] is None:
            problems.append(f"data.{key}: required for a causal_lm (a UTF-8 text file)")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def load_config(path: str | os.PathLike) -> dict:
    """Reads and validates a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}); fix the file at that line") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(raw).__name__}")
    return validate_config(raw)
