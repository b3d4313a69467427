"""A stand-in for `layerprune train`, used by the SLURM tests' toy workflow.

It behaves like the real trainer where the cluster tests care: it runs a number of "epochs",
writes a resume checkpoint after each one (atomically), resumes from the newest checkpoint when
restarted (after `scancel`, a node failure or a time limit), and writes its output only once,
atomically, at the end. The "training" is a deterministic integer recurrence, so an interrupted
and resumed run must give exactly the bytes of an uninterrupted one. Standard library only, so
that a job step starts in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

LOG = logging.getLogger("toy_train")

# Environment variables that show where a job ran and which GPU SLURM granted it.
_JOB_ENV = ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES")


def _write_json_atomic(path: Path, obj: dict) -> None:
    """Write `obj` as JSON to `path` via a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _step(state: int, epoch: int) -> int:
    """One deterministic "epoch" (a 61-bit linear congruential update)."""
    return (state * 6364136223846793005 + 1442695040888963407 + epoch) % (2**61 - 1)


def train(
    out: Path, ckpt_dir: Path, epochs: int, seconds_per_epoch: float, seed: int
) -> None:
    """Run the toy training loop, resuming from the newest checkpoint in `ckpt_dir`.

    Args:
        out: Final output (JSON), written once at the end.
        ckpt_dir: Resume checkpoints `epoch<k>.json`. Not a Snakemake output on purpose:
            Snakemake deletes the outputs of a failed job, and the checkpoints must survive it.
        epochs: Number of epochs in total.
        seconds_per_epoch: Sleep per epoch, so that a test can cancel a running job.
        seed: Initial state.
    """
    for name in _JOB_ENV:
        LOG.info("%s=%s", name, os.environ.get(name, ""))
    start, state = 0, seed
    done = sorted(ckpt_dir.glob("epoch*.json"), key=lambda p: int(p.stem[5:]))
    if done:
        ckpt = json.loads(done[-1].read_text())
        start, state = ckpt["epoch"], ckpt["state"]
        LOG.info("resuming from epoch %d (%s)", start, done[-1])
    for epoch in range(start, epochs):
        time.sleep(seconds_per_epoch)
        state = _step(state, epoch)
        _write_json_atomic(
            ckpt_dir / f"epoch{epoch + 1}.json", {"epoch": epoch + 1, "state": state}
        )
        LOG.info("epoch %d/%d done", epoch + 1, epochs)
    _write_json_atomic(out, {"epochs": epochs, "seed": seed, "state": state})


def main() -> None:
    """Parse arguments and train."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ckpt-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seconds-per-epoch", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train(args.out, args.ckpt_dir, args.epochs, args.seconds_per_epoch, args.seed)


if __name__ == "__main__":
    main()
