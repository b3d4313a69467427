"""The causal-LM figures: perplexity against layers removed, and scores beside drop-one-layer perplexity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from results_tree import assert_written

from layerprune.figures import FigureInputs, make_figures, perplexity_vs_layers, scores_vs_drop_one
from layerprune.io import write_csv

LAYERS = [f"layers.{i}" for i in range(4)]


def _summary() -> pd.DataFrame:
    """The columns perplexity_vs_layers reads, plus what read_summary requires."""
    rows = [{"method": "baseline", "stage": "baseline", "blocks_removed": 0, "perplexity": 4.0, "ood_perplexity": 50.0}]
    for method, factor in (("cka", 2.0), ("random", 3.0)):
        for n in (1, 2):
            for stage, heal in (("pruned", 1.0), ("finetuned", 0.8)):
                ppl = 4.0 * factor**n * heal
                rows.append(
                    {
                        "method": method,
                        "stage": stage,
                        "blocks_removed": n,
                        "perplexity": ppl,
                        "ood_perplexity": 10 * ppl,
                    }
                )
    frame = pd.DataFrame(rows)
    frame["budget"] = ["none"] + [f"blocks{n}" for n in frame["blocks_removed"][1:]]
    frame["seed"] = [pd.NA] + [0] * (len(frame) - 1)
    for column in ("macs_reduction", "params_reduction", "top1", "top1_delta"):
        frame[column] = 0.5
    return frame


def _drop_one() -> pd.DataFrame:
    return pd.DataFrame({"unit": ["none", *LAYERS], "position": range(-1, 4), "perplexity": [4.0, 60.0, 9.0, 7.0, 8.0]})


def test_perplexity_lines_start_at_the_intact_model() -> None:
    fig = perplexity_vs_layers(_summary())
    in_domain = fig.axes[0]
    lines = {line.get_label(): line for line in in_domain.get_lines()}
    assert in_domain.get_yscale() == "log"
    cka = next(line for line in in_domain.get_lines() if list(line.get_ydata()) == [4.0, 8.0, 16.0])  # pruned, dashed
    assert cka.get_linestyle() == "--" and list(cka.get_xdata()) == [0, 1, 2]
    assert len(in_domain.get_lines()) == 4 and "CKA" in lines  # 2 methods x (pruned, healed)
    assert [line.get_ydata()[0] for line in fig.axes[1].get_lines()] == [50.0] * 4


def test_scores_are_scaled_per_criterion_beside_the_drop_one_line() -> None:
    scores = {
        m: pd.DataFrame({"unit": LAYERS, "score": s})
        for m, s in (("cka", [4, 1, 2, 3]), ("angular", [0.5, 0.5, 0.5, 0.5]))
    }
    fig = scores_vs_drop_one(scores, _drop_one(), "blocks1")
    bars = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(bars, [1.0, 0.0, 1 / 3, 2 / 3])
    assert [p.get_height() for p in fig.axes[1].patches] == [0.0] * 4  # a constant score stays flat
    twin = fig.axes[2]
    np.testing.assert_allclose(twin.get_lines()[0].get_ydata(), [60.0, 9.0, 7.0, 8.0])


def test_language_figures_are_written_in_every_format(tmp_path) -> None:
    summary, drop_one = tmp_path / "summary.csv", tmp_path / "drop_one.csv"
    write_csv(summary, _summary())
    write_csv(drop_one, _drop_one())
    scores = tmp_path / "pruned/cka/blocks1/seed0/scores.csv"
    write_csv(
        scores,
        pd.DataFrame(
            {
                "unit": LAYERS,
                "stage": 0,
                "score": [4, 1, 2, 3],
                "rank": [4, 1, 2, 3],
                "removed": [False, True, False, False],
            }
        ),
    )
    out = tmp_path / "figures"
    names = ["perplexity_vs_layers", "scores_vs_drop_one"]
    given = FigureInputs(summary=summary, scores=[scores], drop_one=drop_one)
    written = make_figures(given, out, only=names, formats=["png", "pdf"], dpi=40)
    assert_written(written, names, out)
