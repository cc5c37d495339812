"""One run at a time per results file: ``<output>.lock`` holds the running job's host, pid and Slurm job.

Taken by rank 0 before the results file is touched and removed when the run ends (also on errors and
SIGTERM).  A second run of the same output refuses with one line naming the holder.  A lock is stale,
and taken over with a warning, when its holder is gone: same host and no such process, the same Slurm
job (a requeued job finds its own lock), or an unreadable lock file (a job killed while writing it).
A lock held from another host cannot be checked from here: the message says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from hpc_itc.errors import InputError


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale(holder: dict | None) -> str | None:
    """Why the lock's holder is gone, or None when it may still run."""
    if holder is None:
        return "unreadable lock file"
    me = _me()
    if holder.get("slurm_job_id") and holder.get("slurm_job_id") == me["slurm_job_id"]:
        return f"held by this Slurm job {me['slurm_job_id']} before a restart"
    if holder.get("host") == me["host"]:
        pid = holder.get("pid")
        if not isinstance(pid, int) or not _alive(pid):
            return f"process {pid} on {me['host']} no longer runs"
        if pid == me["pid"]:
            return "held by this process"
    return None


class RunLock:
    """``with RunLock(output) as lock:`` (rank 0).  ``lock.note`` says when a stale lock was taken over."""

    def __init__(self, output: Path, key: str = "run.output"):
        self.path = lock_path(Path(output))
        self.key = key
        self.note = ""
        self._mine: dict | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            me = _me()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder == {}:  # released between our open and read: try again
                    continue
                why = _stale(holder)
                if why is None:
                    h = holder or {}
                    raise InputError(self.key, f"'{self.path.with_suffix('')}' is in use by another run (pid {h.get('pid')} on {h.get('host')}"
                                               f"{', Slurm job ' + h['slurm_job_id'] if h.get('slurm_job_id') else ''}, since {h.get('started')}); "
                                               f"wait for it to end, or delete {self.path} if that run is gone")
                self.note = f"took over a stale lock ({why})"
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._mine = me
            return
        raise InputError(self.key, f"could not take the lock {self.path} (another run keeps taking it); try again")

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._mine is not None and self._read() == self._mine:
            self.path.unlink(missing_ok=True)
        self._mine = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
