"""The workflow runs through SLURM with `profiles/slurm`, on a real one-node SLURM cluster.

The module starts a cluster on loopback (tests/slurm/start_cluster.sh; needs root and the Debian
packages slurmctld, slurmd, slurm-client, munge), derives a test profile from
profiles/slurm/config.yaml (tests/slurm/make_test_profile.py) and runs the repository's own
workflow (Snakefile, config.yaml with tests/slurm/quick_config.yaml) through it. It checks that

- every compute job really went through SLURM: its SLURM job id from Snakemake's log was
  submitted to and completed by slurmctld (slurmctld.log), and `scontrol show job` names its rule;
- the GPU rules asked SLURM for a GPU (the sbatch call has --gpus=1, the job's TRES has gres:gpu:1),
  and the other rules did not;
- the outputs equal a local run's with profiles/workstation (JSON field by field, minus timings;
  checkpoints tensor by tensor);
- `scancel` of the running baseline training job (`layerprune baseline`, after its first epoch
  checkpoint) fails the Snakemake run and leaves none of the rule's outputs and no temporary file,
  and a rerun of the same command resumes the trainer from that checkpoint and ends with the
  weights of an uninterrupted local run.

Without the SLURM binaries (or without root) the module is skipped, unless LAYERPRUNE_REQUIRE_SLURM=1
(set by CI), in which case it fails. Snakemake's SLURM executor polls job states at growing
intervals (1 s, then +10 s while nothing finishes), so even tiny jobs take tens of seconds.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SLURM_TESTS = REPO / "tests" / "slurm"
sys.path.insert(0, str(SLURM_TESTS))
from make_test_profile import write_test_profile  # noqa: E402  (tests/slurm is put on sys.path just above)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@dataclass(frozen=True)
class WorkflowUnderTest:
    """What to run through SLURM, and how to tell that it ran right.

    Attributes:
        files: Files and folders of the repo copied into each run's working directory.
        snakefile: The Snakefile, relative to the working directory.
        args: Extra Snakemake arguments (config), the same for the SLURM and the local run.
        targets: Targets to build.
        outputs: Output files (relative to the working directory) that both runs must write
            with the same content (see `_assert_same_output`).
        gpu_rules: Rules that must request a GPU.
    """

    files: tuple[str, ...]
    snakefile: str
    args: tuple[str, ...]
    targets: tuple[str, ...]
    outputs: tuple[str, ...]
    gpu_rules: tuple[str, ...]
    # Rules whose local threads are a share of the cores.
    fanout_rules: tuple[str, ...] = ()


# The real workflow (Snakefile, rules, config, workflow profile), trained for one epoch.
REAL = WorkflowUnderTest(
    files=("Snakefile", "config.yaml", "workflow", "envs", "profiles/default"),
    snakefile="Snakefile",
    args=("--configfile", "config.yaml", str(SLURM_TESTS / "quick_config.yaml")),
    targets=("results/quick-digits/baseline/metrics.json",),
    outputs=(
        "results/quick-digits/baseline/model.pt",
        "results/quick-digits/baseline/metrics.json",
    ),
    gpu_rules=("baseline_train",),
    fanout_rules=("evaluate_model",),
)
# The workflow the main test runs.
WORKFLOW = REAL
# The scancel test: the real baseline training alone (rule baseline_train), for RESUME_EPOCHS
# epochs (tests/slurm/resume_config.yaml), so that it can be cancelled after the first.
RESUME_EPOCHS = 3
RESUME = WorkflowUnderTest(
    files=REAL.files,
    snakefile=REAL.snakefile,
    args=(*REAL.args, str(SLURM_TESTS / "resume_config.yaml")),
    targets=("results/quick-digits/baseline/model.pt",),
    # All declared outputs of baseline_train.
    outputs=(
        "results/quick-digits/baseline/model.pt",
        "results/quick-digits/baseline/train_log.csv",
        "results/quick-digits/baseline/emissions_train.csv",
    ),
    gpu_rules=("baseline_train",),
)
# The trainer's resumable state (the rule's `--workdir`, not an output: it survives a failed job).
RESUME_STATE = "results/quick-digits/baseline/train_state/last.pt"
# Output fields that measure the machine rather than the result: not compared.
VOLATILE_KEYS = frozenset({"latency_ms", "latency_device"})

# Bounds, so that a broken cluster fails the test instead of hanging it.
RUN_TIMEOUT_S = 600
CANCEL_WAIT_S = 180


@dataclass(frozen=True)
class Cluster:
    """A running test cluster: its directory, environment and test profile."""

    dir: Path
    env: dict[str, str]
    profile: Path

    @property
    def ctld_log(self) -> str:
        """slurmctld's log so far."""
        return (self.dir / "log" / "slurmctld.log").read_text()

    def scontrol_job(self, job_id: str) -> str:
        """`scontrol show job` of a job (finished jobs stay for MinJobAge = 1 h)."""
        return _run(["scontrol", "show", "job", job_id], env=self.env, timeout=30).stdout


def _run(
    cmd: list[str], *, env: dict[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    # Snakemake runs in its working directory: it loads the workflow profile profiles/default
    # relative to the current directory (and the Snakefile's), so it must be the run's own copy.
    return subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("LAYERPRUNE_REQUIRE_SLURM") == "1":
        pytest.fail(f"LAYERPRUNE_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start the one-node cluster for this module; stop it at the end, also after a failure."""
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [
        b for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol") if not shutil.which(b, path=search)
    ]
    if missing:
        _skip_or_fail(
            f"SLURM binaries not installed ({', '.join(missing)}); "
            "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        _skip_or_fail("the test cluster needs root (slurmd runs jobs as their user, munged as munge)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _skip_or_fail("snakemake-executor-plugin-slurm is not installed (pip install 'layerprune[workflow]')")

    cdir = tmp_path_factory.mktemp("slurm-cluster")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{search}"
    env["SLURM_CONF"] = str(cdir / "slurm.conf")
    env.pop("SNAKEMAKE_PROFILE", None)
    try:
        # Inside the try: a start that fails or times out half-way is stopped too.
        start = _run([str(SLURM_TESTS / "start_cluster.sh"), str(cdir)], env=env, timeout=120)
        if start.returncode != 0:
            pytest.fail(f"start_cluster.sh failed (rc {start.returncode}):\n{start.stderr[-4000:]}")
        profile = write_test_profile(cdir / "profile", cdir / "slurm.conf")
        yield Cluster(dir=cdir, env=env, profile=profile.parent)
    finally:
        stop = _run([str(SLURM_TESTS / "stop_cluster.sh"), str(cdir)], env=env, timeout=120)
        if stop.returncode != 0:
            pytest.fail(f"stop_cluster.sh failed (rc {stop.returncode}):\n{stop.stderr[-4000:]}")


def _workdir(base: Path, wf: WorkflowUnderTest) -> Path:
    base.mkdir(parents=True)
    for rel in wf.files:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, base / rel, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, base / rel)
    return base


def _snakemake(wf: WorkflowUnderTest, workdir: Path, profile: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(workdir / wf.snakefile),
        "--directory", str(workdir),
        "--profile", str(profile),
        *wf.targets, *extra,
        *wf.args,  # last: `--config k=v ...` would swallow targets after it
    ]  # fmt: skip


def _assert_same_output(a: Path, b: Path) -> None:
    """Outputs of two runs agree: JSON field by field (minus timings), checkpoints tensor by tensor."""
    if a.suffix == ".json":
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        if isinstance(ja, dict) and isinstance(jb, dict):
            ja = {k: v for k, v in ja.items() if k not in VOLATILE_KEYS}
            jb = {k: v for k, v in jb.items() if k not in VOLATILE_KEYS}
        assert ja == jb, (a, b)
    elif a.suffix == ".pt":
        from layerprune.models.checkpoint import load_checkpoint

        ca, cb = load_checkpoint(a), load_checkpoint(b)
        assert ca.spec == cb.spec and ca.preprocessing == cb.preprocessing
        sa, sb = ca.model.state_dict(), cb.model.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    else:
        assert a.read_bytes() == b.read_bytes(), (a, b)


def _submitted(log: str) -> dict[str, str]:
    """SLURM job ids submitted in a Snakemake log, mapped to their rule."""
    pattern = r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/"
    return {job_id: rule for job_id, rule in re.findall(pattern, log)}


def _sbatch_calls(log: str) -> dict[str, str]:
    """The sbatch command line per rule, from the plugin's --verbose log."""
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r"sbatch call: (sbatch .*?--comment rule_(\w+?)(?:_wildcards_\S*)? .*)", log)
    }


def test_workflow_runs_through_slurm(cluster: Cluster, tmp_path: Path) -> None:
    wf = WORKFLOW
    local = _workdir(tmp_path / "local", wf)
    res = _run(
        # The cluster profile caps every rule to the node's 2 CPUs; give the local run the
        # same thread counts, so that floating-point sums (the test loss) agree bit for bit.
        _snakemake(
            wf,
            local,
            REPO / "profiles" / "workstation",
            "--cores",
            "2",
            *(["--set-threads", *(f"{rule}=2" for rule in wf.fanout_rules)] if wf.fanout_rules else []),
        ),
        env=cluster.env,
        timeout=RUN_TIMEOUT_S,
        cwd=local,
    )
    assert res.returncode == 0, f"local run failed:\n{res.stderr[-4000:]}"

    remote = _workdir(tmp_path / "slurm", wf)
    cmd = _snakemake(wf, remote, cluster.profile, "--verbose")
    res = _run(cmd, env=cluster.env, timeout=RUN_TIMEOUT_S, cwd=remote)
    log = res.stdout + res.stderr
    (tmp_path / "slurm-run.log").write_text(log)
    assert res.returncode == 0, f"SLURM run failed:\n{log[-6000:]}"

    # Every compute job went through SLURM: slurmctld accepted it and it exited 0.
    jobs = _submitted(log)
    assert jobs, f"no SLURM submissions in the Snakemake log:\n{log[-4000:]}"
    ctld = cluster.ctld_log
    for job_id, rule in jobs.items():
        assert f"_slurm_rpc_submit_batch_job: JobId={job_id} " in ctld, (job_id, rule)
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in ctld, (job_id, rule)
        info = cluster.scontrol_job(job_id)
        assert f"Comment=rule_{rule}" in info
        assert "JobState=COMPLETED" in info
        # The GPU rules asked for a GPU; the others did not.
        assert ("gres:gpu:1" in info) == (rule in wf.gpu_rules), info
    assert set(wf.gpu_rules) <= set(jobs.values()), f"GPU rules {wf.gpu_rules} not submitted: {jobs}"
    calls = _sbatch_calls(log)
    for rule in wf.gpu_rules:
        assert "--gpus=1" in calls[rule].split(), calls[rule]

    # Same results as a local run.
    for rel in wf.outputs:
        _assert_same_output(remote / rel, local / rel)


@contextlib.contextmanager
def _background(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    """Run `cmd` in the background (its output in `log`) within the block; on leaving the block,
    also through a failure, kill its process group if it still runs."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the kill reaches its children
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _running_job(cluster: Cluster, rule: str) -> str:
    """The id of a RUNNING SLURM job of `rule` (by the plugin's comment), or "" if none."""
    queue = _run(["squeue", "-h", "-t", "running", "-o", "%i %k"], env=cluster.env, timeout=30).stdout
    for line in queue.splitlines():
        job_id, _, comment = line.partition(" ")
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"):
            return job_id
    return ""


def _log_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a training log CSV without its wall-clock column."""
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _epoch_done(log_csv: Path) -> bool:
    """Whether a training run's per-epoch log CSV exists and has a row."""
    try:
        return len(log_csv.read_text().splitlines()) >= 2
    except FileNotFoundError:
        return False


def test_scancel_leaves_no_output_and_rerun_resumes(cluster: Cluster, tmp_path: Path) -> None:
    wf = RESUME
    workdir = _workdir(tmp_path / "slurm", wf)
    state = workdir / RESUME_STATE
    epoch_log = workdir / "results/quick-digits/baseline/train_log.csv"
    cmd = _snakemake(wf, workdir, cluster.profile)
    # The uninterrupted reference: a local run with the same config and the thread count of the
    # cluster's 2-CPU node (same CPU arithmetic), in the background while the SLURM runs mostly
    # wait for Snakemake's status polls.
    local = _workdir(tmp_path / "local", wf)
    local_cmd = _snakemake(wf, local, REPO / "profiles" / "workstation", "--cores", "2")
    local_log = tmp_path / "local.log"
    with _background(local_cmd, env=cluster.env, cwd=local, log=local_log) as reference:
        run1_log = tmp_path / "run1.log"
        with _background(cmd, env=cluster.env, cwd=workdir, log=run1_log) as run1:
            # Wait until the training job runs and has finished its first epoch, then cancel it
            # while it trains the next one. The epoch is finished once the per-epoch log (written
            # after last.pt) has a row; it is polled every 50 ms, because an epoch takes about a
            # second on an idle machine.
            deadline = time.monotonic() + CANCEL_WAIT_S
            job_id = ""
            while not job_id and time.monotonic() < deadline and run1.poll() is None:
                job_id = _running_job(cluster, "baseline_train")
                time.sleep(0.5)
            while job_id and not _epoch_done(epoch_log) and time.monotonic() < deadline and run1.poll() is None:
                time.sleep(0.05)
            assert job_id and state.exists() and _epoch_done(epoch_log), (
                f"training job {job_id or '(none)'} did not finish its first epoch in "
                f"{CANCEL_WAIT_S} s:\n{run1_log.read_text()[-4000:]}"
            )
            cancel = _run(["scancel", job_id], env=cluster.env, timeout=30)
            assert cancel.returncode == 0, cancel.stderr
            rc = run1.wait(timeout=CANCEL_WAIT_S)
        log = run1_log.read_text()
        assert rc != 0, f"Snakemake did not notice the cancelled job:\n{log[-4000:]}"
        assert "JobState=CANCELLED" in cluster.scontrol_job(job_id)
        # None of the rule's outputs, whole or partial, and no temporary file beside them (atomic
        # writes use hidden temporaries in the target's folder, e.g. .model.pt.<random>.tmp).
        left = [rel for rel in wf.outputs if (workdir / rel).exists()]
        assert not left, f"outputs of the cancelled job are left: {left}"
        hidden = sorted(str(p.relative_to(workdir)) for p in workdir.glob("results/**/.*"))
        assert not hidden, f"temporary files are left: {hidden}"
        # The trainer's checkpoint survived, from a run that was cut short.
        from layerprune.train.state import load_state

        epochs_done = int(load_state(state)["epoch"])
        assert 1 <= epochs_done < RESUME_EPOCHS, epochs_done

        # The same command again: it resumes and completes.
        res = _run(cmd, env=cluster.env, timeout=RUN_TIMEOUT_S, cwd=workdir)
        rerun_log = res.stdout + res.stderr
        (tmp_path / "run2.log").write_text(rerun_log)
        assert res.returncode == 0, f"rerun failed:\n{rerun_log[-4000:]}"
        jobs = _submitted(rerun_log)
        assert list(jobs.values()) == ["baseline_train"], jobs
        assert "JobState=COMPLETED" in cluster.scontrol_job(next(iter(jobs)))
        # layerprune.train.loop logs "resuming <last.pt> at epoch <next>/<epochs>".
        train_log = (workdir / "logs/baseline_train/quick-digits.log").read_text()
        resumed = re.search(r"resuming (\S+) at epoch (\d+)/(\d+)", train_log)
        assert resumed, f"the rerun did not resume:\n{train_log[-4000:]}"
        assert resumed.group(1).endswith(RESUME_STATE), resumed.group(1)
        assert int(resumed.group(2)) == epochs_done + 1 >= 2, resumed.group(0)
        assert int(resumed.group(3)) == RESUME_EPOCHS, resumed.group(0)
        from layerprune.models.checkpoint import load_checkpoint

        model = workdir / "results/quick-digits/baseline/model.pt"
        meta = load_checkpoint(model).meta["train"]
        assert meta["resumed_from_epoch"] == epochs_done, meta
        assert meta["epochs"] == RESUME_EPOCHS, meta

        ref_rc = reference.wait(timeout=RUN_TIMEOUT_S)
    assert ref_rc == 0, f"local run failed:\n{local_log.read_text()[-4000:]}"
    assert "resuming" not in (local / "logs/baseline_train/quick-digits.log").read_text()
    # The resumed result equals the uninterrupted run's, weight for weight.
    _assert_same_output(model, local / "results/quick-digits/baseline/model.pt")
    assert _log_rows(epoch_log) == _log_rows(local / epoch_log.relative_to(workdir))
