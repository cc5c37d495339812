"""MPI distribution with a serial fallback.

A plain ``python -m hpc_itc`` runs as one rank without an MPI launcher; under
``srun``/``mpiexec`` mpi4py gives the world communicator.  Work is split into
tasks with stable integer ids; each rank takes a strided share of the ids that
are not yet checkpointed, so the result never depends on the rank count.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Sequence


class SerialComm:
    """The subset of mpi4py's Comm used by hpc_itc, for a single process."""

    rank = 0
    size = 1

    def barrier(self) -> None:
        return None

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def Split(self, color: int = 0, key: int = 0) -> "SerialComm":  # noqa: N802 (mpi4py's name)
        return self

    def Abort(self, errorcode: int = 1) -> None:  # noqa: N802 (mpi4py's name)
        os._exit(errorcode)


def _launched_under_mpi() -> bool:
    markers = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")
    return any(m in os.environ for m in markers)


def world() -> Any:
    """The world communicator: mpi4py's when launched under MPI, else a serial stand-in.

    mpi4py is imported only under a launcher (or with HPC_ITC_FORCE_MPI=1) so a
    laptop run never needs a working MPI library.
    """
    if _launched_under_mpi() or os.environ.get("HPC_ITC_FORCE_MPI") == "1":
        try:
            from mpi4py import MPI
        except ImportError:  # pragma: no cover - depends on the installation
            return SerialComm()
        return MPI.COMM_WORLD
    return SerialComm()


def quiet_barrier(comm: Any, poll_seconds: float = 0.005) -> None:
    """A barrier that waits asleep: MPI's blocking collectives busy-poll, so ranks that wait for rank 0's
    serial work (relax, the sums) or for a slower rank would take the CPU from the rank doing the work
    wherever cores are shared (oversubscribed nodes, torch threads).  Costs at most ``poll_seconds`` of latency."""
    if comm.size == 1 or not hasattr(comm, "Ibarrier"):
        return
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll_seconds)


def my_share(task_ids: Sequence[int] | Iterable[int], comm: Any) -> list[int]:
    """This rank's tasks: a strided (round-robin) share of ``task_ids``."""
    ids = list(task_ids)
    return ids[comm.rank :: comm.size]


def ranks_on_node() -> int:
    """Ranks sharing this node, from the launcher's environment (1 if unknown)."""
    for var in ("OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"):
        value = os.environ.get(var, "")
        head = value.split("(")[0].split(",")[0]
        if head.isdigit() and int(head) > 0:
            return int(head)
    return 1
