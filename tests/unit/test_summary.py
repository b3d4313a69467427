"""summary.csv and the main table from a small, consistent fake result tree (tests/unit/figures/results_tree.py)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from layerprune.cli import summarize as summarize_cli
from layerprune.summary import (
    SUMMARY_COLUMNS,
    build_summary,
    collect_runs,
    main_table,
    main_table_latex,
    main_table_markdown,
    read_emissions,
    read_summary,
    run_key,
    write_main_tables,
    write_summary,
)


def _load_tree_module():
    # the builder lives beside the figure tests, which use it too; tests/ has no packages, so load it by path
    path = Path(__file__).parent / "figures" / "results_tree.py"
    spec = importlib.util.spec_from_file_location("results_tree", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("results_tree", module)
    spec.loader.exec_module(module)
    return module


rt = _load_tree_module()


def _summary(tree, robustness: bool = True) -> pd.DataFrame:
    b = tree.baseline
    return build_summary(
        b["metrics"],
        tree.runs,
        baseline_train_emissions=b["train_emissions"],
        baseline_inference_emissions=b["inference_emissions"],
        baseline_adversarial=tree.adversarial[0] if robustness else None,
        baseline_corruptions=tree.corruptions[0] if robustness else None,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return rt.make_tree(tmp_path_factory.mktemp("res"), seeds=(0, 1))


@pytest.fixture(scope="module")
def summary(tree) -> pd.DataFrame:
    return _summary(tree)


def _row(summary, method, budget, seed, stage):
    rows = summary[
        (summary["method"] == method)
        & (summary["budget"] == budget)
        & (summary["seed"] == seed)
        & (summary["stage"] == stage)
    ]
    assert len(rows) == 1
    return rows.iloc[0]


def test_one_row_per_run_and_stage_plus_baseline(summary):
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    runs = summary[summary["stage"] != "baseline"]
    assert len(runs) == len(rt.METHODS) * len(rt.BUDGETS) * 2 * 2  # methods x budgets x seeds x stages
    assert not runs.duplicated(["method", "budget", "seed", "stage"]).any()
    base = summary[summary["stage"] == "baseline"]
    assert len(base) == 1
    assert (base["method"].iloc[0], base["budget"].iloc[0]) == ("baseline", "none")


def test_reductions_and_deltas_against_the_baseline(summary):
    row = _row(summary, "sglp", "macs40", 1, "finetuned")
    assert row["blocks_removed"] == 4
    assert row["macs_reduction"] == pytest.approx(0.4)
    assert row["params_reduction"] == pytest.approx(0.4)
    assert row["top1"] == pytest.approx(rt.finetuned_top1("sglp", "macs40", 1))
    assert row["top1_delta"] == pytest.approx(100 * (rt.finetuned_top1("sglp", "macs40", 1) - rt.BASE_TOP1))
    assert row["blocks_per_stage"] == "1-1-3"  # sglp removes layer1.1, 1.2, 2.1, 2.2
    assert row["removed_units"].split(";") == rt.removed_units("sglp", "macs40")
    pruned = _row(summary, "cka", "blocks2", 0, "pruned")
    assert pruned["top1_delta"] == pytest.approx(100 * (rt.pruned_top1("cka", "blocks2", 0) - rt.BASE_TOP1))


def test_energy_robustness_and_mce(summary):
    row = _row(summary, "cka", "macs40", 0, "finetuned")
    assert row["finetune_energy_kwh"] == pytest.approx(0.2)
    assert row["finetune_co2_kg"] == pytest.approx(0.08)
    assert row["inference_energy_kwh"] == pytest.approx(0.006)
    assert row["energy_source"] == rt.CPU_SOURCE
    drop = rt.BASE_TOP1 - rt.finetuned_top1("cka", "macs40", 0)
    adv = [rt.adv_accuracy(drop, e, a) for a, _, eps in rt.ATTACKS for e in eps if e > 0]
    assert row["adv_accuracy_mean"] == pytest.approx(sum(adv) / len(adv))
    # mCE: mean over corruptions of sum_s err / sum_s err_baseline
    ces = []
    for corruption, _ in rt.CORRUPTIONS:
        err = sum(1 - rt.corruption_accuracy(drop, corruption, s) for s in (1, 3, 5))
        err_b = sum(1 - rt.corruption_accuracy(0.0, corruption, s) for s in (1, 3, 5))
        ces.append(err / err_b)
    assert row["mce"] == pytest.approx(sum(ces) / len(ces))
    assert row["mce"] > 1.0  # the pruned model errs more than its parent
    base = summary[summary["stage"] == "baseline"].iloc[0]
    assert base["mce"] == 1.0
    assert base["train_energy_kwh"] == pytest.approx(0.5)
    # no NaN where a value is expected: every finetuned row has all of these
    finetuned = summary[summary["stage"] == "finetuned"]
    expected = [
        "params",
        "macs",
        "top1",
        "top1_delta",
        "latency_ms",
        "finetune_energy_kwh",
        "inference_energy_kwh",
        "adv_accuracy_mean",
        "corruption_accuracy_mean",
        "mce",
    ]
    assert not finetuned[expected].isna().any().any()


def test_pruned_rows_have_nan_where_measured_only_after_finetuning(summary):
    pruned = summary[summary["stage"] == "pruned"]
    assert pruned["finetune_energy_kwh"].isna().all()
    assert pruned["mce"].isna().all()
    assert not pruned[["top1", "macs_reduction", "latency_ms"]].isna().any().any()


def test_without_finetuning_robustness_goes_to_the_pruned_row(tmp_path):
    tree = rt.make_tree(tmp_path, finetune=False, tracked=False)
    summary = _summary(tree)
    assert set(summary["stage"]) == {"baseline", "pruned"}
    pruned = summary[summary["stage"] == "pruned"]
    assert not pruned["mce"].isna().any()
    # header-only emissions (tracking off) mean "not measured", never zero
    assert math.isnan(summary.iloc[0]["inference_energy_kwh"])
    assert summary["energy_source"].isna().all()


def test_without_robustness_files(tmp_path):
    tree = rt.make_tree(tmp_path, robustness=False)
    summary = _summary(tree, robustness=False)
    assert summary["mce"].isna().all() and summary["adv_accuracy_mean"].isna().all()
    assert not summary[summary["stage"] == "finetuned"]["finetune_energy_kwh"].isna().any()


def test_read_emissions_sums_phases(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        rt.EMISSIONS_HEADER + "a,1,0.1,0.05,,,,x,,,USA,False,offline,3\nb,1,0.2,0.1,,,,x,,,USA,False,offline,3\n"
    )
    got = read_emissions(path)
    assert got["energy_kwh"] == pytest.approx(0.3) and got["co2_kg"] == pytest.approx(0.15)
    assert got["source"] == "x"


def test_collect_runs_groups_flat_lists_by_path(tree):
    pruned = [r["pruned_metrics"] for r in tree.runs]
    plans = [r["plan"] for r in tree.runs][::-1]  # order does not matter
    fine = [r["finetuned_metrics"] for r in tree.runs]
    runs = collect_runs(pruned, plans, finetuned_metrics=fine, adversarial=tree.adversarial[1:])
    assert len(runs) == len(tree.runs)
    first = runs[0]
    assert (first.method, first.budget, first.seed) == ("cka", "blocks2", 0)
    assert first.plan.parent == first.pruned_metrics.parent
    assert first.adversarial is not None and first.corruptions is None
    with pytest.raises(ValueError, match="no plan"):
        collect_runs(pruned, plans[1:])
    with pytest.raises(ValueError, match="two pruned_metrics"):
        collect_runs(pruned + pruned[:1], plans)


def test_run_key_rejects_paths_off_the_layout(tmp_path):
    assert run_key("r/pruned/cka/blocks2/seed3/metrics.json") == ("cka", "blocks2", 3)
    with pytest.raises(ValueError, match="seed<N>"):
        run_key(tmp_path / "metrics.json")
    with pytest.raises(ValueError, match="budget"):
        run_key("r/pruned/cka/blocks2.5/seed3/metrics.json")


def test_bad_inputs_name_the_file(tree, tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"top1": 0.5}')
    with pytest.raises(ValueError, match="lacks"):
        build_summary(bad, [])
    with pytest.raises(FileNotFoundError):
        build_summary(tmp_path / "none.json", [])
    with pytest.raises(ValueError, match="listed twice"):
        build_summary(tree.baseline["metrics"], tree.runs[:1] * 2)


def test_main_table_and_writers(summary, tmp_path):
    table = main_table(summary)
    assert table["method"].iloc[0] == "baseline"
    assert len(table) == 1 + len(rt.METHODS) * len(rt.BUDGETS)
    row = table[(table["method"] == "cka") & (table["budget"] == "blocks2")].iloc[0]
    expected = [100 * rt.finetuned_top1("cka", "blocks2", s) for s in (0, 1)]
    assert row["top1_pct"] == pytest.approx(sum(expected) / 2)
    assert row["top1_pct_std"] == pytest.approx(pd.Series(expected).std())
    assert row["macs_reduction_pct"] == pytest.approx(20.0)
    assert row["stage"] == "finetuned"
    md, tex = main_table_markdown(table), main_table_latex(table)
    for label in ("Baseline", "CKA", "SGLP"):
        assert label in md and label in tex
    assert "89.45 ± 0.07" in md
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "–" not in tex
    path = write_summary(tmp_path / "summary.csv", summary)
    back = read_summary(path)
    assert len(back) == len(summary) and back["seed"].isna().sum() == 1


def test_cli_writes_summary_and_tables(tree, tmp_path):
    out = tmp_path / "summary.csv"
    fine = [r for r in tree.runs if "finetuned_metrics" in r]
    argv = [
        "summarize",
        "--baseline-metrics",
        str(tree.baseline["metrics"]),
        "--baseline-corruptions",
        str(tree.corruptions[0]),
        "--pruned-metrics",
        *[str(r["pruned_metrics"]) for r in tree.runs],
        "--plans",
        *[str(r["plan"]) for r in tree.runs],
        "--finetuned-metrics",
        *[str(r["finetuned_metrics"]) for r in fine],
        "--finetune-emissions",
        *[str(r["finetune_emissions"]) for r in fine],
        "--corruptions",
        *[str(p) for p in tree.corruptions[1:]],
        "--adversarial",
        "--out",
        str(out),
        "--table-md",
        str(tmp_path / "tables/main.md"),
        "--table-tex",
        str(tmp_path / "tables/main.tex"),
    ]
    # only this subcommand's parser: `layerprune` itself imports every stage (torch, torchvision...)
    parser = argparse.ArgumentParser()
    summarize_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.func(args)
    summary = read_summary(out)
    assert len(summary) == 1 + 2 * len(tree.runs)
    assert not summary[summary["stage"] == "finetuned"]["mce"].isna().any()
    assert summary[summary["stage"] == "finetuned"]["adv_accuracy_mean"].isna().all()  # not given
    assert "SGLP" in (tmp_path / "tables/main.md").read_text()
    assert (tmp_path / "tables/main.tex").stat().st_size > 0


def test_pruned_rows_carry_the_pruned_models_inference_energy(tmp_path):
    """Each stage's row reports the energy of evaluating that stage's model (pruned: before fine-tuning)."""
    tree = rt.make_tree(tmp_path, seeds=(0,))
    pruned = [r["pruned_metrics"] for r in tree.runs]
    energies = {Path(p).parent: 0.001 * (i + 1) for i, p in enumerate(pruned)}
    pruned_emissions = [rt._emissions(folder / "emissions_inference.csv", e) for folder, e in energies.items()]
    runs = collect_runs(
        pruned,
        [r["plan"] for r in tree.runs],
        finetuned_metrics=[r["finetuned_metrics"] for r in tree.runs],
        inference_emissions=[r["inference_emissions"] for r in tree.runs],
        pruned_inference_emissions=pruned_emissions,
    )
    summary = build_summary(tree.baseline["metrics"], runs)
    rows = summary[summary["stage"] == "pruned"]
    assert len(rows) == len(pruned)
    expected = {(run.method, run.budget): energies[run.pruned_metrics.parent] for run in runs}
    for _, row in rows.iterrows():
        assert row["inference_energy_kwh"] == pytest.approx(expected[row["method"], row["budget"]])
    assert summary[summary["stage"] == "finetuned"]["inference_energy_kwh"].notna().all()


def test_timing_step_replaces_the_in_job_latency(tree):
    timed = build_summary(tree.baseline["metrics"], tree.runs, latency=tree.latency)
    final = timed[timed["stage"] == "finetuned"]
    for _, row in final.iterrows():
        q1, med, q3 = rt.latency_ms(row["method"], row["budget"])
        assert (row["latency_q1_ms"], row["latency_ms"], row["latency_q3_ms"]) == pytest.approx((q1, med, q3))
        assert row["inference_j_per_image"] == pytest.approx(rt.energy_j(row["method"], row["budget"])[1])
    # the pruned models are not timed when fine-tuning ran: no number is better than one taken under load
    assert timed[timed["stage"] == "pruned"]["latency_ms"].isna().all()
    assert timed["n_test"].iloc[0] == 500


def test_main_table_names_removed_units_flags_spread_and_has_notes(tree):
    summary = build_summary(tree.baseline["metrics"], tree.runs, latency=tree.latency)
    table = main_table(summary)
    for _, row in table.iloc[1:].iterrows():
        assert row["removed_units"] == ", ".join(rt.removed_units(row["method"], row["budget"]))
    flags = dict(zip(zip(table["method"], table["budget"]), table["latency_within_spread"]))
    assert flags[("sglp", "blocks2")] and not flags[("cka", "blocks2")]
    # one image of 500 is 0.2 points; no delta here is that small, so none is flagged
    assert not table["top1_within_spread"].any()
    md = main_table_markdown(table, summary)
    assert "Top-1 fine-tuned (%)" in md and "Removed units" in md
    assert "on the 500 test images; one image is worth 0.20 accuracy points" in md
    assert "against the unpruned baseline (90.00%)" in md
    assert "64 images on 1 thread(s), 60 timed passes per model" in md and "3 windows of 1 s" in md
    assert "≈ 1.95 [1.85–2.05]" in md  # flagged: overlaps the baseline's 1.90-2.10
    assert "1.60 [1.55–1.65]" in md and "≈ 1.60" not in md
    html = (tmp := tree.root / "main.html") and write_main_tables(summary, None, None, tmp)[0].read_text()
    assert "<caption>Pruning criteria compared" in html and "<table" in html and "one image is worth" in html
    assert "layer3.1, layer3.2" in html
    tex = main_table_latex(table, summary)
    assert r"\caption{" in tex and r"\begin{tabular}" in tex and "≈" not in tex and "–" not in tex


def test_main_table_flags_a_change_below_one_image(tree):
    summary = build_summary(tree.baseline["metrics"], tree.runs)
    summary.loc[summary["stage"] == "finetuned", "top1_delta"] = 0.1  # half an image of 500
    table = main_table(summary)
    assert table["top1_within_spread"].iloc[1:].all() and not table["top1_within_spread"].iloc[0]
    assert "≈ +0.10" in main_table_markdown(table, summary)
