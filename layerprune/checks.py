"""Checks of what a config names, run before any workflow job: the files, the model and the budgets.

The schema checks each value alone; :func:`check_inputs` opens what the values point to and checks them together:
the checkpoint to import (exists, loads, fits the configured architecture, class count and input channels), the data
set's files, the normalisation lengths against the channels, the class count against the data's labels, the budgets
against the model's units and ``pruning.min_units_per_stage``, the seeds and the CodeCarbon country. The workflow
calls it in ``common.smk`` and ``layerprune config FILE`` runs it too, so a config that would fail in a job (after
seconds or after a whole run) fails at once, with every problem listed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from layerprune.config import ConfigError

__all__ = ["check_inputs", "max_removable"]

log = logging.getLogger(__name__)

#: Files torchvision's CIFAR readers open, per data set: (folder under data.root, file names).
_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}
_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def check_inputs(config: dict, *, cache_dir: str | os.PathLike | None = None) -> None:
    """Checks what a schema-validated config (defaults filled in) names, before any job runs.

    Args:
        config: the validated config.
        cache_dir: where to remember a config that passed (the workflow passes ``.snakemake/layerprune``): the
            checks import torch and build the model, seconds that every later ``snakemake`` call would pay again;
            a passed check is redone only when the config or a file it names (its size and time) changes.

    Raises:
        ConfigError: listing every problem found, each as ``key: the value, what is wrong; the fix``.
    """
    stamp = Path(cache_dir) / f"checked-{_fingerprint(config)}" if cache_dir is not None else None
    if stamp is not None and stamp.is_file():
        return
    problems: list[str] = []
    _check_seeds(config, problems)
    _check_country(config, problems)
    # A causal language model's files, weights and tokenizer are checked by config.check_language_model; the
    # data, checkpoint and budget checks below are those of the image families.
    info = _check_data(config["data"], problems) if config["model"]["family"] != "causal_lm" else None
    if info is not None:
        model, input_size = _check_model(config, info, problems)
        if model is not None:
            _check_budgets(config, model, input_size, problems)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
    if stamp is not None:
        from layerprune.io import write_text

        write_text(stamp, json.dumps(config, sort_keys=True) + "\n")


def _fingerprint(config: dict) -> str:
    """The config and the size and modification time of every path it names."""
    data, model = config["data"], config["model"]
    paths = [model["checkpoint"], data["root"]]
    if data["root"]:
        paths += [os.path.join(data["root"], data[k]) for k in ("train_dir", "test_dir")]
    stats = []
    for path in paths:
        try:
            info = os.stat(path) if path else None
        except OSError:
            info = None
        stats.append(None if info is None else [info.st_size, info.st_mtime_ns])
    text = json.dumps([config, stats], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_seeds(config: dict, problems: list[str]) -> None:
    seeds = config["seeds"]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        problems.append(
            f"seeds: {seeds} repeats {repeated}; each seed names its own run folder (seed<N>), so list each seed once"
        )


def _check_country(config: dict, problems: list[str]) -> None:
    section = config["emissions"]
    if not section["enabled"]:
        return
    from layerprune.emissions.tracking import check_country

    try:
        check_country(section["country_iso_code"])
    except ValueError as err:
        problems.append(f"emissions.{err}; or set emissions.enabled: false")


def _check_data(data: dict, problems: list[str]) -> object | None:
    """Problems of the data section; the data set's facts (:class:`DatasetInfo`) when it can be read."""
    from layerprune.data.sources import SOURCES, dataset_info

    source = SOURCES[data["name"]]
    count = len(problems)
    for key in ("mean", "std"):
        values = data[key]
        if values is not None and len(values) != source.in_channels:
            problems.append(
                f"data.{key}: {values} has {len(values)} values, but {data['name']} images have {source.in_channels} "
                f"channel(s); give {source.in_channels} values (one per channel) or null for the data set's statistics"
            )
    labels = _check_files(data, source.default_root, problems)
    if data["num_classes"] is not None and labels is not None and data["num_classes"] < labels:
        problems.append(
            f"data.num_classes: {data['num_classes']}, but {data['name']} has {labels} classes (labels 0..{labels - 1}); "
            f"set it to {labels} or null (the data set's own count)"
        )
    if len(problems) > count:
        return None
    try:
        return dataset_info(data, "test")  # counts an imagefolder's classes in the (smaller) test split
    except (ValueError, FileNotFoundError, OSError) as err:
        problems.append(f"data: {err}")
        return None


def _check_files(data: dict, default_root: str | None, problems: list[str]) -> int | None:
    """Checks that the data set's files are where the config says; returns its class count when known."""
    name = data["name"]
    root = Path(data["root"] or default_root or ".")
    if name == "digits":
        return 10
    if name == "fashion-mnist":
        missing = [f for f in _FASHION_FILES if not (root / f).is_file() and not (root / f"{f}.gz").is_file()]
        if missing:
            problems.append(
                f"data.root: {str(root)!r} lacks the Fashion-MNIST files {[f + '.gz' for f in missing]}; set data.root "
                "to the folder holding the four *-idx*-ubyte(.gz) files (Debian: apt-get install dataset-fashion-mnist)"
            )
        return 10
    if name in _CIFAR_FILES:
        folder, files = _CIFAR_FILES[name]
        missing = [f for f in files if not (root / folder / f).is_file()]
        if missing and not data["download"]:
            problems.append(
                f"data.root: {str(root)!r} lacks {folder}/{missing[0]} (the python version of {name}); set data.root "
                f"to the folder holding {folder}/, or data.download: true to let torchvision fetch it"
            )
        return 10 if name == "cifar10" else 100
    # imagefolder: <root>/<train_dir>/<class>/<image> (or <train_dir>.tar), the same for test_dir
    if data["root"] is None:
        problems.append("data.root: null, but data.name imagefolder needs the folder holding train/ and test/; set it")
        return None
    classes: int | None = None
    for key in ("train_dir", "test_dir"):
        folder = root / data[key]
        if folder.is_dir():
            found = sum(1 for p in folder.iterdir() if p.is_dir())
            if found == 0:
                problems.append(
                    f"data.{key}: {str(folder)!r} has no class sub-folders; the layout is "
                    f"{data[key]}/<class>/<image>, one sub-folder per class"
                )
            classes = found if key == "test_dir" else classes
        elif not (root / f"{data[key]}.tar").is_file():
            problems.append(
                f"data.root: {str(root)!r} has neither {data[key]}/ nor {data[key]}.tar (data.{key}: {data[key]!r}); "
                f"set data.root to the folder holding {data[key]}/<class>/<image>, or data.{key} to its sub-folder"
            )
    return classes


def _check_model(config: dict, info: object, problems: list[str]) -> tuple[object | None, list[int]]:
    """The model the baseline stage would start from (built, or the checkpoint to import), and its input size."""
    from layerprune.models import get_model
    from layerprune.models.checkpoint import NotACheckpointError, load_checkpoint, load_external_weights

    section = config["model"]
    input_size = info.preprocessing()["input_size"]  # type: ignore[attr-defined]
    try:
        model = get_model(
            section["arch"],
            num_classes=info.num_classes,  # type: ignore[attr-defined]
            in_channels=info.in_channels,  # type: ignore[attr-defined]
            blocks_per_stage=section["blocks_per_stage"],
        )
    except ValueError as err:
        problems.append(f"model.blocks_per_stage: {err}")
        return None, input_size
    source = section["checkpoint"]
    if source is None:
        return model, input_size
    fix = (
        f"point model.checkpoint at weights of a {section['arch']} with {info.num_classes} classes and "  # type: ignore[attr-defined]
        f"{info.in_channels} input channel(s), or change model.arch, model.blocks_per_stage or data to match the file"  # type: ignore[attr-defined]
    )
    if not Path(source).is_file():
        problems.append(
            f"model.checkpoint: {source!r} does not exist; give the path of a weight file, or null to train"
        )
        return None, input_size
    try:
        ckpt = load_checkpoint(source)
    except NotACheckpointError:  # a published state dict: it must fit the configured architecture
        try:
            load_external_weights(model, source)
        except ValueError as err:
            problems.append(f"model.checkpoint: {source!r}: {_first_sentence(err)}; {fix}")
            return None, input_size
        return model, input_size
    except (ValueError, OSError) as err:
        problems.append(f"model.checkpoint: {err}")
        return None, input_size
    differ = {k: (ckpt.spec.get(k), v) for k, v in model.spec().items() if ckpt.spec.get(k) != v}
    if differ:
        found = ", ".join(f"{k} {file!r} (config: {want!r})" for k, (file, want) in differ.items())
        problems.append(f"model.checkpoint: {source!r} holds a model with {found}; {fix}")
        return None, input_size
    return ckpt.model, ckpt.preprocessing["input_size"]


def _first_sentence(err: Exception) -> str:
    return str(err).split("; check ")[0]


def max_removable(units: list, min_units_per_stage: int, cost: str = "macs") -> tuple[int, int]:
    """The most units and the most MACs (``cost="params"``: parameters) any criterion can remove: per stage,
    every stage keeping ``min_units_per_stage`` units, the costliest removable units first (greedy is optimal
    per stage).

    Args:
        units: the model's units (:func:`layerprune.models.get_units`).
        min_units_per_stage: units every stage keeps (non-removable ones count).

    Returns:
        (units, MACs) removable at most.
    """
    n_units, macs = 0, 0
    for stage in sorted({u.stage for u in units}):
        members = [u for u in units if u.stage == stage]
        room = max(0, len(members) - min_units_per_stage)
        costliest = sorted((getattr(u, cost) for u in members if u.removable), reverse=True)[:room]
        n_units += len(costliest)
        macs += sum(costliest)
    return n_units, macs


def _check_budgets(config: dict, model: object, input_size: list[int], problems: list[str]) -> None:
    from layerprune.models import get_units
    from layerprune.models.cost import count_macs, count_params
    from layerprune.selection import Budget

    minimum = config["pruning"]["min_units_per_stage"]
    units = get_units(model, input_size)  # type: ignore[arg-type]
    total, _ = count_macs(model, input_size)  # type: ignore[arg-type]
    total_params = count_params(model)  # type: ignore[arg-type]
    most_units, most_macs = max_removable(units, minimum)
    most_params = max_removable(units, minimum, cost="params")[1]
    percent = 100 * most_macs // total  # the largest integer percent that can be met
    params_percent = 100 * most_params // total_params
    stages = ", ".join(str(sum(u.stage == s for u in units)) for s in sorted({u.stage for u in units}))
    where = (
        f"{config['model']['arch']} has {len(units)} units (per stage: {stages}); keeping pruning.min_units_per_stage="
        f"{minimum} in each stage, at most {most_units} units ({100 * most_macs / total:.1f}% of the MACs, "
        f"{100 * most_params / total_params:.1f}% of the parameters) can go"
    )
    infeasible: list[str] = []
    for text in config["budgets"]:
        budget = Budget.parse(text)
        if (
            (budget.kind == "blocks" and budget.value > most_units)
            or (budget.kind == "macs" and budget.value * total > 100 * most_macs)
            or (budget.kind == "params" and budget.value * total_params > 100 * most_params)
        ):
            infeasible.append(text)
    if infeasible:
        fixes = [
            f"blocks{most_units}" if most_units else None,
            f"macs{percent}" if percent >= 1 else None,
            f"params{params_percent}" if params_percent >= 1 else None,
        ]
        hint = " or ".join(f for f in fixes if f) or "none (lower pruning.min_units_per_stage)"
        problems.append(
            f"budgets: {infeasible} cannot be met: {where}; lower them (at most {hint}) or pruning.min_units_per_stage"
        )
    _check_span_budgets(config, units, total, total_params, set(config["budgets"]) - set(infeasible), problems)


def _check_span_budgets(
    config: dict, units: list, total_macs: int, total_params: int, budgets: set[str], problems: list[str]
) -> None:
    """The criteria that remove one block of consecutive units of one stage (angular_span) meet fewer budgets."""
    from layerprune.criteria import get_criterion
    from layerprune.selection import Budget, select_span

    methods = [m for m in config["methods"] if get_criterion(m).selection == "span"]
    if not methods:
        return
    minimum = config["pruning"]["min_units_per_stage"]
    unmet = []
    for text in sorted(budgets):
        try:
            select_span(
                units, lambda n: {u.name: 0.0 for u in units}, Budget.parse(text), total_macs, minimum,
                total_params=total_params,
            )  # fmt: skip
        except ValueError as err:
            unmet.append(f"{text} ({str(err).split(': ', 1)[-1].split('. ')[0]})")
    if unmet:
        problems.append(
            f"budgets: {', '.join(unmet)} cannot be met by {methods}, which removes one block of consecutive "
            "units of one stage; lower those budgets or pruning.min_units_per_stage, or drop the method"
        )
