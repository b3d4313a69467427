"""``layerprune summarize``: one tidy ``summary.csv`` of an experiment, and the main table (Markdown, LaTeX, HTML).

Every input is an explicit file list (as Snakemake passes them); per-run files are matched to their
(method, budget, seed) by their path, .../<method>/<budget>/seed<N>/<file>, so the lists need no common order.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from layerprune.cli import plain_text
from layerprune.summary import (
    build_summary,
    collect_runs,
    write_main_tables,
    write_summary,
)

logger = logging.getLogger(__name__)


def _one(paths: list[Path], flag: str) -> Path | None:
    if len(paths) > 1:
        raise ValueError(f"{flag} takes one file, got {len(paths)}: {[str(p) for p in paths]}")
    return paths[0] if paths else None


def _run(args: argparse.Namespace) -> None:
    runs = collect_runs(
        args.pruned_metrics,
        args.plans,
        finetuned_metrics=args.finetuned_metrics,
        finetune_emissions=args.finetune_emissions,
        inference_emissions=args.inference_emissions,
        adversarial=args.adversarial,
        corruptions=args.corruptions,
        pruned_inference_emissions=args.pruned_inference_emissions,
        shortcut=args.shortcut,
    )
    summary = build_summary(
        args.baseline_metrics,
        runs,
        baseline_train_emissions=args.baseline_train_emissions,
        baseline_inference_emissions=args.baseline_inference_emissions,
        baseline_adversarial=args.baseline_adversarial,
        baseline_corruptions=args.baseline_corruptions,
        latency=_one(args.latency, "--latency"),
        baseline_shortcut=args.baseline_shortcut,
    )
    write_summary(args.out, summary)
    logger.info("wrote %s (%d rows, %d runs)", args.out, len(summary), len(runs))
    for path in write_main_tables(summary, args.table_md, args.table_tex, args.table_html):
        logger.info("wrote %s", path)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summarize",
        help="join every result of an experiment into summary.csv and the main table",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = {"nargs": "*", "type": Path, "default": [], "metavar": "FILE"}
    p.add_argument("--baseline-metrics", type=Path, required=True, help="baseline/metrics.json")
    p.add_argument(
        "--baseline-train-emissions",
        type=Path,
        default=None,
        help="baseline/emissions_train.csv (training energy, the reference of fine-tuning costs)",
    )
    p.add_argument("--baseline-inference-emissions", type=Path, default=None, help="baseline/emissions_inference.csv")
    p.add_argument("--baseline-adversarial", type=Path, default=None, help="robustness/baseline/adversarial.csv")
    p.add_argument(
        "--baseline-corruptions",
        type=Path,
        default=None,
        help="robustness/baseline/corruptions.csv (the reference of every run's mCE)",
    )
    p.add_argument("--baseline-shortcut", type=Path, default=None, help="robustness/baseline/shortcut.csv")
    p.add_argument(
        "--pruned-metrics",
        **files,
        required=True,
        help="pruned/<method>/<budget>/seed<N>/metrics.json of every run (one run per file)",
    )
    p.add_argument("--plans", **files, required=True, help="pruned/<method>/<budget>/seed<N>/plan.json of every run")
    p.add_argument("--finetuned-metrics", **files, help="finetuned/<method>/<budget>/seed<N>/metrics.json")
    p.add_argument("--finetune-emissions", **files, help="finetuned/.../emissions_finetune.csv")
    p.add_argument(
        "--inference-emissions",
        **files,
        help="finetuned/.../emissions_inference.csv (the fine-tuned models' evaluation)",
    )
    p.add_argument(
        "--pruned-inference-emissions",
        **files,
        help="pruned/.../emissions_inference.csv (the pruned models' evaluation, before fine-tuning)",
    )
    p.add_argument(
        "--adversarial", **files, help="robustness/<method>/<budget>/seed<N>/adversarial.csv (of each run's last model)"
    )
    p.add_argument("--corruptions", **files, help="robustness/<method>/<budget>/seed<N>/corruptions.csv")
    p.add_argument(
        "--shortcut", **files, help="robustness/<method>/<budget>/seed<N>/shortcut.csv (of each run's last model)"
    )
    p.add_argument(
        "--latency",
        **files,
        help="latency/latency.csv of `layerprune latency` (latency with its spread, energy per image); at most one "
        "file, none for experiments without the timing step (causal language models)",
    )
    p.add_argument("--out", type=Path, required=True, help="summary.csv to write")
    p.add_argument("--table-md", type=Path, default=None, help="main table as Markdown (tables/main.md)")
    p.add_argument("--table-tex", type=Path, default=None, help="main table as LaTeX (tables/main.tex)")
    p.add_argument("--table-html", type=Path, default=None, help="main table as an HTML page (tables/main.html)")
    p.set_defaults(func=_run)
