"""The HDF5 results file: one group per stage, written atomically, plus checkpoints.

Layout (see docs/results.md):

    /                       attrs: input_sha256, input_toml, hpc_itc_version, created
    /<stage>                attrs: complete (bool), wall_seconds, finished (ISO time)
    /<stage>/...            datasets with a ``unit`` attribute where they carry one

Atomicity: a stage is written into a copy of the file, flushed, and moved over
the original with ``os.replace``, so a crash at any moment leaves either the old
or the new file, never a half-written one.  Work inside a long stage is
checkpointed in a sidecar folder ``<output>.ckpt/<stage>/`` as one small file per
finished task (also written by rename), so killed jobs lose nothing; the sidecar
is folded into the stage group and removed when the stage completes.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import numpy as np

from hpc_itc import __version__
from hpc_itc.errors import InputError, ResultsMismatchError
from hpc_itc.store.h5 import fsync, now
from hpc_itc.store.rows import CheckpointRows

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


class ResultsFile:
    """Access to one results file; stage groups are written by :meth:`write_stage` (rank 0) or, under MPI,
    by :meth:`hpc_itc.stages.context.Context.write_stage` (every rank, MPI-IO where h5py has it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ---- creation and identity -------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def input_sha256(self) -> str | None:
        if not self.exists():
            return None
        with self.open() as f:
            return f.attrs.get("input_sha256")

    def check_or_create(self, input_sha256: str, input_toml: str) -> None:
        """Refuse a file from another input; create a new file otherwise (rank 0 only)."""
        if self.exists():
            try:
                found = self.input_sha256()
            except OSError:
                raise InputError("run.output", f"'{self.path}' exists but is not a readable HDF5 file; move it away or choose another run.output") from None
            if found != input_sha256:
                raise ResultsMismatchError(
                    "run.output",
                    f"'{self.path}' was written from a different input (sha256 {str(found)[:12]}..., this input {input_sha256[:12]}...); "
                    "choose another run.output or remove the file",
                )
            self.remove_stale_copies()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_path()
        with h5py.File(tmp, "w") as f:
            f.attrs["input_sha256"] = input_sha256
            f.attrs["input_toml"] = input_toml
            f.attrs["hpc_itc_version"] = __version__
            f.attrs["created"] = now()
        os.replace(tmp, self.path)

    # ---- reading ---------------------------------------------------------------
    @contextmanager
    def open(self) -> Iterator[h5py.File]:
        with h5py.File(self.path, "r") as f:
            yield f

    def stages_complete(self) -> list[str]:
        if not self.exists():
            return []
        with self.open() as f:
            return [name for name in f if isinstance(f[name], h5py.Group) and f[name].attrs.get("complete", False)]

    def is_complete(self, stage: str) -> bool:
        return stage in self.stages_complete()

    # ---- writing ---------------------------------------------------------------
    def write_stage(self, stage: str, writer: Callable[[h5py.Group], None], wall_seconds: "float | StageTimer") -> None:
        """Replace group ``stage`` with what ``writer`` puts in it, atomically (one process: rank 0).

        ``wall_seconds`` may be the stage's StageTimer: it is then read after the writer ran,
        so work done while writing (sums, phonons) counts towards the stage's wall time.
        The collective form for several ranks (MPI-IO) is :meth:`hpc_itc.stages.context.Context.write_stage`.
        """
        tmp = self.tmp_path()
        shutil.copyfile(self.path, tmp)
        try:
            with h5py.File(tmp, "a") as f:
                if stage in f:
                    del f[stage]
                group = f.create_group(stage)
                writer(group)
                seconds = wall_seconds.seconds if isinstance(wall_seconds, StageTimer) else wall_seconds
                group.attrs["writer"] = "root"
                group.attrs["wall_seconds"] = float(seconds)
                group.attrs["finished"] = now()
                group.attrs["complete"] = True
                f.flush()
            fsync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the file itself is untouched; leave no half-written copy behind
            raise
        os.replace(tmp, self.path)
        self.clear_checkpoints(stage)

    def remove_stale_copies(self) -> list[Path]:
        """Delete stage copies left by a run killed while writing (the file itself is intact: the rename never happened).

        Called by rank 0 when a run starts on an existing file; two runs never share one results file.
        """
        stale = sorted(self.path.parent.glob(f".{self.path.name}.tmp*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def tmp_path(self) -> Path:
        """Where a stage is written before the rename (same folder: os.replace is atomic only within a file system)."""
        return self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    # ---- checkpoints -----------------------------------------------------------
    def checkpoint_dir(self, stage: str, part: str = "") -> Path:
        base = self.path.with_name(self.path.name + ".ckpt") / stage
        return base / part if part else base

    def save_task(self, stage: str, part: str, task_id: int, **arrays: Any) -> None:
        """Checkpoint one finished task (any rank; one file per task, written by rename)."""
        folder = self.checkpoint_dir(stage, part)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"task_{task_id:08d}.npz"
        tmp = folder / f".task_{task_id:08d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        fsync(tmp)
        os.replace(tmp, final)

    def finished_tasks(self, stage: str, part: str) -> set[int]:
        folder = self.checkpoint_dir(stage, part)
        if not folder.is_dir():
            return set()
        done = set()
        for p in folder.glob("task_*.npz"):
            try:
                done.add(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return done

    def checkpoint_rows(self, stage: str, part: str, task_id: int, key: str, one_row: bool = False,
                        transform: Callable[[np.ndarray], np.ndarray] | None = None):
        """Rows of a per-row table from one checkpoint (see :func:`hpc_itc.h5io.write_rows`)."""
        return CheckpointRows(str(self.checkpoint_dir(stage, part) / f"task_{task_id:08d}.npz"), key, one_row, transform)

    def load_task(self, stage: str, part: str, task_id: int) -> dict[str, np.ndarray]:
        with np.load(self.checkpoint_dir(stage, part) / f"task_{task_id:08d}.npz") as data:
            return {k: data[k] for k in data.files}

    def clear_checkpoints(self, stage: str) -> None:
        folder = self.checkpoint_dir(stage)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        root = folder.parent
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def open_for_reading(path: str | Path, key: str = "result") -> h5py.File:
    """Open a results file read-only; a missing or unreadable file is an InputError naming ``key``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(key, f"'{path}' not found; give a results file written by hpc_itc")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise InputError(key, f"'{path}' is not a readable HDF5 file") from None


class StageTimer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0
