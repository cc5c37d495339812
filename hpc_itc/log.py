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
    """Prints 'label: done/total (pct), elapsed, eta' at most every ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, label: str, total: int, interval: float = 30.0, done: int = 0,
                 upper_bound: bool = False):
        """``upper_bound``: ``total`` is a maximum, not the work to do (an optimizer's step limit): no percentage, no ETA."""
        self.upper_bound = upper_bound
        self.logger = logger
        self.label = label
        self.total = max(int(total), 0)
        self.interval = interval
        self.done = done
        self._start_done = done
        self._t0 = time.monotonic()
        self._last = self._t0

    def update(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if self.upper_bound:
            if force or now - self._last >= self.interval:
                self._last = now
                self.logger.info("%s: %d (at most %d), %.1f s elapsed", self.label, self.done, self.total, now - self._t0)
            return
        if force or now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            elapsed = now - self._t0
            rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
            remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
            pct = 100.0 * self.done / self.total if self.total else 100.0
            self.logger.info("%s: %d/%d (%.0f%%), %.1f s elapsed, eta %.1f s", self.label, self.done, self.total, pct, elapsed, remaining)


def quiet_known_warnings() -> None:
    """Warnings that libraries print on every run and that a user cannot act on."""
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    warnings.filterwarnings("ignore", message=".*Point group symmetries of supercell and primitivecell are different.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
