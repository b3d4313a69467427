"""The experiment config: one YAML file, validated against ``workflow/schemas/config.schema.yaml``.

The workflow validates with Snakemake's ``validate()``; this module applies the same
schema for library and command-line users (and tests), filling the schema's defaults so
that no default is written anywhere else.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

__all__ = ["SCHEMA_PATH", "ConfigError", "load_config", "validate_config"]

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
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(
            f"config schema {SCHEMA_PATH} not found; install layerprune from its repository "
            "(pip install -e .) so the workflow files are beside the package"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict) -> dict:
    """Returns a copy of ``config`` with the schema's defaults filled in.

    Raises:
        ConfigError: listing every violation as ``key.path: problem``.
    """
    config = copy.deepcopy(config)
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {key}: {err.message}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


def load_config(path: str | os.PathLike) -> dict:
    """Reads and validates a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(raw).__name__}")
    return validate_config(raw)
