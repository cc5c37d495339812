"""Logging with timestamps and MPI rank, and periodic progress lines for long stages."""

from __future__ import annotations

import logging
import sys
import time
import warnings

_FORMAT = "%(asctime)s [rank %(rank)s] %(levelname)s %(name)s: %(message)s"


class _RankFilter(logging.Filter):
    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup(rank: int = 0, level: str = "info", all_ranks: bool = False) -> None:
    """Configure the 'hpc_itc' logger: stderr, timestamps, rank.

    Only rank 0 logs at info level unless ``all_ranks``; other ranks log warnings
    and errors so a failure on any rank is visible.
    """
    logger = logging.getLogger("hpc_itc")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_RankFilter(rank))
    logger.addHandler(handler)
    wanted = getattr(logging, level.upper())
    logger.setLevel(wanted if (rank == 0 or all_ranks) else max(wanted, logging.WARNING))
    logger.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"hpc_itc.{name}")


class Progress:
    """Prints 'label: done/total (pct), elapsed, eta' at most every ``interval`` seconds.

    The ETA is the work left divided by the rate observed so far.  Tasks of unequal cost pass
    their cost as ``work`` (e.g. the incident modes a transport task solves), so that the
    estimate follows the work left, not the task count; the first task, which pays one-off set-up
    (lead modes, caches, imports), is left out of the rate, so there is no ETA before a second one has
    finished.
    """

    def __init__(self, logger: logging.Logger, label: str, total: int, interval: float = 30.0, done: int = 0,
                 upper_bound: bool = False, total_work: float | None = None):
        """``upper_bound``: ``total`` is a maximum, not the work to do (an optimizer's step limit): no percentage, no ETA.
        ``total_work``: the summed cost of the ``total`` tasks (default: one unit per task)."""
        self.upper_bound = upper_bound
        self.logger = logger
        self.label = label
        self.total = max(int(total), 0)
        self.interval = interval
        self.done = done
        self._total_work = None if total_work is None else float(total_work)
        self.work_done = float(done) if total_work is None else 0.0
        self._t0 = time.monotonic()
        self._last = self._t0
        self._first: tuple[float, float] | None = None  # (time, work done) when the first task of this run finished

    @property
    def total_work(self) -> float:
        return self._total_work if self._total_work is not None else float(self.total)

    def eta_seconds(self, now: float) -> float:
        """Seconds left at the observed rate (NaN before any work is done)."""
        left = self.total_work - self.work_done
        if self._first is not None and self.work_done > self._first[1] and now > self._first[0]:
            rate = (self.work_done - self._first[1]) / (now - self._first[0])
        elif left <= 0:
            return 0.0
        else:  # one task seen: its time is mostly set-up, no rate to speak of yet
            rate = 0.0
        return left / rate if rate > 0 else float("nan")

    def update(self, n: int = 1, force: bool = False, work: float | None = None) -> None:
        self.done += n
        now = time.monotonic()
        if self.upper_bound:
            if force or now - self._last >= self.interval:
                self._last = now
                self.logger.info("%s: %d (at most %d), %.1f s elapsed", self.label, self.done, self.total, now - self._t0)
            return
        first_now = self._first is None
        self.work_done += float(n if work is None else work)
        if force or now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            elapsed = now - self._t0
            pct = 100.0 * self.work_done / self.total_work if self.total_work else 100.0
            eta = self.eta_seconds(now)
            self.logger.info("%s: %d/%d (%.0f%% of the work), %.1f s elapsed, eta %s", self.label, self.done, self.total, pct,
                             elapsed, "unknown" if eta != eta else f"{eta:.0f} s")
        if first_now:
            self._first = (now, self.work_done)


def quiet_known_warnings() -> None:
    """Warnings that libraries print on every run and that a user cannot act on."""
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    warnings.filterwarnings("ignore", message=".*Point group symmetries of supercell and primitivecell are different.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
