"""Latency and inference energy of every compared model, measured one after another in one process.

Timing a model while other jobs share the CPU measures the other jobs: on a busy 2-core machine, models of one
architecture measured 8.7 to 50 ms per batch when each was timed inside its own pruning or fine-tuning job. So the
workflow times every compared model in one dedicated job (rule ``evaluate_latency``, which claims every core so that
no other workflow job runs beside it; other programs on the machine still can), with the same thread count for all, in rounds: each round times every model once in
turn, so a slow spell of the machine touches every model alike instead of one. The spread reported is the
interquartile range of the timed passes of all rounds.

Inference energy is tracked by CodeCarbon over a fixed wall time per model (``energy_seconds``, repeated in
``energy_windows`` windows), long enough for its power samples (taken every ``measure_power_secs``), and divided by
the images inferred in that time: joules per image, with the windows' quartiles as its spread. Where no RAPL or NVML
counters exist, CodeCarbon's CPU power is an estimate (about 4 W a thread scaled by load), so the energy then follows
the time per image; each row names its power source.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

__all__ = ["LATENCY_COLUMNS", "TimingSettings", "measure_models", "model_key", "within_spread"]

logger = logging.getLogger(__name__)

#: Columns of ``latency.csv``, one row per model.
LATENCY_COLUMNS = (
    "model",
    "method",
    "budget",
    "seed",
    "stage",
    "latency_ms",
    "latency_q1_ms",
    "latency_q3_ms",
    "latency_min_ms",
    "latency_max_ms",
    "latency_passes",
    "batch_size",
    "threads",
    "device",
    "energy_j_per_image",
    "energy_q1_j_per_image",
    "energy_q3_j_per_image",
    "energy_seconds",
    "energy_windows",
    "energy_images",
    "co2_g_per_image",
    "cpu_power_source",
)


@dataclass(frozen=True)
class TimingSettings:
    """How models are timed (the config's ``evaluation`` section).

    Attributes:
        batch_size: images per timed forward pass.
        repeats: timed passes per model and round.
        rounds: rounds over all models (each times every model ``repeats`` times, after ``warmup`` untimed passes).
        warmup: untimed passes before each model's timed passes in a round.
        threads: torch intra-op threads, the same for every model.
        energy_seconds: wall time of one energy window per model (0 turns energy tracking off).
        energy_windows: energy windows per model; their median is reported, their quartiles as the spread.
        measure_power_secs: CodeCarbon's power sampling interval inside a window.
    """

    batch_size: int
    repeats: int
    rounds: int
    warmup: int
    threads: int
    energy_seconds: float
    energy_windows: int
    measure_power_secs: float = 0.5  # CodeCarbon's default is 15 s, longer than a window

    def __post_init__(self) -> None:
        for name in ("batch_size", "repeats", "rounds", "threads", "energy_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluation {name}={getattr(self, name)!r} must be >= 1")
        if self.warmup < 0 or self.energy_seconds < 0 or self.measure_power_secs <= 0:
            raise ValueError(
                f"warmup={self.warmup}, energy_seconds={self.energy_seconds}, measure_power_secs="
                f"{self.measure_power_secs}: expected warmup >= 0, energy_seconds >= 0, measure_power_secs > 0"
            )


def model_key(path: str | Path) -> dict[str, Any]:
    """(model, method, budget, seed, stage) of a model file from its workflow path.

    ``.../baseline/model.pt`` is the baseline; ``.../<stage>/<method>/<budget>/seed<N>/model.pt`` a run.

    Raises:
        ValueError: a path off the workflow layout.
    """
    from layerprune.summary import run_key

    path = Path(path)
    if path.parent.name == "baseline":
        return {"model": "baseline", "method": "baseline", "budget": "none", "seed": pd.NA, "stage": "baseline"}
    method, budget, seed = run_key(path)
    stage = path.parents[3].name
    return {
        "model": f"{stage}/{method}/{budget}/seed{seed}",
        "method": method,
        "budget": budget,
        "seed": seed,
        "stage": stage,
    }


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return (values[0],) * 3  # type: ignore[return-value]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _energy_windows(
    model: torch.nn.Module, batch: torch.Tensor, settings: TimingSettings, country_iso_code: str
) -> list[dict[str, Any]]:
    """Runs inference for ``energy_seconds`` per window under CodeCarbon; one record per window."""
    from layerprune.emissions import track

    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for window in range(settings.energy_windows):
            images = 0
            with (
                track(
                    "inference_window",
                    Path(tmp) / f"window{window}.csv",
                    country_iso_code=country_iso_code,
                    measure_power_secs=settings.measure_power_secs,
                ) as record,
                torch.inference_mode(),
            ):
                end = time.perf_counter() + settings.energy_seconds
                while time.perf_counter() < end:
                    model(batch)
                    images += len(batch)
            row = record.row or {}
            records.append({"images": images, **row})
    return records


def measure_models(
    models: Mapping[str, torch.nn.Module],
    input_size: Sequence[int],
    settings: TimingSettings,
    *,
    country_iso_code: str = "USA",
    emissions: bool = True,
) -> pd.DataFrame:
    """Times every model in rounds (see the module docstring) and tracks its inference energy per image.

    Args:
        models: model label (its file path) -> model on the CPU; all take inputs of ``input_size``.
        input_size: one input's shape, e.g. ``(1, 16, 16)``.
        settings: batch, repeats, rounds, threads and energy windows.
        country_iso_code: CodeCarbon's grid for CO2.
        emissions: False leaves the energy columns NaN.

    Returns:
        One row per model with :data:`LATENCY_COLUMNS` (``model`` is the label; the run columns are left for the
        caller), in the order of ``models``.
    """
    from layerprune.train import measure_latency, select_device

    torch.set_num_threads(settings.threads)
    device = select_device("auto")
    samples: dict[str, list[float]] = {label: [] for label in models}
    for round_ in range(settings.rounds):
        for label, model in models.items():
            timed = measure_latency(
                model,
                input_size,
                batch_size=settings.batch_size,
                device=device,
                warmup=settings.warmup,
                repeats=settings.repeats,
            )
            samples[label].extend(timed["samples_ms"])
        logger.info("latency round %d/%d done (%d models)", round_ + 1, settings.rounds, len(models))
    rows = []
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn((settings.batch_size, *input_size), generator=generator).to(device)
    for label, model in models.items():
        times = samples[label]
        q1, median, q3 = _quartiles(times)
        row: dict[str, Any] = {
            "model": label,
            "latency_ms": median,
            "latency_q1_ms": q1,
            "latency_q3_ms": q3,
            "latency_min_ms": min(times),
            "latency_max_ms": max(times),
            "latency_passes": len(times),
            "batch_size": settings.batch_size,
            "threads": settings.threads,
            "device": str(device),
            "energy_seconds": settings.energy_seconds,
            "energy_windows": settings.energy_windows,
        }
        if emissions and settings.energy_seconds > 0:
            model.to(device).eval()
            windows = _energy_windows(model, batch, settings, country_iso_code)
            per_image = [1000 * 3600 * w.get("energy_kwh", float("nan")) / w["images"] for w in windows]
            e_q1, e_median, e_q3 = _quartiles(per_image)
            co2 = [1000 * w.get("co2_kg", float("nan")) / w["images"] for w in windows]
            row.update(
                energy_j_per_image=e_median,
                energy_q1_j_per_image=e_q1,
                energy_q3_j_per_image=e_q3,
                energy_images=sum(w["images"] for w in windows),
                co2_g_per_image=statistics.median(co2),
                cpu_power_source=windows[0].get("cpu_power_source"),
            )
            model.cpu()
        logger.info(
            "%s: %.3f ms per batch of %d (IQR %.3f-%.3f), %s J per image",
            label,
            median,
            settings.batch_size,
            q1,
            q3,
            f"{row.get('energy_j_per_image', float('nan')):.3g}",
        )
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(LATENCY_COLUMNS))


def within_spread(value: float, low: float, high: float, ref: float, ref_low: float, ref_high: float) -> bool:
    """True when two measurements are indistinguishable: their spreads (``[low, high]``, e.g. quartiles) overlap.

    NaN anywhere gives False (nothing to compare).
    """
    values = (value, low, high, ref, ref_low, ref_high)
    if any(v is None or pd.isna(v) for v in values):
        return False
    return bool(low <= ref_high and ref_low <= high)
