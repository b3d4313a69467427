"""Energy and CO2 accounting of pipeline phases with CodeCarbon's offline tracker (imported lazily)."""

from __future__ import annotations

from layerprune.emissions.tracking import (
    ACCUMULATED_COLUMNS,
    COLUMNS,
    DEFAULT_COUNTRY_ISO_CODE,
    PhaseRecord,
    append_rows,
    power_sources,
    track,
)

__all__ = [
    "ACCUMULATED_COLUMNS",
    "COLUMNS",
    "DEFAULT_COUNTRY_ISO_CODE",
    "PhaseRecord",
    "append_rows",
    "power_sources",
    "track",
]
