"""A stage stopped by SIGTERM (scancel, Snakemake) leaves no half-written file behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

# A stand-in for a stage caught in the middle of an atomic write: the command's own signal
# set-up, then a write that never finishes until the process is stopped.
WRITER = textwrap.dedent(
    """
    import sys, time
    from layerprune.cli import exit_on_sigterm
    from layerprune.io import atomic_path

    exit_on_sigterm()
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half of an artifact")
        print("writing", flush=True)
        time.sleep(60)
    """
)


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        assert [p.name for p in tmp_path.iterdir()] != []  # the temporary file is there
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its temporary
