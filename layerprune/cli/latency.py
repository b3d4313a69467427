"""``layerprune latency``: latency and inference energy of several checkpoints, timed one after another.

Run it alone (the workflow's rule evaluate_latency claims every core so that nothing runs beside it): every model is
timed with the same threads, in rounds, and its inference energy is tracked over a fixed wall time per window. Writes
one row per model (latency median and quartiles per batch; energy per image), keyed by each file's workflow path.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from layerprune.cli import plain_text
from layerprune.cli._common import add_tracking_args, section_arg

logger = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> None:
    import pandas as pd

    from layerprune.io import write_csv
    from layerprune.models import load_checkpoint
    from layerprune.timing import LATENCY_COLUMNS, TimingSettings, measure_models, model_key

    keys = [model_key(p) for p in args.models]
    labels = [k["model"] for k in keys]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--models names a model twice: {sorted(labels)}; pass each model.pt once")
    section = args.evaluation
    settings = TimingSettings(
        batch_size=section["latency_batch_size"],
        repeats=section["latency_repeats"],
        rounds=section["latency_rounds"],
        warmup=section["latency_warmup"],
        threads=section["latency_threads"],
        energy_seconds=section["energy_seconds"],
        energy_windows=section["energy_windows"],
    )
    checkpoints = {label: load_checkpoint(path) for label, path in zip(labels, args.models)}
    sizes = {tuple(c.preprocessing["input_size"]) for c in checkpoints.values()}
    if len(sizes) != 1:
        raise ValueError(f"the models take different input sizes {sorted(sizes)}; time models of one experiment")
    table = measure_models(
        {label: c.model for label, c in checkpoints.items()},
        next(iter(sizes)),
        settings,
        country_iso_code=args.country,
        emissions=not args.no_emissions,
    )
    runs = pd.DataFrame(keys)
    table = runs.merge(table.drop(columns=["method", "budget", "seed", "stage"]), on="model", how="left")
    write_csv(args.out, table.reindex(columns=list(LATENCY_COLUMNS)))
    logger.info("wrote %s (%d models)", args.out, len(table))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "latency",
        help="time several checkpoints one after another (latency and inference energy per image)",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models",
        nargs="+",
        type=Path,
        required=True,
        metavar="FILE",
        help="model.pt files in the workflow layout (baseline/model.pt, <stage>/<method>/<budget>/seed<N>/model.pt)",
    )
    p.add_argument(
        "--evaluation",
        type=section_arg("evaluation"),
        default="{}",
        help="the config's evaluation section as JSON (latency_batch_size, latency_repeats, latency_rounds, "
        "latency_warmup, latency_threads, energy_seconds, energy_windows; default: the schema's)",
    )
    p.add_argument("--out", type=Path, required=True, help="latency.csv to write (one row per model)")
    add_tracking_args(p)
    p.set_defaults(func=_run)
