"""The configurable automatic choice of k (``pruning.segment_threshold``) as the segment stage applies it."""

from __future__ import annotations

import numpy as np
import pytest

from layerprune.cli import build_parser
from layerprune.segmentation import DEFAULT_THRESHOLD, segment_units


def _rows() -> np.ndarray:
    """Nine units in three blocks of rows with unequal separations, so different thresholds pick different k."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 4.0]])
    return np.vstack([np.repeat(c[None, :], 3, axis=0) for c in centres]) + 0.05 * rng.normal(size=(9, 2))


@pytest.mark.parametrize("threshold", [0.001, 0.01, 0.05, DEFAULT_THRESHOLD, 0.5, 0.9])
def test_auto_k_is_the_smallest_k_meeting_the_threshold(threshold: float) -> None:
    units = [f"layer{i // 3 + 1}.{i % 3}" for i in range(9)]
    out = segment_units(units, _rows(), "auto", threshold)
    losses = np.asarray(out["losses"])
    expected = next(k for k in range(1, 10) if losses[k - 1] <= threshold * losses[0])
    assert out["k"] == expected
    assert out["threshold"] == threshold
    assert out["rule"].startswith("auto")
    assert len(out["segment_units"]) == expected
    assert [u for seg in out["segment_units"] for u in seg] == units


def test_thresholds_give_different_segmentations() -> None:
    """loss(1) = 34 (three blocks of 3 rows at (0,0), (1,0), (1,4)); splitting off the far block leaves 1.5
    (4.4%), splitting the near ones too leaves only the noise."""
    units = [f"u{i}" for i in range(9)]
    ks = [segment_units(units, _rows(), "auto", t)["k"] for t in (0.5, DEFAULT_THRESHOLD, 0.01)]
    assert ks == [2, 2, 3], ks


def test_segment_command_takes_the_threshold() -> None:
    args = build_parser("segment").parse_args(
        ["segment", "--representations", "r.npz", "--threshold", "0.25", "--out", "s.json"]
    )
    assert args.threshold == 0.25
    default = build_parser("segment").parse_args(["segment", "--representations", "r.npz", "--out", "s.json"])
    assert default.threshold == DEFAULT_THRESHOLD


def test_bad_threshold_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        segment_units([f"u{i}" for i in range(9)], _rows(), "auto", 1.0)
