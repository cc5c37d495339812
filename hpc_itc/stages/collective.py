"""Collective operations of the stage shells: work on rank 0 or on every rank, failures seen by all.

Every rank of a run takes the same path through these calls, so no rank waits forever in a
collective for a rank that failed in Python: a failure on one rank becomes an exception on every
rank (:class:`RemoteError` where it happened elsewhere).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from hpc_itc import log as logmod
from hpc_itc.errors import InputError
from hpc_itc.parallel import quiet_barrier

_log = logmod.get("stages")

FAIL_RANK_ENV = "HPC_ITC_FAIL_RANK"
FAIL_HOW_ENV = "HPC_ITC_FAIL_HOW"


class RemoteError(RuntimeError):
    """Raised on ranks other than the one where a failure happened."""


@dataclass
class FaultInjection:
    """Fault injection for the cluster checks (ci/cluster_checks.sh): with HPC_ITC_FAIL_RANK=R, rank R fails at the
    start of its share of the first distributed stage, with an exception (HPC_ITC_FAIL_HOW=raise, the default) or by
    dying at once (=exit, as a rank killed by the OOM killer would)."""

    rank: int | None = None
    how: str = "raise"
    fired: bool = False

    @classmethod
    def from_environment(cls) -> "FaultInjection":
        target = os.environ.get(FAIL_RANK_ENV, "")
        return cls(int(target) if target.isdigit() else None, os.environ.get(FAIL_HOW_ENV, "raise"))

    def maybe_fail(self, rank: int) -> None:
        if self.fired or self.rank is None or self.rank != rank:
            return
        self.fired = True
        if self.how == "exit":
            os._exit(9)
        raise RuntimeError(f"injected failure on rank {rank} ({FAIL_RANK_ENV}={self.rank})")


@dataclass
class Collective:
    """The communicator of a run and the collective patterns the stage shells use."""

    comm: Any
    faults: FaultInjection = field(default_factory=FaultInjection)

    @property
    def is_root(self) -> bool:
        return self.comm.rank == 0

    def on_root(self, fn: Callable[[], Any], meanwhile: Callable[[], Any] | None = None) -> Any:
        """Run ``fn`` on rank 0 and broadcast its result; a failure there fails every rank alike.

        Rank 0 starts only when every rank has arrived: whatever a rank read before (the driver checks
        on every rank which stages the results file holds) was read before ``fn`` can change it.
        ``meanwhile`` runs on the other ranks while rank 0 works (a failure there ends the job through
        the driver's abort).
        """
        result, error = None, None
        quiet_barrier(self.comm)
        if not self.is_root and meanwhile is not None:
            meanwhile()
        if self.is_root:
            try:
                result = fn()
            except InputError as exc:
                error = ("input", exc.key, exc.message)
                if self.comm.size == 1:
                    raise
            except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
                if self.comm.size == 1:
                    raise
                error = ("runtime", type(exc).__name__, str(exc))
                _log.exception("failure on rank 0")
        quiet_barrier(self.comm)  # the other ranks sleep meanwhile instead of spinning in the bcast
        result, error = self.comm.bcast((result, error), root=0)
        if error is not None:
            if error[0] == "input":
                raise InputError(error[1], error[2])
            raise RemoteError(f"{error[1]} on rank 0: {error[2]}")
        return result

    def run_share(self, work: Callable[[], None]) -> None:
        """Run this rank's share of a distributed stage; a failure on any rank fails every rank.

        Collective: each rank reports success or its error message, so no rank waits
        forever in a later collective for a rank that died in Python.
        """
        ok, message = True, ""
        try:
            self.faults.maybe_fail(self.comm.rank)
            work()
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
            if self.comm.size == 1:
                raise
            ok, message = False, f"{type(exc).__name__}: {exc}"
        quiet_barrier(self.comm)  # ranks done early sleep until the slowest has finished its share
        self.check_all(ok, message)

    def check_all(self, ok: bool, message: str = "") -> None:
        """Collective: raise on every rank if any rank reports a failure."""
        reports = self.comm.allgather((ok, message))
        bad = [(r, m) for r, (good, m) in enumerate(reports) if not good]
        if bad:
            raise RemoteError("; ".join(f"rank {r}: {m}" for r, m in bad))
