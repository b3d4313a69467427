"""Energy and CO2 of a pipeline phase, measured with CodeCarbon's offline tracker.

Only ``OfflineEmissionsTracker`` is used: it never opens a network connection (the carbon intensity comes from
CodeCarbon's bundled per-country energy mix), so it works on air-gapped cluster nodes. CodeCarbon is imported lazily,
inside :func:`track`, so that importing layerprune stays cheap and a disabled tracker needs no CodeCarbon at all.

Honesty about the numbers: CodeCarbon *measures* CPU energy only through RAPL (Linux), the Windows Energy Meter
Interface, Intel Power Gadget or PowerMetrics (macOS), and GPU energy through NVML (NVIDIA) or AMD SMI. Otherwise
it *estimates* CPU power from a TDP table (or about 4 W per thread) scaled by CPU load, and RAM power is always a
model-based estimate. Each row says which source was used (read from the tracker's hardware objects after the
run), and ``measured`` is true only when CPU and GPU (if any) energy were both measured.

Resumed phases: a training phase killed and restarted runs in several processes. :meth:`PhaseRecord.usage` reads the
running totals of this process (the trainer stores them in its epoch checkpoints), and the totals of earlier
processes put in :attr:`PhaseRecord.earlier` are added to the row, so the row covers the whole run (minus the work
between a killed process's last checkpoint and its death, which nothing recorded).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from layerprune.io import write_csv

__all__ = [
    "ACCUMULATED_COLUMNS",
    "COLUMNS",
    "DEFAULT_COUNTRY_ISO_CODE",
    "PhaseRecord",
    "append_rows",
    "power_sources",
    "track",
]

logger = logging.getLogger(__name__)

# CodeCarbon's own default region when it geolocates; a config default, not an assumption about where we run.
DEFAULT_COUNTRY_ISO_CODE = "USA"
COLUMNS = (
    "phase",
    "duration_s",
    "energy_kwh",
    "co2_kg",
    "cpu_energy_kwh",
    "gpu_energy_kwh",
    "ram_energy_kwh",
    "cpu_power_source",
    "gpu_power_source",
    "ram_power_source",
    "country_iso_code",
    "measured",
    "tracking_mode",
    "codecarbon_version",
)
# The additive columns: summed over the processes of a resumed phase.
ACCUMULATED_COLUMNS = ("duration_s", "energy_kwh", "co2_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh")
_CPU_MODES = {
    "intel_rapl": "measured (RAPL)",
    "windows_emi": "measured (RAPL via Windows EMI)",
    "intel_power_gadget": "measured (Intel Power Gadget)",
    "cpu_load": "estimated (CodeCarbon TDP x CPU load)",
    "constant": "estimated (CodeCarbon TDP/constant)",
}


@dataclass
class PhaseRecord:
    """Handle yielded by :func:`track`.

    Attributes:
        phase: The phase name.
        extra: Extra columns for the row; the tracked block may add to it (e.g. ``n_samples`` once known).
        row: The row written to the CSV, set when the block exits (``None`` while running, on failure and when
            tracking is disabled).
        earlier: Totals (:data:`ACCUMULATED_COLUMNS`) of earlier processes of the same phase, e.g. a training run's
            before it was killed and resumed; added to this process's measurement in ``row``.
    """

    phase: str
    extra: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] | None = None
    earlier: dict[str, float] = field(default_factory=dict)
    _tracker: Any = field(default=None, repr=False, compare=False)

    def usage(self) -> dict[str, float] | None:
        """Totals (:data:`ACCUMULATED_COLUMNS`) measured so far by this process's tracker, not counting ``earlier``.

        Takes a fresh power sample first. Returns ``None`` when tracking is disabled or CodeCarbon cannot report
        (this reads CodeCarbon 3.x's running totals, which have no public accessor; ``flush()`` would also write
        a raw CSV row per call).
        """
        if self._tracker is None:
            return None
        try:
            self._tracker._measure_power_and_energy_if_stale()
            data = self._tracker._prepare_emissions_data()
            return {
                "duration_s": float(data.duration),
                "energy_kwh": float(data.energy_consumed),
                "co2_kg": float(data.emissions),
                "cpu_energy_kwh": float(data.cpu_energy),
                "gpu_energy_kwh": float(data.gpu_energy),
                "ram_energy_kwh": float(data.ram_energy),
            }
        except (AttributeError, TypeError, ValueError) as exc:  # other CodeCarbon internals: the run stays valid
            logger.debug("CodeCarbon running totals unavailable (%s)", exc)
            return None


def power_sources(tracker: Any) -> dict[str, str]:
    """Which CPU, GPU and RAM power sources a CodeCarbon tracker used, from its ``_hardware`` list.

    CodeCarbon 3.x keeps the chosen backends only as hardware objects (``CPU._mode`` is ``intel_rapl``,
    ``cpu_load``, ``constant``...; a ``GPU`` wraps NVML or AMD SMI devices), so we read them after the run.

    Returns:
        ``{"cpu": ..., "gpu": ..., "ram": ...}``, each ``"measured (...)"``, ``"estimated (...)"`` or ``"none"``.
    """
    from codecarbon.external.hardware import CPU, GPU, AppleSiliconChip
    from codecarbon.external.ram import RAM

    sources = {"cpu": "none", "gpu": "none", "ram": "none"}
    for hw in getattr(tracker, "_hardware", []):
        if isinstance(hw, CPU):
            mode = getattr(hw, "_mode", "unknown")
            sources["cpu"] = _CPU_MODES.get(mode, f"unknown (CodeCarbon mode {mode!r})")
        elif isinstance(hw, GPU):
            devices = getattr(getattr(hw, "devices", None), "devices", [])
            names = {type(d).__name__ for d in devices}
            if any("Nvidia" in n for n in names):
                sources["gpu"] = "measured (NVML)"
            elif any("AMD" in n for n in names):
                sources["gpu"] = "measured (AMD SMI)"
            elif devices:
                sources["gpu"] = f"unknown ({sorted(names)})"
        elif isinstance(hw, AppleSiliconChip):
            part = "gpu" if getattr(hw, "chip_part", "") == "GPU" else "cpu"
            sources[part] = "measured (PowerMetrics)"
        elif isinstance(hw, RAM):
            forced = getattr(hw, "_force_ram_power", None)
            sources["ram"] = (
                f"estimated (user constant {forced} W)" if forced is not None else "estimated (CodeCarbon RAM model)"
            )
        elif type(hw).__name__ == "Raspberry":
            sources[str(getattr(hw, "chip_part", "cpu")).lower()] = "measured (Raspberry Pi PMIC)"
    return sources


def append_rows(output_csv: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a CSV atomically (read, concat, write with :func:`layerprune.io.write_csv`).

    An exclusive ``flock`` on the CSV's folder serialises concurrent writers (parallel workflow jobs sharing one
    CSV) so that no row is lost between the read and the replace; new columns are added, missing ones left empty.
    """
    output_csv = Path(output_csv)
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(output_csv.parent):
        new = pd.DataFrame(rows)
        if output_csv.exists() and output_csv.stat().st_size > 0:
            new = pd.concat([pd.read_csv(output_csv), new], ignore_index=True)
        write_csv(output_csv, new)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # fcntl is POSIX-only; elsewhere writes are atomic but not serialised
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _check_country(code: str) -> None:
    from codecarbon.input import DataSource

    known = DataSource().get_global_energy_mix_data()
    if code not in known:
        raise ValueError(
            f"country_iso_code {code!r} is not in CodeCarbon's energy-mix table; expected a 3-letter ISO code "
            f"such as 'USA', 'FRA' or 'DEU' ({len(known)} known)"
        )


def _check_extra(extra: dict[str, Any]) -> None:
    clash = sorted(set(extra) & set(COLUMNS))
    if clash:
        raise ValueError(f"extra column(s) {clash} clash with the emissions columns {list(COLUMNS)}; rename them")


@contextlib.contextmanager
def track(
    phase: str,
    output_csv: Path,
    *,
    country_iso_code: str,
    enabled: bool = True,
    extra: dict[str, Any] | None = None,
    tracking_mode: str = "process",
    measure_power_secs: float = 15.0,
) -> Iterator[PhaseRecord]:
    """Track the energy and CO2 of the enclosed block and append one row for ``phase`` to ``output_csv``.

    Args:
        phase: Name of the phase (e.g. ``"train"``, ``"similarity"``, ``"finetune"``); the row's ``phase``.
        output_csv: Tidy CSV with :data:`COLUMNS` plus the ``extra`` keys; created with its folder if missing.
            CodeCarbon's own raw CSV is kept beside it as ``<stem>.codecarbon.csv`` for provenance.
        country_iso_code: 3-letter ISO code for the grid carbon intensity, from the workflow config
            (its default there is :data:`DEFAULT_COUNTRY_ISO_CODE`).
        enabled: ``False`` makes this a no-op that still yields a :class:`PhaseRecord` and writes nothing.
        extra: Extra columns (e.g. ``{"n_samples": 512, "method": "cka"}``); the block may add more to
            ``record.extra``, and set ``record.earlier`` to include earlier processes of a resumed phase.
        tracking_mode: ``"process"`` (default) attributes only this process's (and its children's) CPU load, so
            parallel workflow jobs on one machine do not each count the whole machine; ``"machine"`` counts it all.
        measure_power_secs: CodeCarbon's sampling interval; a final sample is always taken at the end.

    Yields:
        The phase record; its ``row`` is filled once the block has finished.

    Raises:
        ValueError: If ``country_iso_code`` is unknown to CodeCarbon or ``tracking_mode`` is invalid.
    """
    record = PhaseRecord(phase=phase, extra=dict(extra or {}))
    _check_extra(record.extra)
    if not enabled:
        yield record
        return
    if tracking_mode not in ("process", "machine"):
        raise ValueError(f"tracking_mode={tracking_mode!r} is invalid; expected 'process' or 'machine'")
    output_csv = Path(output_csv)
    # CodeCarbon silently writes nothing when its output folder is missing.
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")  # before the import: CodeCarbon configures logging then
    import codecarbon
    from codecarbon import OfflineEmissionsTracker

    _check_country(country_iso_code)
    try:
        from codecarbon.output_methods.base_output import OutputMethod

        output_kwargs: dict[str, Any] = {"output_methods": [OutputMethod.CSV]}
    except ImportError:  # CodeCarbon < 3 has only the (now deprecated) flag
        output_kwargs = {"save_to_file": True}
    tracker = OfflineEmissionsTracker(
        country_iso_code=country_iso_code,
        output_dir=str(output_csv.parent),
        output_file=f"{output_csv.stem}.codecarbon.csv",
        project_name=phase,
        tracking_mode=tracking_mode,
        measure_power_secs=measure_power_secs,
        allow_multiple_runs=True,  # parallel jobs each run their own tracker
        log_level=os.environ["CODECARBON_LOG_LEVEL"],
        **output_kwargs,
    )
    tracker.start()
    record._tracker = tracker
    try:
        yield record
    except BaseException:
        record._tracker = None
        tracker.stop()  # release CodeCarbon's threads; a failed phase gets no row
        raise
    record._tracker = None
    tracker.stop()
    data = getattr(tracker, "final_emissions_data", None)
    sources = power_sources(tracker)
    if data is None:
        # CodeCarbon swallows its own errors (its methods are wrapped in suppress(Exception)); record the gap
        # rather than failing a phase whose real work succeeded.
        logger.warning("CodeCarbon produced no measurement for phase %r; writing NaN energy", phase)
        values = dict.fromkeys(("duration", "energy_consumed", "emissions", "cpu", "gpu", "ram"), math.nan)
    else:
        values = {
            "duration": data.duration,
            "energy_consumed": data.energy_consumed,
            "emissions": data.emissions,
            "cpu": data.cpu_energy,
            "gpu": data.gpu_energy,
            "ram": data.ram_energy,
        }
    measured = (
        data is not None
        and sources["cpu"].startswith("measured")
        and (sources["gpu"] == "none" or sources["gpu"].startswith("measured"))
    )
    row: dict[str, Any] = {
        "phase": phase,
        "duration_s": float(values["duration"]),
        "energy_kwh": float(values["energy_consumed"]),
        "co2_kg": float(values["emissions"]),
        "cpu_energy_kwh": float(values["cpu"]),
        "gpu_energy_kwh": float(values["gpu"]),
        "ram_energy_kwh": float(values["ram"]),
        "cpu_power_source": sources["cpu"],
        "gpu_power_source": sources["gpu"],
        "ram_power_source": sources["ram"],
        "country_iso_code": country_iso_code,
        "measured": bool(measured),
        "tracking_mode": tracking_mode,
        "codecarbon_version": codecarbon.__version__,
    }
    unknown = sorted(set(record.earlier) - set(ACCUMULATED_COLUMNS))
    if unknown:
        raise ValueError(f"earlier totals {unknown} are not additive columns; expected {list(ACCUMULATED_COLUMNS)}")
    for key, value in record.earlier.items():
        row[key] += float(value)
    _check_extra(record.extra)
    row.update(record.extra)
    append_rows(output_csv, [row])
    record.row = row
    logger.info(
        "phase %s: %.1f s, %.3g kWh, %.3g kg CO2 (CPU %s, GPU %s)%s",
        phase,
        row["duration_s"],
        row["energy_kwh"],
        row["co2_kg"],
        sources["cpu"],
        sources["gpu"],
        f", including {record.earlier.get('energy_kwh', 0.0):.3g} kWh of earlier processes" if record.earlier else "",
    )
