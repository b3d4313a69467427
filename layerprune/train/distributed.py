"""Data-parallel training (``DistributedDataParallel``) launched by ``torchrun``, the standard launcher.

A ``layerprune`` training command whose config asks for ``devices > 1`` replaces itself with
``python -m torch.distributed.run --standalone --nproc_per_node DEVICES -m layerprune <same arguments>``
(:func:`relaunch_under_torchrun`); each of the processes then joins one process group (:func:`process_group`:
NCCL with one GPU per process, gloo on the CPU) and :func:`layerprune.train.fit` trains the model data-parallel.
Nothing else changes for the caller: the workflow rules run the same command, and a ``devices: 1`` run never
touches ``torch.distributed``, so it is exactly the one-process loop.

Design, as in torchvision's reference training scripts:

* The configured ``batch_size`` is the global batch: each of the ``W`` processes takes ``batch_size / W``.
* The data order is the one-process run's (:class:`GlobalOrderSampler`): epoch ``k`` of a ``W``-process run
  visits exactly the global batches of the one-process run, each split over the processes, so a data-parallel
  run follows the one-process trajectory up to float summation order and per-process BatchNorm statistics.
* BatchNorm uses per-process batch statistics (the reference recipes' default) and rank 0's running statistics
  (DDP broadcasts rank 0's buffers at each forward); ``sync_batchnorm`` turns on SyncBatchNorm (CUDA only).
* Only rank 0 writes artifacts (checkpoints, logs, metrics), through the atomic writers of :mod:`layerprune.io`.
* Per-epoch test evaluation is sharded over the processes and the sums are all-reduced (every process gets the
  same numbers as a one-process evaluation of rank 0's model).
* CodeCarbon: one tracker per process, each measuring its own process's CPU and RAM and its own GPU; the totals are
  summed over the processes (the duration is the longest process's) and rank 0 writes the one row.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

__all__ = [
    "DistContext",
    "GlobalOrderSampler",
    "launched_by_torchrun",
    "loader_order",
    "process_group",
    "reduce_usage",
    "relaunch_under_torchrun",
    "shard",
]

logger = logging.getLogger(__name__)

# torchrun sets these in every process it starts.
_TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
# A collective that waits longer than this (a crashed peer) fails instead of hanging the job until its time limit.
TIMEOUT = datetime.timedelta(minutes=30)


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its rank variables are set)."""
    return all(key in os.environ for key in _TORCHRUN_ENV)


def relaunch_under_torchrun(devices: int, argv: Sequence[str]) -> None:
    """Replace this process with ``torchrun`` running ``devices`` copies of ``python -m layerprune ARGV``.

    Called by the training commands when their config asks for ``devices > 1`` and they were not started by
    torchrun. ``--standalone`` picks a free local rendezvous port, so several such jobs can share a node. Does
    not return (``os.execv``); torchrun forwards SIGTERM/SIGINT to the processes and exits with their status.

    Args:
        devices: Processes to start (one per GPU of the node, or CPU processes with gloo).
        argv: The command's arguments after the program name, e.g. ``["finetune", "--model", ...]``.

    Raises:
        RuntimeError: If CUDA is available but has fewer than ``devices`` GPUs.
    """
    if torch.cuda.is_available() and torch.cuda.device_count() < devices:
        raise RuntimeError(
            f"devices={devices} but this node shows {torch.cuda.device_count()} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); lower train/finetune.devices "
            "or request that many GPUs per job (profiles/slurm: gpus_per_task)"
        )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={devices}",
        "-m",
        "layerprune",
        *argv,
    ]
    logger.info("relaunching under torchrun: %s", " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the data-parallel job.

    Attributes:
        rank: Global rank (0 writes the artifacts).
        world_size: Number of processes.
        device: The device this process trains on (``cuda:LOCAL_RANK`` or ``cpu``).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def process_group(devices: int, threads: int | None = None) -> Iterator[DistContext | None]:
    """Join the torchrun job's process group for the duration of the block (``None`` for a one-process run).

    Args:
        devices: The config's ``devices``; must equal torchrun's ``WORLD_SIZE`` when launched by torchrun.
        threads: CPU threads of the whole job (the rule's ``threads``); each process takes an equal share.

    Yields:
        The :class:`DistContext`, or ``None`` when ``devices`` is 1 and torchrun did not start this process.

    Raises:
        RuntimeError: If torchrun's world size differs from ``devices``, or ``devices > 1`` without torchrun.
    """
    if not launched_by_torchrun():
        if devices > 1:
            raise RuntimeError(
                f"devices={devices} needs one process per device: run the layerprune command (it relaunches itself "
                f"through torchrun) or torchrun --nproc_per_node {devices} -m layerprune ..."
            )
        yield None
        return
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size != devices:
        raise RuntimeError(
            f"torchrun started {world_size} processes but the config says devices={devices}; make them equal"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if threads:
        torch.set_num_threads(max(1, threads // world_size))
    dist.init_process_group(backend=backend, timeout=TIMEOUT, device_id=device if backend == "nccl" else None)
    ctx = DistContext(rank=dist.get_rank(), world_size=world_size, device=device)
    if ctx.rank != 0:  # one log for the job: the other ranks report only warnings and errors
        logging.getLogger("layerprune").setLevel(logging.WARNING)
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def reduce_usage(usage: dict[str, float] | None) -> dict[str, float] | None:
    """Combine the CodeCarbon totals of every process: energy and CO2 are summed, the duration is the longest.

    A collective: every rank must call it (with ``None`` on a rank without tracking, then every rank returns
    ``None``). Outside a process group it returns ``usage`` unchanged.
    """
    if not dist.is_initialized():
        return usage
    rows: list[dict[str, float] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(rows, usage)
    if any(row is None for row in rows):
        return None
    keys = sorted(set().union(*rows))  # type: ignore[arg-type]
    return {
        key: (max if key == "duration_s" else math.fsum)(float(row.get(key, 0.0)) for row in rows)  # type: ignore[union-attr,operator]
        for key in keys
    }


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Rank ``rank``'s contiguous slice of ``dataset`` (sizes differ by at most one; no sample twice or missing)."""
    n = len(dataset)  # type: ignore[arg-type]
    start, stop = n * rank // world_size, n * (rank + 1) // world_size
    return Subset(dataset, range(start, stop))


class GlobalOrderSampler(DistributedSampler):
    """A ``DistributedSampler`` whose epoch order is the one-process run's, split over the processes.

    torch's ``DistributedSampler`` shuffles with its own permutation; this one asks ``global_order(epoch)`` for
    the sample order a one-process run uses in that epoch and gives rank ``r`` the positions ``r, r + W, ...``.
    With a per-process batch of ``batch_size / W``, batch ``k`` of every rank together is exactly global batch
    ``k`` of the one-process run. As in ``DistributedSampler``, the order is padded with its first samples to a
    multiple of ``W`` so that every process runs the same number of steps. Call :meth:`set_epoch` every epoch.
    """

    def __init__(self, dataset: Dataset, global_order: Callable[[int], list[int]], *, rank: int, world_size: int):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
        self._global_order = global_order
        self.total_size = self.num_samples = 0
        self._order: list[int] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        order = self._global_order(epoch)
        padding = -len(order) % self.num_replicas
        self._order = order + order[:padding]
        self.total_size = len(self._order)
        self.num_samples = self.total_size // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        return iter(self._order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def loader_order(loader: DataLoader, iterate: Callable[[DataLoader], Iterable] = iter) -> list[int]:
    """The sample indices a one-process ``loader`` visits in one pass, in order (without loading any sample).

    Iterates a copy of the loader over the indices themselves, so that its generator draws exactly as the real
    loader's would (torch's ``RandomSampler`` and base seed logic, whatever the torch version).

    Args:
        loader: A loader with ``shuffle=True`` and its own ``generator``.
        iterate: How the training loop iterates the loader (e.g. wrapped in a progress bar, which may start one
            extra iterator and so move the generator on before the pass).
    """
    n = len(loader.dataset)  # type: ignore[arg-type]
    generator = torch.Generator()
    generator.set_state(loader.generator.get_state())  # type: ignore[union-attr]
    indices = DataLoader(
        range(n),  # type: ignore[arg-type]
        batch_size=loader.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=loader.drop_last,
        num_workers=0,
    )
    return [int(i) for batch in iterate(indices) for i in batch]
