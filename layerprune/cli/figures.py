"""``layerprune figures``: the papers' figures from result files (``summary.csv``, CKA, segments, scores,
robustness CSVs), as ``<out-dir>/<name>.<fmt>``. Absent inputs give a note in place of a panel, never a failure."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from layerprune.cli import plain_text
from layerprune.figures import FIGURES, FORMATS, FigureInputs, make_figures


def _robustness_files(args: argparse.Namespace, name: str) -> list[Path]:
    files = list(getattr(args, name))
    if args.robustness_dir is not None:
        found = sorted(Path(p) for p in glob.glob(str(args.robustness_dir / "**" / f"{name}.csv"), recursive=True))
        files += [p for p in found if p not in files]
    return files


def _run(args: argparse.Namespace) -> None:
    given = FigureInputs(
        summary=args.summary,
        cka=args.cka,
        segments=args.segments,
        scores=args.scores,
        scores_budget=args.scores_budget,
        adversarial=_robustness_files(args, "adversarial"),
        corruptions=_robustness_files(args, "corruptions"),
        compare=args.compare,
        drop_one=args.drop_one,
    )
    make_figures(given, args.out_dir, only=args.only, formats=args.formats, dpi=args.dpi)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "figures",
        help="draw the papers' figures from result files",
        description=plain_text(__doc__) + f"\n\nFigures: {', '.join(FIGURES)}.",
    )
    files = {"nargs": "*", "type": Path, "default": [], "metavar": "FILE"}
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="summary.csv of `layerprune summarize` (accuracy_vs_macs, energy, pareto)",
    )
    p.add_argument("--cka", type=Path, default=None, help="similarity/unit_cka.csv (cka_segments)")
    p.add_argument(
        "--segments",
        type=Path,
        default=None,
        help="segments/segments.json (boxes on cka_segments, boundaries on criterion_scores)",
    )
    p.add_argument("--scores", **files, help="pruned/<method>/<budget>/seed<N>/scores.csv files (criterion_scores)")
    p.add_argument(
        "--scores-budget",
        default=None,
        help="budget whose scores are drawn, e.g. blocks2 (default: the first among --scores)",
    )
    p.add_argument(
        "--adversarial", **files, help="robustness/<model>/adversarial.csv files, robustness/baseline/ included"
    )
    p.add_argument("--corruptions", **files, help="robustness/<model>/corruptions.csv files")
    p.add_argument(
        "--robustness-dir",
        type=Path,
        default=None,
        help="a robustness/ folder: adds every adversarial.csv and corruptions.csv found under it",
    )
    p.add_argument(
        "--compare", **files, help="other experiments' summary.csv (compare_experiments; each named by its folder)"
    )
    p.add_argument("--drop-one", type=Path, default=None, help="drop_one.csv of a causal LM (scores_vs_drop_one)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for <name>.<fmt>")
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(FIGURES),
        default=None,
        metavar="NAME",
        help=f"draw only these figures (default: all that have their inputs); one of {list(FIGURES)}",
    )
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=["png", "pdf"], help="file formats")
    p.add_argument("--dpi", type=int, default=150, help="raster resolution")
    p.set_defaults(func=_run)
