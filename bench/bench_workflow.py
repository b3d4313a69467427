"""The default workflow from a clean results/ folder, and a no-op rerun, timed side by side.

Targets (issue: results aggregation): the whole default workflow under 10 minutes on a
2-core CPU; a rerun with nothing to do under 5 seconds of Snakemake time.

Usage: python bench/bench_workflow.py [--cores 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, cores: int, *args: str) -> float:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(REPO / "config.yaml"), "--cores", str(cores), "--quiet", "all", *args,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="layerprune-bench-"))
    full = snakemake(workdir, args.cores)
    noop = snakemake(workdir, args.cores)
    jobs = sum(1 for _ in (workdir / "benchmarks").rglob("*.tsv"))
    print("| run | seconds | target |\n|---|---|---|")
    print(f"| default workflow from clean results/ ({jobs} jobs, {args.cores} cores) | {full:.0f} | < 600 |")
    print(f"| no-op rerun | {noop:.1f} | < 5 |")
    print(f"full run {full / 600:.2f} of its budget; no-op {noop / 5:.2f} of its budget (workdir {workdir})")


if __name__ == "__main__":
    main()
