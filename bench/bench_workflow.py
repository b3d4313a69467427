"""The default workflow from a clean results/ folder, and a no-op rerun, timed side by side.

Targets (issue: results aggregation): the whole default workflow under 10 minutes on a
2-core CPU; a rerun with nothing to do under 5 seconds of Snakemake time.

With ``--compare-to REV`` the same two runs are made first for another revision of this
repository (checked out into a temporary git worktree, its own package put first on
PYTHONPATH, so its rules run its code), and the ratios are printed.

Usage: python bench/bench_workflow.py [--cores 2] [--workdir DIR] [--compare-to REV]
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


def snakemake(repo: Path, workdir: Path, cores: int) -> float:
    """Seconds of ``snakemake --cores CORES all`` on ``repo``'s Snakefile and config.yaml."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(repo / "config.yaml"), "--cores", str(cores), "--quiet", "all",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # The rules' `layerprune` command imports the package of `repo` (ahead of the editable install).
        "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p),
    }
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(repo: Path, workdir: Path, cores: int) -> tuple[float, float, int]:
    """(full run, no-op rerun, jobs) from an empty ``workdir``."""
    full = snakemake(repo, workdir, cores)
    noop = snakemake(repo, workdir, cores)
    jobs = sum(1 for _ in (workdir / "benchmarks").rglob("*.tsv"))
    return full, noop, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--compare-to", metavar="REV", default=None, help="also time this git revision, first")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="layerprune-bench-"))
    rows = []
    if args.compare_to:
        other = workdir / f"worktree-{args.compare_to}"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(other), args.compare_to],
                       check=True, capture_output=True)  # fmt: skip
        try:
            rows.append((args.compare_to, *measure(other, workdir / f"run-{args.compare_to}", args.cores)))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)], check=False)
    rows.append(("this tree", *measure(REPO, workdir / "run", args.cores)))
    print("| revision | jobs | default workflow s (target < 600) | no-op rerun s (target < 5) |\n|---|---|---|---|")
    for name, full, noop, jobs in rows:
        print(f"| {name} | {jobs} | {full:.0f} | {noop:.1f} |")
    if len(rows) == 2:
        (_, old_full, old_noop, _), (_, full, noop, _) = rows
        print(f"speed-up: full run {old_full / full:.2f}x, no-op rerun {old_noop / noop:.2f}x")
    _, full, noop, _ = rows[-1]
    print(f"this tree: full run {full / 600:.2f} of its budget, no-op {noop / 5:.2f} of its budget (workdir {workdir})")


if __name__ == "__main__":
    main()
