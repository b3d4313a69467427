"""CodeCarbon offline tracking: tidy per-phase rows, honest power sources, no network, disabled mode."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from layerprune.emissions import (
    ACCUMULATED_COLUMNS,
    COLUMNS,
    append_rows,
    power_sources,
    track,
)


def _cpu_work(seconds_of_matmuls: int = 150) -> float:
    torch.manual_seed(0)
    a = torch.randn(256, 256)
    for _ in range(seconds_of_matmuls):
        a = torch.tanh(a @ a / 256)
    return float(a.sum())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """Make every outgoing connection attempt fail loudly and record it."""
    calls: list[tuple[str, tuple[object, ...]]] = []

    def refuse(name: str):  # type: ignore[no-untyped-def]
        def _refuse(*args: object, **kwargs: object) -> None:
            calls.append((name, args))
            raise OSError(f"network access attempted via {name} during an offline test")

        return _refuse

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return calls


def test_tracked_phases_write_tidy_rows_offline(
    tmp_path: Path, no_network: list[tuple[str, tuple[object, ...]]]
) -> None:
    out = tmp_path / "not" / "yet" / "there" / "emissions.csv"  # folder created by track
    with track("similarity", out, country_iso_code="FRA", extra={"n_samples": 256}) as record:
        _cpu_work()
        record.extra["method"] = "cka"  # known only at the end of the phase
    with track("finetune", out, country_iso_code="FRA", extra={"n_samples": 512}):
        _cpu_work(50)

    assert no_network == []
    table = pd.read_csv(out)
    assert list(table.columns) == [*COLUMNS, "n_samples", "method"]
    assert table["phase"].tolist() == ["similarity", "finetune"]
    assert table["n_samples"].tolist() == [256, 512]
    assert table.loc[0, "method"] == "cka" and pd.isna(table.loc[1, "method"])
    assert (table["duration_s"] > 0).all()
    assert (table["energy_kwh"] > 0).all() and (table["co2_kg"] > 0).all()
    parts = table[["cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh"]].sum(axis=1)
    assert parts.to_numpy() == pytest.approx(table["energy_kwh"].to_numpy(), rel=1e-6)
    assert (table["country_iso_code"] == "FRA").all()
    for _, row in table.iterrows():
        assert row["cpu_power_source"].startswith(("measured (", "estimated ("))
        assert row["ram_power_source"].startswith("estimated (")
        gpu_ok = row["gpu_power_source"] == "none" or row["gpu_power_source"].startswith("measured (")
        assert bool(row["measured"]) == (row["cpu_power_source"].startswith("measured (") and gpu_ok)
    assert record.row is not None and record.row["phase"] == "similarity"
    assert sorted(p.name for p in out.parent.iterdir()) == ["emissions.csv"]  # CodeCarbon's own files kept out


def test_disabled_tracking_is_a_noop_that_still_yields(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "emissions.csv"
    with track("train", out, country_iso_code="FRA", enabled=False, extra={"n": 1}) as record:
        value = _cpu_work(5)
    assert isinstance(value, float)  # the block ran
    assert record.phase == "train" and record.row is None
    assert not out.parent.exists()


def test_failed_phase_writes_no_row_and_reraises(tmp_path: Path) -> None:
    out = tmp_path / "emissions.csv"
    with pytest.raises(KeyError, match="boom"), track("prune", out, country_iso_code="USA"):
        raise KeyError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nor CodeCarbon's own CSV (it was left in results/)


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="country_iso_code: 'XYZ'"),
        track("x", tmp_path / "e.csv", country_iso_code="XYZ"),
    ):
        pass
    with (
        pytest.raises(ValueError, match=r"\['phase'\] clash"),
        track("x", tmp_path / "e.csv", country_iso_code="USA", extra={"phase": "y"}),
    ):
        pass
    assert not (tmp_path / "e.csv").exists()


def test_power_sources_read_the_backend_codecarbon_chose() -> None:
    from codecarbon.external.hardware import CPU

    class FakeTracker:
        def __init__(self, mode: str) -> None:
            cpu = object.__new__(CPU)  # skip hardware probing: only the chosen mode matters here
            cpu._mode = mode
            self._hardware = [cpu]

    assert power_sources(FakeTracker("intel_rapl"))["cpu"] == "measured (RAPL)"
    assert power_sources(FakeTracker("constant"))["cpu"] == "estimated (CodeCarbon TDP/constant)"
    assert power_sources(FakeTracker("cpu_load"))["cpu"].startswith("estimated (CodeCarbon TDP")
    assert power_sources(FakeTracker("cpu_load"))["gpu"] == "none"


def test_append_rows_unions_columns_atomically(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    append_rows(out, [{"phase": "a", "x": 1}])
    append_rows(out, [{"phase": "b", "y": 2.5}])
    table = pd.read_csv(out)
    assert table["phase"].tolist() == ["a", "b"]
    assert list(table.columns) == ["phase", "x", "y"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temp or lock files left behind


def test_running_totals_and_earlier_processes_add_up(
    tmp_path: Path, no_network: list[tuple[str, tuple[object, ...]]]
) -> None:
    """usage() reads this process's running totals; earlier processes' totals are added to the row."""
    out = tmp_path / "emissions.csv"
    with track("finetune", out, country_iso_code="FRA", enabled=False) as off:
        assert off.usage() is None  # nothing to read when tracking is off
    earlier = {"duration_s": 100.0, "energy_kwh": 0.5, "co2_kg": 0.02, "cpu_energy_kwh": 0.3, "ram_energy_kwh": 0.2}
    with track("finetune", out, country_iso_code="FRA") as record:
        _cpu_work(50)
        first = record.usage()
        _cpu_work(50)
        second = record.usage()
        record.earlier = earlier
    assert no_network == []
    assert first is not None and second is not None
    assert set(first) == set(ACCUMULATED_COLUMNS)
    assert 0 < first["duration_s"] < second["duration_s"]
    assert 0 < first["energy_kwh"] <= second["energy_kwh"]
    assert record.usage() is None  # the tracker has stopped
    row = pd.read_csv(out).iloc[0]
    for key in ACCUMULATED_COLUMNS:  # this process's final totals plus the earlier ones
        assert row[key] >= second[key] + earlier.get(key, 0.0) - 1e-12
    assert row["duration_s"] < second["duration_s"] + earlier["duration_s"] + 60
    parts = row[["cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh"]].sum()
    assert parts == pytest.approx(row["energy_kwh"], rel=1e-6)

    with (
        pytest.raises(ValueError, match=r"earlier totals \['n_samples'\] are not additive"),
        track("finetune", tmp_path / "bad.csv", country_iso_code="FRA") as bad,
    ):
        bad.earlier = {"n_samples": 3.0}
    assert not (tmp_path / "bad.csv").exists()
