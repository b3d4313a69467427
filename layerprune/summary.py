"""One tidy table of every result of an experiment, and the papers' headline table.

The workflow leaves one small file per (stage, method, budget, seed): ``metrics.json`` of the pruned and the
fine-tuned model, the pruning ``plan.json``, CodeCarbon emissions CSVs and the robustness CSVs. This module joins
them into ``summary.csv``: one row per (method, budget, seed, stage) with stage in {pruned, finetuned}, plus one
baseline row (method ``baseline``, budget ``none``, stage ``baseline``). Every reduction and accuracy change is
computed against that baseline here, once, so the tables and the figures never recompute them.

Conventions: ``top1`` and accuracies are fractions in [0, 1] (as ``metrics.json`` stores them); ``top1_delta`` is in
accuracy points (100 x the fraction difference); ``*_reduction`` are fractions of the baseline's measured params or
MACs. A missing optional input (a disabled stage) or a header-only emissions CSV (tracking off) gives NaN, never 0.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from layerprune.criteria import criteria
from layerprune.io import read_json, read_table, write_csv, write_text
from layerprune.robustness.shortcut_table import SHORTCUT_COLUMNS, shortcut_columns
from layerprune.selection import Budget

__all__ = [
    "STAGES",
    "SUMMARY_COLUMNS",
    "RunFiles",
    "budget_sort_key",
    "build_summary",
    "collect_runs",
    "final_rows",
    "main_table",
    "main_table_html",
    "main_table_latex",
    "main_table_markdown",
    "main_table_notes",
    "method_label",
    "model_label",
    "read_emissions",
    "read_summary",
    "run_key",
    "write_main_tables",
    "write_summary",
]

logger = logging.getLogger(__name__)

#: Stages of a row of the summary, in pipeline order.
STAGES = ("baseline", "pruned", "finetuned")

#: Columns of ``summary.csv``, in order.
SUMMARY_COLUMNS = (
    "method",
    "budget",
    "seed",
    "stage",
    "blocks_removed",
    "removed_units",
    "blocks_per_stage",
    "params",
    "params_reduction",
    "macs",
    "macs_reduction",
    "top1",
    "top1_delta",
    "loss",
    "n_test",
    "perplexity",
    "ood_perplexity",
    "latency_ms",
    "latency_q1_ms",
    "latency_q3_ms",
    "latency_threads",
    "latency_batch_size",
    "latency_passes",
    "train_energy_kwh",
    "train_co2_kg",
    "finetune_energy_kwh",
    "finetune_co2_kg",
    "inference_energy_kwh",
    "inference_co2_kg",
    "inference_j_per_image",
    "inference_q1_j_per_image",
    "inference_q3_j_per_image",
    "energy_window_s",
    "energy_windows",
    "energy_source",
    "adv_accuracy_mean",
    "corruption_accuracy_mean",
    "mce",
    "mce_corruptions",
    *SHORTCUT_COLUMNS,
)


_SEED_RE = re.compile(r"seed(0|[1-9][0-9]*)")
_METRICS_KEYS = ("top1", "params", "macs", "blocks_per_stage")
_EMISSIONS_COLUMNS = ("energy_kwh", "co2_kg")
_ADVERSARIAL_COLUMNS = ("attack", "epsilon", "robust_accuracy")
_CORRUPTION_COLUMNS = ("corruption", "group", "severity", "accuracy")


def method_label(method: str) -> str:
    """The display name of a method in tables and legends: its criterion record's label (``"cka"`` -> ``"CKA"``),
    ``"Baseline"``, or the name itself for a method the registry does not know."""
    if method == "baseline":
        return "Baseline"
    labels = {c.name: c.label for c in criteria()}
    return labels.get(method, method)


def budget_sort_key(budget: str) -> tuple[int, int]:
    """Orders budgets by kind (units, then MAC percent, then parameter percent) and value; ``"none"`` (the
    baseline) first."""
    if budget == "none":
        return (-1, 0)
    parsed = Budget.parse(budget)
    return (("blocks", "macs", "params").index(parsed.kind), parsed.value)


def run_key(path: str | Path) -> tuple[str, str, int]:
    """(method, budget, seed) of a per-run artifact, from the workflow layout ``.../<method>/<budget>/seed<N>/<file>``.

    Raises:
        ValueError: if the path does not follow that layout (naming the path and the expected form).
    """
    path = Path(path)
    parts = path.parent.parts
    if len(parts) < 3 or _SEED_RE.fullmatch(parts[-1]) is None:
        raise ValueError(
            f"cannot tell the run of {path}: expected .../<method>/<budget>/seed<N>/{path.name} "
            "(the layout of results/<experiment>/<stage>/...); pass files from the workflow's result tree"
        )
    method, budget, seed = parts[-3], parts[-2], int(parts[-1][4:])
    Budget.parse(budget)  # raises naming the bad budget
    return method, budget, seed


@dataclass(frozen=True)
class RunFiles:
    """The result files of one (method, budget, seed); every field but the first five may be None (stage disabled).

    Attributes:
        method, budget, seed: the run.
        pruned_metrics: ``pruned/.../metrics.json`` (the pruned model before fine-tuning).
        plan: ``pruned/.../plan.json`` (:func:`layerprune.selection.plan_summary`).
        finetuned_metrics: ``finetuned/.../metrics.json``.
        finetune_emissions: ``finetuned/.../emissions_finetune.csv``.
        inference_emissions: ``finetuned/.../emissions_inference.csv`` (the fine-tuned model's evaluation).
        pruned_inference_emissions: emissions of evaluating the pruned model, where a stage writes one.
        adversarial, corruptions: ``robustness/<method>/<budget>/seed<N>/{adversarial,corruptions}.csv``; they
            describe the last model of the run (fine-tuned when fine-tuning ran, else pruned) and go to that row.
        shortcut: ``robustness/<method>/<budget>/seed<N>/shortcut.csv`` (that last model after fine-tuning on
            the biased set), to the same row.
    """

    method: str
    budget: str
    seed: int
    pruned_metrics: Path
    plan: Path
    finetuned_metrics: Path | None = None
    finetune_emissions: Path | None = None
    inference_emissions: Path | None = None
    pruned_inference_emissions: Path | None = None
    adversarial: Path | None = None
    corruptions: Path | None = None
    shortcut: Path | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RunFiles:
        """Builds from a dict with the field names as keys (paths as str or Path).

        Raises:
            ValueError: naming an unknown or missing key.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown run file keys {unknown}; expected some of {names}")
        missing = [n for n in names[:5] if data.get(n) is None]
        if missing:
            raise ValueError(
                f"run {dict(data)} lacks {missing}; every run needs method, budget, seed, pruned_metrics and plan"
            )
        kwargs: dict[str, Any] = {}
        for name in names:
            value = data.get(name)
            if name in ("method", "budget"):
                kwargs[name] = str(value)
            elif name == "seed":
                kwargs[name] = int(value)  # type: ignore[arg-type]
            else:
                kwargs[name] = None if value is None else Path(value)
        return cls(**kwargs)


def collect_runs(
    pruned_metrics: Sequence[str | Path],
    plans: Sequence[str | Path],
    finetuned_metrics: Sequence[str | Path] = (),
    finetune_emissions: Sequence[str | Path] = (),
    inference_emissions: Sequence[str | Path] = (),
    adversarial: Sequence[str | Path] = (),
    corruptions: Sequence[str | Path] = (),
    pruned_inference_emissions: Sequence[str | Path] = (),
    shortcut: Sequence[str | Path] = (),
) -> list[RunFiles]:
    """Groups flat file lists (as Snakemake passes them) into one :class:`RunFiles` per run, by :func:`run_key`.

    Every file is keyed by its path (``.../<method>/<budget>/seed<N>/<file>``), so the lists need not be in the same
    order nor the same length; each run needs its pruned metrics and plan.

    Raises:
        ValueError: a path off the layout, two files of one kind for the same run, or a file whose run has no
            pruned metrics or no plan.
    """
    kinds = {
        "pruned_metrics": pruned_metrics,
        "plan": plans,
        "finetuned_metrics": finetuned_metrics,
        "finetune_emissions": finetune_emissions,
        "inference_emissions": inference_emissions,
        "adversarial": adversarial,
        "corruptions": corruptions,
        "pruned_inference_emissions": pruned_inference_emissions,
        "shortcut": shortcut,
    }
    by_run: dict[tuple[str, str, int], dict[str, Any]] = {}
    for kind, paths in kinds.items():
        for path in paths:
            key = run_key(path)
            entry = by_run.setdefault(key, {"method": key[0], "budget": key[1], "seed": key[2]})
            if kind in entry:
                raise ValueError(f"two {kind} files for run {key}: {entry[kind]} and {path}; pass each once")
            entry[kind] = Path(path)
    runs = []
    for key, entry in by_run.items():
        for needed in ("pruned_metrics", "plan"):
            if needed not in entry:
                others = sorted(k for k in entry if k in kinds)
                raise ValueError(
                    f"run {key} has {others} but no {needed} file; add its pruned/{key[0]}/{key[1]}/seed{key[2]}/"
                    f"{'metrics.json' if needed == 'pruned_metrics' else 'plan.json'}"
                )
        runs.append(RunFiles.from_mapping(entry))
    return sorted(runs, key=lambda r: (r.method, budget_sort_key(r.budget), r.seed))


def _read_metrics(path: Path) -> dict[str, Any]:
    metrics = read_json(path)
    missing = [k for k in _METRICS_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{path} lacks {missing}; it must be written by `layerprune evaluate` (rerun that stage)")
    return metrics


def _read_table(path: Path | None, needed: Sequence[str]) -> pd.DataFrame | None:
    """A tidy CSV, or None when the input is absent (stage disabled)."""
    return None if path is None else read_table(path, needed)


def read_emissions(path: str | Path | None) -> dict[str, Any]:
    """Total energy (kWh), CO2 (kg) and the power source of an emissions CSV (summed over its phases).

    A header-only CSV (tracking disabled) or no file gives NaN, so "not measured" never reads as "free".

    Returns:
        ``{"energy_kwh": float, "co2_kg": float, "source": str | None}``.
    """
    frame = _read_table(None if path is None else Path(path), _EMISSIONS_COLUMNS)
    if frame is None or frame.empty:
        return {"energy_kwh": math.nan, "co2_kg": math.nan, "source": None}
    source = None
    if "cpu_power_source" in frame.columns:
        values = [str(v) for v in dict.fromkeys(frame["cpu_power_source"].dropna())]
        source = "; ".join(values) or None
    return {
        "energy_kwh": float(frame["energy_kwh"].sum(min_count=1)),
        "co2_kg": float(frame["co2_kg"].sum(min_count=1)),
        "source": source,
    }


def _adversarial_mean(path: Path | None) -> float:
    """Mean robust accuracy over attacks and budgets at epsilon > 0 (epsilon 0 is clean accuracy)."""
    frame = _read_table(path, _ADVERSARIAL_COLUMNS)
    if frame is None:
        return math.nan
    attacked = frame[frame["epsilon"] > 0]
    return float(attacked["robust_accuracy"].mean()) if not attacked.empty else math.nan


def _corruption_stats(path: Path | None, baseline: pd.DataFrame | None) -> tuple[float, float, Any]:
    """(mean corruption accuracy, mCE relative to the baseline, corruptions in that mCE) via the robustness module's
    one definition. The mCE is over the corruptions where the baseline errs (CE is undefined elsewhere), NaN when
    there is none; the count is ``pd.NA`` when there is no mCE at all (no baseline, or one that does not match)."""
    frame = _read_table(path, _CORRUPTION_COLUMNS)
    if frame is None or frame.empty:
        return math.nan, math.nan, pd.NA
    from layerprune.robustness.mce import corruption_summary

    overall = corruption_summary(frame).query("level == 'overall'")["accuracy"].iloc[0]
    mce, used = math.nan, pd.NA
    if baseline is not None and not baseline.empty:
        try:
            row = corruption_summary(frame, baseline).query("level == 'overall'").iloc[0]
            mce, used = float(row["ce"]), int(row["ce_corruptions"])
        except ValueError as err:  # baseline lacks a (corruption, severity)
            logger.warning("mCE of %s left NaN: %s", path, err)
    return float(overall), mce, used


def _bps(values: Sequence[int]) -> str:
    # a readable, CSV-safe form of the per-stage unit counts, e.g. "3-2-3"
    return "-".join(str(int(v)) for v in values)


def build_summary(
    baseline_metrics: str | Path,
    runs: Sequence[RunFiles | Mapping[str, Any]],
    *,
    baseline_train_emissions: str | Path | None = None,
    baseline_inference_emissions: str | Path | None = None,
    baseline_adversarial: str | Path | None = None,
    baseline_corruptions: str | Path | None = None,
    latency: str | Path | None = None,
    baseline_shortcut: str | Path | None = None,
) -> pd.DataFrame:
    """Joins an experiment's result files into one tidy table (see the module docstring for conventions).

    Args:
        baseline_metrics: ``baseline/metrics.json``.
        runs: one :class:`RunFiles` (or a dict with its field names) per (method, budget, seed); see
            :func:`collect_runs` to build them from flat file lists.
        baseline_train_emissions: ``baseline/emissions_train.csv`` (optional).
        baseline_inference_emissions: ``baseline/emissions_inference.csv`` (optional).
        baseline_adversarial, baseline_corruptions: ``robustness/baseline/*.csv`` (optional). The baseline
            corruptions are the reference of every run's mCE.
        latency: ``latency/latency.csv`` of the timing step (optional); its latency (median and quartiles) and
            energy per image replace the latency measured inside each model's own job.
        baseline_shortcut: ``robustness/baseline/shortcut.csv`` (optional).

    Returns:
        DataFrame with :data:`SUMMARY_COLUMNS`: the baseline row, then per run a ``pruned`` row and, when
        fine-tuned, a ``finetuned`` row. Pruned rows carry NaN fine-tuning energy, and NaN robustness when the
        run was fine-tuned (robustness describes the run's last model).

    Raises:
        ValueError: a malformed file, a run listed twice, or a baseline with zero params/MACs.
        FileNotFoundError: a named file that does not exist.
    """
    base = _read_metrics(Path(baseline_metrics))
    if not base["params"] or not base["macs"]:
        raise ValueError(f"{baseline_metrics} reports params={base['params']}, macs={base['macs']}; both must be > 0")
    base_corr = _read_table(None if baseline_corruptions is None else Path(baseline_corruptions), _CORRUPTION_COLUMNS)
    train = read_emissions(baseline_train_emissions)
    infer = read_emissions(baseline_inference_emissions)
    # the baseline relative to itself: CE 1 on every corruption where it errs
    corr_mean, base_mce, base_used = _corruption_stats(
        None if baseline_corruptions is None else Path(baseline_corruptions), base_corr
    )
    rows: list[dict[str, Any]] = [
        {
            "method": "baseline",
            "budget": "none",
            "seed": pd.NA,
            "stage": "baseline",
            "blocks_removed": 0,
            "removed_units": "",
            "blocks_per_stage": _bps(base["blocks_per_stage"]),
            "params": int(base["params"]),
            "params_reduction": 0.0,
            "macs": int(base["macs"]),
            "macs_reduction": 0.0,
            "top1": float(base["top1"]),
            "top1_delta": 0.0,
            "loss": base.get("loss", math.nan),
            "n_test": base.get("n_test", pd.NA),
            "perplexity": base.get("perplexity", math.nan),  # causal LMs only
            "ood_perplexity": base.get("ood_perplexity", math.nan),
            "latency_ms": base.get("latency_ms", math.nan),
            "train_energy_kwh": train["energy_kwh"],
            "train_co2_kg": train["co2_kg"],
            "finetune_energy_kwh": math.nan,
            "finetune_co2_kg": math.nan,
            "inference_energy_kwh": infer["energy_kwh"],
            "inference_co2_kg": infer["co2_kg"],
            "energy_source": _sources(train, infer),
            "adv_accuracy_mean": _adversarial_mean(
                None if baseline_adversarial is None else Path(baseline_adversarial)
            ),
            "corruption_accuracy_mean": corr_mean,
            "mce": base_mce,
            "mce_corruptions": base_used,
            **shortcut_columns(baseline_shortcut),
        }
    ]
    seen: set[tuple[str, str, int]] = set()
    for run in runs:
        run = run if isinstance(run, RunFiles) else RunFiles.from_mapping(run)
        key = (run.method, run.budget, run.seed)
        if key in seen:
            raise ValueError(f"run {key} is listed twice; pass each (method, budget, seed) once")
        seen.add(key)
        rows.extend(_run_rows(run, base, base_corr))
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if latency is not None:
        _apply_latency(frame, Path(latency))
    for column in ("seed", "mce_corruptions", "n_test"):
        frame[column] = frame[column].astype("Int64")
    return frame


#: latency.csv column -> summary column.
_LATENCY_COLUMNS = {
    "latency_ms": "latency_ms",
    "latency_q1_ms": "latency_q1_ms",
    "latency_q3_ms": "latency_q3_ms",
    "threads": "latency_threads",
    "batch_size": "latency_batch_size",
    "latency_passes": "latency_passes",
    "energy_seconds": "energy_window_s",
    "energy_windows": "energy_windows",
    "energy_j_per_image": "inference_j_per_image",
    "energy_q1_j_per_image": "inference_q1_j_per_image",
    "energy_q3_j_per_image": "inference_q3_j_per_image",
}


def model_label(method: str, budget: str, seed: Any, stage: str) -> str:
    """The model folder of a summary row under results/<experiment>/ (``baseline`` or ``<stage>/<method>/...``)."""
    return "baseline" if stage == "baseline" else f"{stage}/{method}/{budget}/seed{seed}"


def _apply_latency(frame: pd.DataFrame, path: Path) -> None:
    """Latency and per-image energy of the timing step (``latency.csv``) replace the in-job latency: a model timed
    inside its pruning or fine-tuning job shared the CPU with other jobs. Rows of models the step did not time (the
    pruned models when fine-tuning ran) get NaN."""
    timed = read_table(path, ("model", "latency_ms", "latency_q1_ms", "latency_q3_ms"))
    if timed["model"].duplicated().any():
        raise ValueError(f"{path} times a model twice: {sorted(timed['model'][timed['model'].duplicated()])}")
    timed = timed.set_index("model")
    labels = [model_label(*r) for r in frame[["method", "budget", "seed", "stage"]].itertuples(index=False)]
    for source, target in _LATENCY_COLUMNS.items():
        values = timed[source] if source in timed else pd.Series(dtype=float)
        frame[target] = [values.get(label, math.nan) for label in labels]


def _sources(*emissions: Mapping[str, Any]) -> str | None:
    values = [e["source"] for e in emissions if e["source"]]
    return "; ".join(dict.fromkeys(values)) or None


def _run_rows(run: RunFiles, base: Mapping[str, Any], base_corr: pd.DataFrame | None) -> list[dict[str, Any]]:
    plan = read_json(run.plan)
    if "removed" not in plan:
        raise ValueError(f"{run.plan} lacks 'removed'; it must be written by `layerprune prune` (rerun that stage)")
    stages = [("pruned", run.pruned_metrics)]
    if run.finetuned_metrics is not None:
        stages.append(("finetuned", run.finetuned_metrics))
    adv = _adversarial_mean(run.adversarial)
    corr_mean, mce, mce_used = _corruption_stats(run.corruptions, base_corr)
    shortcut = shortcut_columns(run.shortcut)
    rows = []
    for stage, path in stages:
        metrics = _read_metrics(path)
        last = stage == stages[-1][0]
        finetune = read_emissions(run.finetune_emissions if stage == "finetuned" else None)
        infer = read_emissions(run.inference_emissions if stage == "finetuned" else run.pruned_inference_emissions)
        rows.append(
            {
                "method": run.method,
                "budget": run.budget,
                "seed": run.seed,
                "stage": stage,
                "blocks_removed": int(plan.get("n_removed", len(plan["removed"]))),
                "removed_units": ";".join(plan["removed"]),
                "blocks_per_stage": _bps(metrics["blocks_per_stage"]),
                "params": int(metrics["params"]),
                "params_reduction": 1.0 - metrics["params"] / base["params"],
                "macs": int(metrics["macs"]),
                "macs_reduction": 1.0 - metrics["macs"] / base["macs"],
                "top1": float(metrics["top1"]),
                "top1_delta": 100.0 * (float(metrics["top1"]) - float(base["top1"])),
                "loss": metrics.get("loss", math.nan),
                "n_test": metrics.get("n_test", pd.NA),
                "perplexity": metrics.get("perplexity", math.nan),
                "ood_perplexity": metrics.get("ood_perplexity", math.nan),
                "latency_ms": metrics.get("latency_ms", math.nan),
                "train_energy_kwh": math.nan,
                "train_co2_kg": math.nan,
                "finetune_energy_kwh": finetune["energy_kwh"],
                "finetune_co2_kg": finetune["co2_kg"],
                "inference_energy_kwh": infer["energy_kwh"],
                "inference_co2_kg": infer["co2_kg"],
                "energy_source": _sources(finetune, infer),
                "adv_accuracy_mean": adv if last else math.nan,
                "corruption_accuracy_mean": corr_mean if last else math.nan,
                "mce": mce if last else math.nan,
                "mce_corruptions": mce_used if last else pd.NA,
                **(shortcut if last else shortcut_columns(None)),
            }
        )
    return rows


def write_summary(path: str | Path, summary: pd.DataFrame) -> Path:
    """Writes ``summary.csv`` atomically."""
    return write_csv(path, summary)


def read_summary(path: str | Path) -> pd.DataFrame:
    """Reads a ``summary.csv`` written by :func:`write_summary`, checking its core columns.

    Raises:
        FileNotFoundError: no such file. ValueError: not a summary (missing columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `layerprune summarize` first")
    frame = pd.read_csv(path, dtype={"budget": str, "method": str, "stage": str, "blocks_per_stage": str})
    needed = ("method", "budget", "seed", "stage", "macs_reduction", "params_reduction", "top1", "top1_delta")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it is not a summary.csv of `layerprune summarize`")
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def final_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (method, budget, seed), the row of its last stage (fine-tuned when present, else pruned)."""
    runs = summary[summary["stage"] != "baseline"].copy()
    runs["_order"] = runs["stage"].map({s: i for i, s in enumerate(STAGES)})
    runs = runs.sort_values("_order").groupby(["method", "budget", "seed"], sort=False).tail(1)
    return runs.drop(columns="_order")


def _removed_sets(group: pd.DataFrame) -> str:
    """The units removed in a (method, budget): one set, or the distinct sets of its seeds joined by `` | ``."""
    sets = list(dict.fromkeys(str(v) if isinstance(v, str) else "" for v in group["removed_units"]))
    return " | ".join(", ".join(s.split(";")) if s else "–" for s in sets)


def _column_mean(group: pd.DataFrame, column: str) -> float:
    return float(group[column].mean()) if column in group and group[column].notna().any() else math.nan


def main_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The papers' table: per (method, budget), mean (and std over seeds) of the reductions and accuracy, the units
    removed, and the latency and inference energy of the timing step with their spread.

    Accuracy is the fine-tuned model's where it was fine-tuned (``stage`` says which), the pruned model's otherwise;
    ``top1_pruned_pct`` keeps the accuracy straight after pruning for comparison. ``*_within_spread`` is True where
    a model's difference from the baseline is within the measurement's spread (latency and energy: their
    interquartile ranges overlap the baseline's; accuracy: less than one test image, or the seed std).

    Returns:
        DataFrame, baseline first then methods by name and budgets in order, with columns ``method, budget,
        stage, n_seeds, n_test, blocks_removed, removed_units, macs_reduction_pct, params_reduction_pct, top1_pct,
        top1_pct_std, top1_pruned_pct, top1_delta, top1_delta_std, top1_within_spread, latency_ms, latency_q1_ms,
        latency_q3_ms, latency_within_spread, energy_mj, energy_q1_mj, energy_q3_mj, energy_within_spread``.

    Raises:
        ValueError: if the summary has no baseline row.
    """
    from layerprune.timing import within_spread

    base = summary[summary["stage"] == "baseline"]
    if base.empty:
        raise ValueError("summary has no baseline row (stage 'baseline'); build it with build_summary")
    pruned = summary[summary["stage"] == "pruned"]
    final = final_rows(summary)

    def timing(group: pd.DataFrame) -> dict[str, float]:
        return {
            "latency_ms": _column_mean(group, "latency_ms"),
            "latency_q1_ms": _column_mean(group, "latency_q1_ms"),
            "latency_q3_ms": _column_mean(group, "latency_q3_ms"),
            "energy_mj": 1000 * _column_mean(group, "inference_j_per_image"),
            "energy_q1_mj": 1000 * _column_mean(group, "inference_q1_j_per_image"),
            "energy_q3_mj": 1000 * _column_mean(group, "inference_q3_j_per_image"),
        }

    n_test = _column_mean(base, "n_test")
    rows = [
        {
            "method": "baseline",
            "budget": "none",
            "stage": "baseline",
            "n_seeds": len(base),
            "n_test": n_test,
            "blocks_removed": 0.0,
            "removed_units": "–",
            "macs_reduction_pct": 0.0,
            "params_reduction_pct": 0.0,
            "top1_pct": 100 * float(base["top1"].mean()),
            "top1_pct_std": math.nan,
            "top1_pruned_pct": math.nan,
            "top1_delta": 0.0,
            "top1_delta_std": math.nan,
            **timing(base),
        }
    ]
    for (method, budget), group in final.groupby(["method", "budget"], sort=False):
        before = pruned[(pruned["method"] == method) & (pruned["budget"] == budget)]
        multi = len(group) > 1
        rows.append(
            {
                "method": method,
                "budget": budget,
                "stage": "finetuned" if (group["stage"] == "finetuned").all() else "pruned",
                "n_seeds": len(group),
                "n_test": _column_mean(group, "n_test"),
                "blocks_removed": float(group["blocks_removed"].mean()),
                "removed_units": _removed_sets(group),
                "macs_reduction_pct": 100 * float(group["macs_reduction"].mean()),
                "params_reduction_pct": 100 * float(group["params_reduction"].mean()),
                "top1_pct": 100 * float(group["top1"].mean()),
                "top1_pct_std": 100 * float(group["top1"].std()) if multi else math.nan,
                "top1_pruned_pct": 100 * float(before["top1"].mean()) if not before.empty else math.nan,
                "top1_delta": float(group["top1_delta"].mean()),
                "top1_delta_std": float(group["top1_delta"].std()) if multi else math.nan,
                **timing(group),
            }
        )
    table = pd.DataFrame(rows)
    ref = table.iloc[0]
    one_image = 100.0 / n_test if n_test and not math.isnan(n_test) else math.nan
    table["top1_within_spread"] = [
        i > 0 and (abs(d) < one_image - 1e-9 or (not math.isnan(sd) and abs(d) <= sd))
        for i, (d, sd) in enumerate(zip(table["top1_delta"], table["top1_delta_std"].fillna(math.nan)))
    ]
    for kind, value, low, high in (
        ("latency", "latency_ms", "latency_q1_ms", "latency_q3_ms"),
        ("energy", "energy_mj", "energy_q1_mj", "energy_q3_mj"),
    ):
        table[f"{kind}_within_spread"] = [
            i > 0 and within_spread(r[value], r[low], r[high], ref[value], ref[low], ref[high])
            for i, (_, r) in enumerate(table.iterrows())
        ]
    # CodeCarbon's energy without RAPL/NVML is its power estimate times the time, so the time's spread applies too:
    # energy within the spread where either range overlaps the baseline's
    table["energy_within_spread"] = table["energy_within_spread"] | (
        table["latency_within_spread"] & table["energy_mj"].notna()
    )
    order = table.apply(lambda r: (r["method"] != "baseline", r["method"], budget_sort_key(r["budget"])), axis=1)
    return table.iloc[sorted(range(len(table)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def _fmt(value: float, std: float = math.nan, digits: int = 2, pm: str = "±", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if not (std is None or math.isnan(std)):
        text += f" {pm} {std:.{digits}f}"
    return text


def _fmt_range(value: float, low: float, high: float, flag: bool, digits: int, approx: str) -> str:
    """``median [q1-q3]``, prefixed with ``approx`` when within the baseline's spread."""
    if value is None or math.isnan(value):
        return "–"
    text = f"{value:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"
    return f"{approx} {text}" if flag else text


def _digits(values: pd.Series) -> int:
    """Decimals that show three significant digits of the smallest positive value."""
    positive = values[values > 0]
    if positive.empty:
        return 2
    return max(0, min(4, 2 - math.floor(math.log10(float(positive.min())))))


def _display_table(table: pd.DataFrame, latex: bool) -> pd.DataFrame:
    pm = r"$\pm$" if latex else "±"
    pct = r"\%" if latex else "%"
    down = r"$\downarrow$" if latex else "↓"
    approx = r"$\approx$" if latex else "≈"

    def esc(text: str) -> str:
        return text.replace("_", r"\_").replace("%", r"\%") if latex else text

    finetuned = (table["stage"] == "finetuned").any()
    top1 = f"Top-1 {'fine-tuned' if finetuned else 'pruned'} ({pct})"
    columns: dict[str, list[str]] = {
        "Method": [esc(method_label(m)) for m in table["method"]],
        "Budget": [esc("–" if b == "none" else b) for b in table["budget"]],
        "Units removed": [_fmt(v, digits=0 if float(v).is_integer() else 1) for v in table["blocks_removed"]],
        "Removed units": [esc(u) for u in table["removed_units"]],
        f"MACs {down} ({pct})": [_fmt(v, digits=1) for v in table["macs_reduction_pct"]],
        f"Params {down} ({pct})": [_fmt(v, digits=1) for v in table["params_reduction_pct"]],
    }
    if finetuned:
        columns[f"Top-1 pruned ({pct})"] = [_fmt(v) for v in table["top1_pruned_pct"]]
    columns[top1] = [_fmt(v, s, pm=pm) for v, s in zip(table["top1_pct"], table["top1_pct_std"])]
    columns["Δ (pts)" if not latex else r"$\Delta$ (pts)"] = [
        (f"{approx} " if flag else "") + _fmt(v, s, pm=pm, signed=True)
        for v, s, flag in zip(table["top1_delta"], table["top1_delta_std"], table["top1_within_spread"])
    ]
    if table["latency_ms"].notna().any():
        digits = _digits(table["latency_ms"])
        columns["Latency (ms/batch) [IQR]"] = [
            _fmt_range(
                r["latency_ms"], r["latency_q1_ms"], r["latency_q3_ms"], r["latency_within_spread"], digits, approx
            )
            for _, r in table.iterrows()
        ]
    if table["energy_mj"].notna().any():
        digits = _digits(table["energy_mj"])
        columns["Energy (mJ/image) [IQR]"] = [
            _fmt_range(r["energy_mj"], r["energy_q1_mj"], r["energy_q3_mj"], r["energy_within_spread"], digits, approx)
            for _, r in table.iterrows()
        ]
    out = pd.DataFrame(columns)
    if latex:  # an en dash typed as TeX ligature, so the table needs no unicode input encoding
        out = out.map(lambda cell: cell.replace("–", "--"))
    return out


def main_table_notes(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> tuple[str, list[str]]:
    """The caption and the notes of the main table, stated from the table itself (stage, test size, what one image
    is worth, what Δ is against, how latency and energy were measured, what ≈ means).

    Returns:
        ``(caption, notes)``: one sentence, then one string per note.
    """
    base = table.iloc[0]
    finetuned = (table["stage"] == "finetuned").any()
    seeds = int(table["n_seeds"].iloc[1:].max()) if len(table) > 1 else 1
    stage = "after fine-tuning" if finetuned else "straight after pruning (no fine-tuning)"
    caption = f"Pruning criteria compared: units removed, cost reduction and top-1 accuracy {stage}" + (
        f", mean ± std over {seeds} seeds." if seeds > 1 else ", one seed."
    )
    notes = []
    n_test = base["n_test"]
    if n_test and not math.isnan(n_test):
        one = 100.0 / float(n_test)
        notes.append(
            f"Top-1 is measured on the {int(n_test):,} test images; one image is worth {one:.2f} accuracy points."
        )
    notes.append(
        f"Δ is the change of top-1 {stage} against the unpruned baseline ({base['top1_pct']:.2f}%), in accuracy "
        "points; ≈ marks a change smaller than one test image" + (" or within the seed std" if seeds > 1 else "") + "."
    )
    if finetuned:
        notes.append("'Top-1 pruned' is the accuracy straight after removing the units, before fine-tuning.")
    notes.append(
        "Removed units: the units each plan removed (layer<stage>.<index>, stages from 1); where the seeds removed "
        "different units, their sets are separated by |."
    )
    if table["latency_ms"].notna().any():
        how = ""
        if summary is not None and "latency_threads" in summary and summary["latency_threads"].notna().any():
            how = (
                f" of {int(summary['latency_batch_size'].dropna().iloc[0])} images on "
                f"{int(summary['latency_threads'].dropna().iloc[0])} thread(s)"
            )
            if "latency_passes" in summary and summary["latency_passes"].notna().any():
                how += f", {int(summary['latency_passes'].dropna().iloc[0])} timed passes per model"
        notes.append(
            f"Latency: median time per batch{how}, with its interquartile range [IQR]; every model timed one after "
            "another in a dedicated step that no other workflow job runs beside; ≈ marks a model whose range overlaps the "
            "baseline's (no measurable difference)."
        )
    if table["energy_mj"].notna().any():
        source = ""
        if summary is not None and "energy_source" in summary:
            parts = {p.strip() for v in summary["energy_source"].dropna() for p in str(v).split(";") if p.strip()}
            source = f" CPU power: {'; '.join(sorted(parts))}." if parts else ""
        window = "fixed-length windows"
        if summary is not None and "energy_window_s" in summary and summary["energy_window_s"].notna().any():
            window = (
                f"{int(summary['energy_windows'].dropna().iloc[0])} windows of "
                f"{float(summary['energy_window_s'].dropna().iloc[0]):g} s"
            )
        notes.append(
            f"Energy: CodeCarbon's inference energy per image over {window} of inference per model "
            "(median [IQR] of the windows); ≈ marks a model whose energy range or latency range overlaps the "
            f"baseline's (estimated energy follows time).{source}"
        )
    return caption, notes


def main_table_markdown(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """The main table as GitHub Markdown (needs ``tabulate``), with its caption above and notes below."""
    caption, notes = main_table_notes(table, summary)
    body = _display_table(table, latex=False).to_markdown(index=False, disable_numparse=True)
    return f"**Table: {caption}**\n\n{body}\n\n" + "".join(f"- {n}\n" for n in notes)


def main_table_latex(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """The main table as a booktabs LaTeX ``table`` float with caption and notes (needs ``jinja2``, through
    pandas' Styler)."""
    caption, notes = main_table_notes(table, summary)
    display = _display_table(table, latex=True)
    tabular = display.to_latex(index=False, escape=False, column_format="ll" + "r" * (display.shape[1] - 2))

    def tex(text: str) -> str:
        for a, b in (("%", r"\%"), ("_", r"\_"), ("≈", r"$\approx$"), ("±", r"$\pm$"), ("Δ", r"$\Delta$")):
            text = text.replace(a, b)
        return text.replace("–", "--").replace("|", r"$|$")

    return (
        "\\begin{table}\n\\centering\n\\footnotesize\n"
        f"\\caption{{{tex(caption)}}}\n\\label{{tab:main}}\n{tabular}"
        + "\\par\\smallskip\n"
        + "".join(f"{tex(n)}\\par\n" for n in notes)
        + "\\end{table}\n"
    )


def main_table_html(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """The main table as a self-contained HTML page (caption and notes included), for the report."""
    import html

    caption, notes = main_table_notes(table, summary)
    display = _display_table(table, latex=False)
    body = display.to_html(index=False, border=0, escape=True, classes="main-table")
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    style = (
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:0.85em}"
        "th,td{padding:0.25em 0.6em;border-bottom:1px solid #ccc;text-align:right}"
        "td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}th{background:#f2f2f2}"
        "caption{caption-side:top;text-align:left;font-weight:bold;margin-bottom:0.5em}"
        "ul{font-size:0.85em;color:#333;max-width:60em}"
    )
    table_html = body.replace('<table border="0" class="dataframe main-table">', '<table class="main-table">')
    table_html = table_html.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Main table</title><style>{style}</style>'
        f"</head>\n<body>\n{table_html}\n<ul>{note_items}</ul>\n</body></html>\n"
    )


def write_main_tables(
    summary: pd.DataFrame,
    markdown: str | Path | None,
    latex: str | Path | None,
    html: str | Path | None = None,
) -> list[Path]:
    """Writes the main table as Markdown, LaTeX and/or HTML (atomically); returns the written paths."""
    table = main_table(summary)
    written = []
    if markdown is not None:
        written.append(write_text(markdown, main_table_markdown(table, summary)))
    if latex is not None:
        written.append(write_text(latex, main_table_latex(table, summary)))
    if html is not None:
        written.append(write_text(html, main_table_html(table, summary)))
    return written
