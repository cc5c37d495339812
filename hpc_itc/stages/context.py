"""The run context every stage shell takes: the validated input, the results file, the communicator,
the MLIP calculator of this rank, and what earlier stages left in the file, read once per run.

A stage shell distributes its work (:class:`~hpc_itc.stages.collective.Collective`), checkpoints
tasks in the results file's sidecar, and hands rank 0's results to the store module that owns its
group, through :meth:`Context.write_stage` (atomic; MPI-IO where h5py has it).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpc_itc import log as logmod
from hpc_itc.config import RunConfig
from hpc_itc.core.structure import Heterostructure, InterfaceSpec
from hpc_itc.errors import keyed
from hpc_itc.parallel import ranks_on_node
from hpc_itc.stages.collective import Collective
from hpc_itc.store import rows as h5rows
from hpc_itc.store.checkpoints import StageCheckpoints
from hpc_itc.store.file import ResultsFile, StageTimer
from hpc_itc.store.h5 import now

_log = logmod.get("stages")

# the core's names of the MLIP settings -> their input keys
MLIP_KEYS = {"model": "mlip.model", "device": "mlip.device", "dtype": "mlip.dtype", "num_threads": "mlip.num_threads",
             "calculator": "mlip.calculator", "calculator_args": "mlip.calculator_args"}


def model_fingerprint(model: str, cfg: RunConfig | None = None) -> dict:
    """What identifies the potential in the input hash: the MACE model file's sha256 (or the foundation
    name); for ``mlip.calculator``, its package version and the sha256 of every file its arguments name."""
    if cfg is not None and cfg.mlip.calculator:
        from hpc_itc.core import ase_calculator

        with keyed(MLIP_KEYS):
            return ase_calculator.fingerprint(cfg.mlip.calculator, cfg.mlip.calculator_args, cfg.base_dir)
    from hpc_itc.core import mlip

    with keyed(MLIP_KEYS):
        path = Path(mlip.resolve_model(model))
    if path.is_file():
        return {"model_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"model_name": model}


@dataclass
class Context(Collective):
    """What a stage shell works with (one per run and rank)."""

    cfg: RunConfig = None  # type: ignore[assignment]
    results: ResultsFile = None  # type: ignore[assignment]
    input_sha256: str = ""
    _calculator: Any = field(default=None, repr=False)
    _writer_mode: str | None = field(default=None, repr=False)
    _read: dict = field(default_factory=dict, repr=False)  # what earlier stages wrote, read once

    @property
    def spec(self) -> InterfaceSpec:
        return InterfaceSpec.from_config(self.cfg.structure)

    def calculator(self):
        """The MLIP calculator of this rank (loaded once)."""
        if self._calculator is None:
            m = self.cfg.mlip
            if m.calculator:  # any ASE calculator (core/ase_calculator.py)
                from hpc_itc.core import ase_calculator

                with keyed(MLIP_KEYS):
                    self._calculator = ase_calculator.build(m.calculator, ase_calculator.resolved_args(m.calculator_args, self.cfg.base_dir),
                                                            device=m.device, dtype=m.dtype)
                return self._calculator
            from hpc_itc.core import mlip

            threads = m.num_threads or max(1, (os.cpu_count() or 1) // ranks_on_node())
            with keyed(MLIP_KEYS):
                self._calculator = mlip.load_calculator(self.cfg.model, device=m.device, dtype=m.dtype, num_threads=threads)
        return self._calculator

    # ---- what earlier stages wrote (every rank reads it once, after the stage that wrote it) ----
    def relaxed(self) -> Heterostructure:
        """The relaxed slab of /relax with its bookkeeping."""
        if "relaxed" not in self._read:
            from hpc_itc.store.relax import read_relaxed

            with self.results.verified("structure", "relax") as f:
                self._read["relaxed"] = read_relaxed(f, self.spec)
        return self._read["relaxed"]

    def force_constants(self) -> dict:
        """RealSpaceIFC of each part (left_lead, right_lead, device) from /force_constants."""
        if "force_constants" not in self._read:
            from hpc_itc.store.force_constants import read_ifcs

            with self.results.verified("force_constants") as f:
                self._read["force_constants"] = read_ifcs(f, self.cfg.force_constants.symprec)
        return self._read["force_constants"]

    def memo(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per run (e.g. the transport system both the transport and ldos stages use)."""
        if name not in self._read:
            self._read[name] = make()
        return self._read[name]

    def checkpoints(self, stage: str) -> StageCheckpoints:
        """The task checkpoints of ``stage`` for this run's inputs (save, load, rows)."""
        return self.results.checkpoints(stage)

    def resume(self, stage: str, expected: dict[str, dict[int, Any]]) -> dict[str, set[int]]:
        """Task ids per part whose checkpoints this run can reuse, as rank 0 verified them (every rank
        deals from the same list); ``expected`` = part -> {task_id: definition} of every planned task.
        Foreign, stale, corrupt or unreadable files are removed and recomputed, with one warning."""
        return self.on_root(lambda: self.checkpoints(stage).verified(expected, _log.warning))

    def write_stage(self, stage: str, make_writer: Callable[[], Callable], timer: StageTimer | float) -> None:
        """Collective: write stage group ``stage`` atomically; ``make_writer`` runs on rank 0 only.

        ``make_writer()`` does rank 0's work (reading checkpoints, sums) and returns the writer,
        a function filling the stage's h5py group (small arrays with ``write_array``, per-row tables
        with :func:`hpc_itc.h5rows.write_rows`).  With one rank, or h5py without MPI, rank 0 writes
        the file alone; under MPI with a parallel h5py every rank writes its rows through MPI-IO
        (:mod:`hpc_itc.h5io`).  Same layout and numbers either way; ``/<stage>`` attrs ``writer``.
        """
        mode = self.writer_mode()
        t0 = time.monotonic()
        t_summed = t0

        def prepared():
            nonlocal t_summed
            writer = make_writer()
            t_summed = time.monotonic()
            return writer

        if mode == "root":
            self.on_root(lambda: self.results.write_stage(stage, prepared(), timer))
            self._log_write(stage, mode, t0, t_summed)
            return
        job = h5rows.CollectiveStageWrite(self.results, self.comm, stage)
        try:
            job.skeleton = self.on_root(lambda: job.prepare(prepared()))
            self.run_share(job.load_share)  # each rank reads its share of the checkpoints; any failure fails all
            job.layout()
            seconds = self.comm.bcast(timer.seconds if isinstance(timer, StageTimer) else float(timer), root=0)
            finished = self.comm.bcast(now(), root=0)
            # a failure inside the collective HDF5 calls is not caught here: the rank's error goes to the
            # driver, which aborts the whole job (the others may wait in a collective that never completes)
            job.write(seconds, finished)
            self.comm.barrier()  # every rank has closed the file before it is renamed
        except Exception:
            if self.is_root:
                job.discard()
            raise
        self.on_root(job.commit)
        self._log_write(stage, mode, t0, t_summed)

    def _log_write(self, stage: str, mode: str, t0: float, t_summed: float) -> None:
        """Rank 0: how long the sums took and the write, and how much was written (benchmarks/scaling.py reads it)."""
        if not self.is_root:
            return
        t1 = time.monotonic()
        with self.results.open() as f:
            sizes = []
            f[stage].visititems(lambda _, obj: sizes.append(obj.nbytes) if hasattr(obj, "nbytes") else None)
        _log.info("%s: summed up on rank 0 in %.2f s, written by the %s writer in %.2f s (%.2f MB of datasets)",
                  stage, t_summed - t0, mode, t1 - t_summed, sum(sizes) / 1e6)

    def writer_mode(self) -> str:
        """"mpio" or "root" (:func:`hpc_itc.h5rows.writer_mode`), logged once by rank 0."""
        if self._writer_mode is None:
            # decided by rank 0 for all: a rank that saw another environment must not take another path
            # (an error on one rank only, outside a collective, would leave the others waiting)
            self._writer_mode = self.on_root(lambda: h5rows.writer_mode(self.comm))
            if self.is_root:
                _log.info("results writer: %s (%d rank(s), h5py with MPI: %s)", self._writer_mode, self.comm.size, h5rows.h5py_has_mpi())
        return self._writer_mode
