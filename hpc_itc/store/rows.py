"""How a stage group reaches the results file: from rank 0 alone ("root") or from every rank via MPI-IO ("mpio").

Both modes keep the atomic scheme of :meth:`ResultsFile.write_stage`: the file is copied,
the stage group is written into the copy, the copy is fsynced and renamed over the file.

* ``root``: rank 0 runs the stage's writer on the copy with serial h5py.  The rows of the
  per-row tables are read by rank 0 from the checkpoint files (the shared file system is
  the "gather").  Used for one rank, when h5py has no MPI support, and when forced.
* ``mpio``: under MPI with more than one rank and an h5py built with MPI
  (``h5py.get_config().mpi``).  Rank 0 runs the same writer into an in-memory HDF5 file;
  what it wrote (groups, datasets, attributes) becomes a skeleton that is broadcast.  Every
  rank then opens the copy with ``driver="mpio"``, creates the identical metadata
  collectively, rank 0 writes the small datasets' data (independent I/O), and the rows of
  the per-row tables are written with one collective write per table, each rank writing
  the rows of its contiguous share of the checkpoint files at offsets from an allgather of
  row counts.

Stage code writes small, derived arrays with :func:`hpc_itc.store.file.write_array` as before and
declares a per-row table with :func:`write_rows`, naming where its rows are
(:class:`CheckpointRows`: one checkpoint file; :class:`MemoryRows`: arrays held by rank 0),
so both modes give the same layout and the same numbers.  The mode used is stored as the
stage group's ``writer`` attribute.  ``HPC_ITC_H5_WRITER`` = auto (default) | root | mpio
chooses; mpio where it cannot work is an error, not a silent fallback.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from hpc_itc.errors import InputError
from hpc_itc.store.h5 import fsync, write_array

WRITER_ENV = "HPC_ITC_H5_WRITER"
MODES = ("auto", "root", "mpio")


# ---- row sources ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointRows:
    """Rows of a table from one checkpoint file: array ``key`` of ``path``, optionally transformed.

    ``one_row``: the whole array is one row (a displaced supercell's forces); otherwise its first
    axis runs over rows (a k_par block's modes).  ``transform`` must be picklable (a module-level
    function or a functools.partial of one): in mpio mode the table's description travels to
    every rank, and each rank applies it to the rows it writes.
    """

    path: str
    key: str
    one_row: bool = False
    transform: Callable[[np.ndarray], np.ndarray] | None = None

    def load(self) -> np.ndarray:
        with np.load(self.path) as data:
            if self.key not in data.files:
                raise KeyError(f"checkpoint {Path(self.path).name} has no array '{self.key}' (it has {', '.join(data.files)})")
            arr = data[self.key]
        if self.transform is not None:
            arr = self.transform(arr)
        arr = np.asarray(arr)
        return arr[None] if self.one_row else arr


@dataclass(frozen=True)
class MemoryRows:
    """Rows held by rank 0 (computed there, e.g. forces predicted from the bulk leads)."""

    data: np.ndarray

    def load(self) -> np.ndarray:
        return np.asarray(self.data)


@dataclass(frozen=True)
class _HeldByRoot:
    """Stand-in for a MemoryRows block in the broadcast skeleton: rank 0 keeps the data."""

    table: int
    block: int


@dataclass
class _Table:
    path: str  # absolute HDF5 path in the stage's file
    blocks: list  # CheckpointRows | MemoryRows (rank 0) | _HeldByRoot (other ranks)
    attrs: list = field(default_factory=list)


class _Recording:
    def __init__(self) -> None:
        self.tables: list[_Table] = []


_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("hpc_itc_h5_recording", default=None)


def write_rows(group: h5py.Group, name: str, blocks: Sequence[CheckpointRows | MemoryRows], unit: str | None = None,
               doc: str | None = None) -> None:
    """A per-row table: the rows of ``blocks``, concatenated in order, as dataset ``name`` of ``group``.

    In root mode the rows are read here and written like :func:`write_array` would; in mpio mode
    the table is only recorded here and every rank writes its share afterwards, so a writer must
    not read a table back from the group it writes.
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError(f"table {group.name}/{name}: no row blocks")
    attrs = [(k, v) for k, v in (("unit", unit), ("doc", doc)) if v is not None]
    recording = _RECORDING.get()
    if recording is not None:
        recording.tables.append(_Table(f"{group.name}/{name}", blocks, attrs))
        return
    arrays = [b.load() for b in blocks]
    shape, dtype = _table_type(f"{group.name}/{name}", [(a.shape[1:], a.dtype) for a in arrays])
    data = np.concatenate([a.reshape((-1, *shape)).astype(dtype, copy=False) for a in arrays])
    write_array(group, name, data, unit, doc)


def _table_type(path: str, types: list[tuple[tuple, np.dtype]]) -> tuple[tuple, np.dtype]:
    """Row shape and dtype of a table from its blocks' (row shape, dtype); blocks must agree on the row shape."""
    shapes = {tuple(s) for s, _ in types}
    if len(shapes) != 1:
        raise ValueError(f"table {path}: blocks have rows of different shapes {sorted(shapes)}")
    dtype = np.result_type(*[d for _, d in types])
    if dtype.kind == "U":  # as write_array: fixed-length bytes
        dtype = np.dtype(f"S{max(1, dtype.itemsize // 4)}")
    return shapes.pop(), dtype


# ---- mode ----------------------------------------------------------------------------------------
def requested_mode() -> str:
    value = os.environ.get(WRITER_ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise InputError(WRITER_ENV, f"got {value!r}; allowed: one of {', '.join(MODES)} (environment variable)")
    return value


def h5py_has_mpi() -> bool:
    return bool(h5py.get_config().mpi)


def mpio_available(comm: Any) -> tuple[bool, str]:
    """(usable, why not): mpio needs an mpi4py communicator of more than one rank and h5py built with MPI."""
    if getattr(comm, "size", 1) <= 1:  # (hpc_itc.parallel.SerialComm has size 1)
        return False, "the run has one rank"
    if not h5py_has_mpi():
        return False, "h5py is built without MPI (h5py.get_config().mpi is False)"
    return True, ""


def writer_mode(comm: Any) -> str:
    """"mpio" or "root" for this run (same answer on every rank: same environment, same h5py)."""
    requested = requested_mode()
    usable, why = mpio_available(comm)
    if requested == "mpio" and not usable:
        raise InputError(WRITER_ENV, f"mpio was requested but {why}; allowed: auto or root here")
    if requested == "root":
        return "root"
    return "mpio" if usable else "root"


# ---- the collective write ------------------------------------------------------------------------
@dataclass
class _Skeleton:
    """What rank 0's writer produced, without the data: broadcast to every rank."""

    tmp: str
    groups: list  # (path, attrs)
    datasets: list  # (path, shape, dtype, attrs)
    tables: list  # _Table with MemoryRows replaced by _HeldByRoot


def _attr_items(obj) -> list[tuple[str, Any, np.dtype]]:
    """Attributes with their stored dtype, so a copy stores them identically (e.g. vlen vs fixed strings)."""
    return [(k, obj.attrs[k], obj.attrs.get_id(k).dtype) for k in sorted(obj.attrs.keys())]


def _set_attrs(obj, items) -> None:
    for k, v, dtype in items:
        obj.attrs.create(k, v, dtype=dtype)


class CollectiveStageWrite:
    """One stage written through MPI-IO.  Driven by :meth:`hpc_itc.stages.context.Context.write_stage`:

    ``prepare`` (rank 0) -> broadcast skeleton -> ``load_share`` (every rank) -> ``layout``
    (collective) -> ``write`` (collective, MPI-IO) -> ``commit`` (rank 0).
    """

    _memory_files = itertools.count()

    def __init__(self, results, comm, stage: str) -> None:
        self.results = results
        self.comm = comm
        self.stage = stage
        self.skeleton: _Skeleton | None = None
        self._data: dict[str, np.ndarray] = {}  # rank 0: small datasets' data
        self._memory_rows: dict[tuple[int, int], np.ndarray] = {}  # rank 0: MemoryRows blocks
        self._mine: dict[tuple[int, int], np.ndarray] = {}  # rows this rank writes
        self._offsets: dict[tuple[int, int], int] = {}
        self._types: list[tuple[int, tuple, np.dtype]] = []  # per table: total rows, row shape, dtype

    # rank 0 ----------------------------------------------------------------------------------------
    def prepare(self, writer: Callable[[h5py.Group], None]) -> _Skeleton:
        """Run ``writer`` into an in-memory file, copy the results file to the temporary path; the skeleton."""
        recording = _Recording()
        token = _RECORDING.set(recording)
        name = f"hpc_itc_stage_{os.getpid()}_{next(self._memory_files)}.h5"
        try:
            with h5py.File(name, "w", driver="core", backing_store=False) as mem:
                writer(mem.create_group(self.stage))
                groups, datasets = [], []

                def visit(path: str, obj) -> None:
                    full = f"/{self.stage}/{path}"
                    if isinstance(obj, h5py.Group):
                        groups.append((full, _attr_items(obj)))
                    else:
                        datasets.append((full, obj.shape, obj.dtype, _attr_items(obj)))
                        self._data[full] = obj[()]

                root = mem[self.stage]
                groups.append((f"/{self.stage}", _attr_items(root)))
                root.visititems(visit)
        finally:
            _RECORDING.reset(token)
        tables = []
        for t, table in enumerate(recording.tables):
            blocks = []
            for b, block in enumerate(table.blocks):
                if isinstance(block, MemoryRows):
                    self._memory_rows[(t, b)] = block.load()
                    blocks.append(_HeldByRoot(t, b))
                else:
                    blocks.append(block)
            tables.append(_Table(table.path, blocks, table.attrs))
        tmp = self.results.tmp_path()
        shutil.copyfile(self.results.path, tmp)
        return _Skeleton(str(tmp), groups, datasets, tables)

    # every rank --------------------------------------------------------------------------------
    def owners(self, table: int) -> list[int]:
        """Rank of each block of a table: rank 0 for rows it holds; the checkpoint blocks in contiguous
        shares (rank r takes positions [r n / P, (r + 1) n / P) of the n files), so a rank's rows are
        one contiguous range of the table."""
        blocks = self.skeleton.tables[table].blocks
        files = [b for b, x in enumerate(blocks) if not isinstance(x, _HeldByRoot)]
        out = [0] * len(blocks)
        size = self.comm.size
        for rank in range(size):
            for position in range(rank * len(files) // size, (rank + 1) * len(files) // size):
                out[files[position]] = rank
        return out

    def load_share(self) -> None:
        """Read (and transform) the rows of this rank's blocks."""
        rank = self.comm.rank
        for t, table in enumerate(self.skeleton.tables):
            for b, (block, owner) in enumerate(zip(table.blocks, self.owners(t))):
                if owner == rank:
                    self._mine[(t, b)] = self._memory_rows[(t, b)] if isinstance(block, _HeldByRoot) else block.load()

    def layout(self) -> None:
        """Collective: row counts of every block (allgather) -> offsets, and each table's row shape and dtype."""
        report = {key: (a.shape[0], a.shape[1:], a.dtype.str) for key, a in self._mine.items()}
        merged: dict[tuple[int, int], tuple] = {}
        for part in self.comm.allgather(report):
            merged.update(part)
        self._types = []
        for t, table in enumerate(self.skeleton.tables):
            counts = [merged[(t, b)][0] for b in range(len(table.blocks))]
            shape, dtype = _table_type(table.path, [(merged[(t, b)][1], np.dtype(merged[(t, b)][2])) for b in range(len(table.blocks))])
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
            for b in range(len(table.blocks)):
                self._offsets[(t, b)] = int(offsets[b])
            self._types.append((int(offsets[-1]), shape, dtype))

    def write(self, wall_seconds: float, finished: str) -> None:
        """Collective: open the copy with MPI-IO, create the stage's metadata, write the data."""
        sk = self.skeleton
        with h5py.File(sk.tmp, "a", driver="mpio", comm=self.comm) as f:
            if self.stage in f:
                del f[self.stage]
            # metadata: every rank makes the same calls in the same order (HDF5 requires it under MPI-IO)
            for path, attrs in sk.groups:
                g = f.require_group(path)
                _set_attrs(g, attrs)
            created = []
            for path, shape, dtype, attrs in sk.datasets:
                ds = f.create_dataset(path, shape=shape, dtype=dtype)
                _set_attrs(ds, attrs)
                created.append((path, ds))
            tables = []
            for t, table in enumerate(sk.tables):
                total, shape, dtype = self._types[t]
                ds = f.create_dataset(table.path, shape=(total, *shape), dtype=dtype)
                for k, v in table.attrs:
                    ds.attrs[k] = v
                tables.append(ds)
            g = f[self.stage]
            g.attrs["writer"] = "mpio"
            g.attrs["wall_seconds"] = float(wall_seconds)
            g.attrs["finished"] = finished
            g.attrs["complete"] = True
            # small datasets: rank 0 alone (independent I/O); the others hold no copy of the data
            if self.comm.rank == 0:
                for path, ds in created:
                    if ds.size:
                        ds[()] = self._data[path]
            # per-row tables: one collective write per table; a rank with no rows selects nothing
            for t, ds in enumerate(tables):
                _, shape, dtype = self._types[t]
                keys = sorted(k for k in self._mine if k[0] == t)
                _collective_rows(ds, [(self._offsets[k], self._mine[k].reshape((-1, *shape)).astype(dtype, copy=False)) for k in keys])

    def commit(self) -> None:
        """Rank 0: seal the stage (input identity, checksum), make the copy durable and move it over the results file."""
        tmp = Path(self.skeleton.tmp)
        with h5py.File(tmp, "a") as f:
            self.results.seal(f[self.stage])
        fsync(tmp)
        os.replace(tmp, self.results.path)
        self.results.clear_checkpoints(self.stage)

    def discard(self) -> None:
        if self.skeleton is not None:
            Path(self.skeleton.tmp).unlink(missing_ok=True)


def _collective_rows(ds: h5py.Dataset, pieces: list[tuple[int, np.ndarray]]) -> None:
    """Write row ranges ``(offset, rows)`` of ``ds`` in one collective call (the low-level API: h5py's
    ``ds[a:b] = rows`` returns early for an empty selection, and a rank missing from a collective
    write would hang the others)."""
    from h5py import h5fd, h5p, h5s

    dxpl = h5p.create(h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
    fspace = ds.id.get_space()
    merged: list[tuple[int, list[np.ndarray]]] = []
    for offset, rows in pieces:  # adjacent blocks -> one hyperslab (HDF5's selection unions are slow)
        if not len(rows):
            continue
        if merged and merged[-1][0] + sum(len(r) for r in merged[-1][1]) == offset:
            merged[-1][1].append(rows)
        else:
            merged.append((offset, [rows]))
    pieces = [(o, np.concatenate(rs) if len(rs) > 1 else rs[0]) for o, rs in merged]
    if not pieces:
        fspace.select_none()
        mspace = h5s.create_simple((1,))
        mspace.select_none()
        buf = np.zeros(1, ds.dtype)
    else:
        rest = ds.shape[1:]
        fspace.select_none()
        for offset, rows in pieces:
            fspace.select_hyperslab((offset, *(0,) * len(rest)), rows.shape, op=h5s.SELECT_OR)
        buf = np.ascontiguousarray(np.concatenate([r for _, r in pieces]))
        mspace = h5s.create_simple(buf.shape)
    ds.id.write(mspace, fspace, buf, dxpl=dxpl)
