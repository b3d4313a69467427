"""Derive a Snakemake profile for the local test cluster from `profiles/slurm/config.yaml`.

The test profile keeps everything the real profile says about the rules (which rules get a GPU,
their threads, the default resources), so the SLURM test exercises the profile users run, and
changes only what a one-node test cluster needs:

- partition: the test cluster's; no account (there is no accounting database);
- memory, CPUs and threads capped to what the node has, `gpu_model` dropped (the fake GPU has no
  type), so that no job waits forever for resources the node cannot give;
- status queries with `squeue` (with accounting off, `sacct` has no job records and the plugin
  would wait forever), polled after 1 s instead of 40 s;
- SLURM logs of successful jobs kept (the test reads them), no retries (a cancelled job must stay
  cancelled), a short latency-wait (one machine, no network file system).

Usage: python tests/slurm/make_test_profile.py OUT_DIR --slurm-conf DIR/slurm.conf
(then `snakemake --profile OUT_DIR ...` with SLURM_CONF=DIR/slurm.conf).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"

# Settings that only make sense on the test cluster (see the module docstring).
TEST_OVERRIDES: dict[str, Any] = {
    "jobs": 4,
    "slurm-no-account": True,
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 1,
    "slurm-keep-successful-logs": True,
    "retries": 0,
    "latency-wait": 5,
}


def read_node(slurm_conf: Path) -> tuple[str, int, int]:
    """Read the partition name, CPUs and memory (MB) of the one-node cluster in `slurm_conf`.

    Raises:
        ValueError: If the file lacks a NodeName line with CPUs and RealMemory or a PartitionName.
    """
    text = slurm_conf.read_text()
    node = re.search(r"^NodeName=.*\bCPUs=(\d+).*\bRealMemory=(\d+)", text, re.MULTILINE)
    part = re.search(r"^PartitionName=(\S+)", text, re.MULTILINE)
    if node is None or part is None:
        raise ValueError(
            f"{slurm_conf} has no 'NodeName=... CPUs=N RealMemory=M' or 'PartitionName=' line; "
            "expected a config written by tests/slurm/start_cluster.sh"
        )
    return part.group(1), int(node.group(1)), int(node.group(2))


def adapt_profile(profile: dict[str, Any], partition: str, cpus: int, mem_mb: int) -> dict[str, Any]:
    """Return a copy of `profile` adapted to a one-node cluster (see the module docstring).

    Args:
        profile: The parsed `profiles/slurm/config.yaml`.
        partition: Partition of the test cluster.
        cpus: CPUs of its node.
        mem_mb: Memory of its node in MB; one job gets at most half of it.
    """
    out = dict(profile)
    mem_cap = max(mem_mb // 2, 100)
    defaults = dict(out.get("default-resources") or {})
    defaults["slurm_partition"] = partition
    defaults.pop("slurm_account", None)
    if isinstance(defaults.get("mem_mb"), int):
        defaults["mem_mb"] = min(defaults["mem_mb"], mem_cap)
    out["default-resources"] = defaults
    rules: dict[str, dict[str, Any]] = {}
    for rule, res in (out.get("set-resources") or {}).items():
        res = dict(res)
        res.pop("gpu_model", None)
        res.pop("slurm_partition", None)
        res.pop("slurm_account", None)
        if isinstance(res.get("mem_mb"), int):
            res["mem_mb"] = min(res["mem_mb"], mem_cap)
        if isinstance(res.get("cpus_per_task"), int):
            res["cpus_per_task"] = min(res["cpus_per_task"], cpus)
        rules[rule] = res
    out["set-resources"] = rules
    out["set-threads"] = {r: min(int(t), cpus) for r, t in (out.get("set-threads") or {}).items()}
    # Every other rule's threads too (compute rules default to 8 on a cluster): a job asking
    # for more CPUs than the node has would pend forever with reason PartitionConfig.
    out["max-threads"] = cpus
    out.update(TEST_OVERRIDES)
    return out


def write_test_profile(out_dir: Path, slurm_conf: Path, source: Path = SLURM_PROFILE) -> Path:
    """Write the test profile to `out_dir/config.yaml` (atomically) and return that path."""
    partition, cpus, mem_mb = read_node(slurm_conf)
    profile = yaml.safe_load(source.read_text())
    if not isinstance(profile, dict):
        raise TypeError(f"{source} does not hold a YAML mapping; expected a Snakemake profile")
    adapted = adapt_profile(profile, partition, cpus, mem_mb)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.yaml"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".config.yaml.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# Generated from {source} by {Path(__file__).name}; do not edit.\n")
        yaml.safe_dump(adapted, fh, sort_keys=False)
    os.replace(tmp, path)
    LOG.info("wrote %s (partition %s, %d CPUs, %d MB)", path, partition, cpus, mem_mb)
    return path


def main() -> None:
    """Command line: write the test profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--slurm-conf", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    write_test_profile(args.out_dir, args.slurm_conf)


if __name__ == "__main__":
    main()
