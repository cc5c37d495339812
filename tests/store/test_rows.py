"""The two stage writers (hpc_itc.store.rows): rank 0 alone ("root") and every rank through MPI-IO ("mpio").

The serial tests run everywhere.  The MPI tests need h5py built with MPI and a launcher of the same MPI
(``HPC_ITC_MPIEXEC``, default ``mpiexec``); without them they skip, unless ``HPC_ITC_REQUIRE_MPIO=1``
(set by ci/cluster_checks.sh, which runs this file in its parallel-HDF5 venv), where a skip is a failure.
"""

import os
import shlex
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_itc.errors import InputError
from hpc_itc.parallel import SerialComm
from hpc_itc.store import rows as h5io
from hpc_itc.store.file import ResultsFile
from hpc_itc.store.h5 import write_array
from hpc_itc.store.rows import CollectiveStageWrite, MemoryRows, write_rows

REPO = Path(__file__).resolve().parents[2]


def _fill_checkpoints(rf: ResultsFile) -> None:
    """Checkpoints of uneven size (one empty) as the distributed stages leave them."""
    rng = np.random.default_rng(7)
    for k, n in enumerate([3, 5, 0, 4, 1, 6, 2]):
        rf.checkpoints("demo").save("left_to_right", k, {}, omega=rng.random(n), mesh_index=rng.integers(0, 9, (n, 3)),
                     image=rng.random(n) > 0.5, code=rng.integers(0, 5, n))
    for k in range(4):
        rf.checkpoints("demo").save("forces", k, {}, forces=rng.normal(size=(5, 3)))


def _per_ninth(a):  # a transform must be picklable: module level (or a functools.partial of such)
    return a / 9.0


def _demo_writer(rf: ResultsFile):
    """A stage writer using every kind of item: small arrays and attributes, tables from checkpoints and from rank 0."""
    bulk = np.random.default_rng(11).normal(size=(6, 5, 3))

    def write(g) -> None:
        g.attrs["n_parts"] = 2
        g.attrs["label"] = "demo"
        g.attrs["mesh"] = [3, 3, 2]
        write_array(g, "temperatures", np.array([100.0, 300.0]), "K")
        write_array(g, "scalar", 2.5, doc="a scalar")
        write_array(g, "names", np.array(["G", "X", "L"]))
        write_array(g, "empty", np.zeros((0, 3)))
        sub = g.create_group("left_to_right")
        sub.attrs["incident_lead"] = "left"
        tasks = range(7)
        write_rows(sub, "frequency", [rf.checkpoints("demo").rows("left_to_right", k, "omega", transform=partial(np.multiply, 2.5)) for k in tasks], "THz")
        write_rows(sub, "q_frac", [rf.checkpoints("demo").rows("left_to_right", k, "mesh_index", transform=_per_ninth) for k in tasks])
        write_rows(sub, "symmetry_image", [rf.checkpoints("demo").rows("left_to_right", k, "image") for k in tasks], doc="bool rows")
        write_rows(sub, "solve_code", [rf.checkpoints("demo").rows("left_to_right", k, "code", transform=partial(np.asarray, dtype=np.int8)) for k in tasks])
        # displaced-supercell forces: evaluated ones from checkpoints, the rest held by rank 0 (interface route)
        blocks = [rf.checkpoints("demo").rows("forces", k // 2, "forces", one_row=True) if k % 2 == 0 else MemoryRows(bulk[k : k + 1]) for k in range(6)]
        write_rows(g.create_group("device"), "forces", blocks, "eV/Å")
        write_rows(g, "two_blocks", [MemoryRows(np.arange(6.0).reshape(2, 3)), rf.checkpoints("demo").rows("forces", 3, "forces")])

    return write


def _expected_frequency(rf_folder: Path) -> np.ndarray:
    rng = np.random.default_rng(7)
    out = []
    for n in [3, 5, 0, 4, 1, 6, 2]:
        out.append(2.5 * rng.random(n))
        rng.integers(0, 9, (n, 3)), rng.random(n), rng.integers(0, 5, n)
    return np.concatenate(out)


def test_root_writer_concatenates_rows(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    _fill_checkpoints(rf)
    rf.write_stage("demo", _demo_writer(rf), 1.0)
    with h5py.File(rf.path) as f:
        g = f["demo"]
        assert g.attrs["writer"] == "root"
        assert np.array_equal(g["left_to_right/frequency"][()], _expected_frequency(tmp_path))
        assert g["left_to_right/frequency"].attrs["unit"] == "THz"
        assert g["left_to_right/q_frac"].shape == (21, 3)
        assert g["left_to_right/symmetry_image"].dtype == bool
        assert g["left_to_right/solve_code"].dtype == np.int8
        assert g["device/forces"].shape == (6, 5, 3)
        assert g["two_blocks"].shape == (7, 3) and np.array_equal(g["two_blocks"][:2], np.arange(6.0).reshape(2, 3))
    assert not rf.checkpoint_dir("demo").exists()


def test_rows_of_different_shapes_are_refused(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    before = rf.path.read_bytes()
    with pytest.raises(ValueError, match="rows of different shapes"):
        rf.write_stage("demo", lambda g: write_rows(g, "bad", [MemoryRows(np.zeros((2, 3))), MemoryRows(np.zeros((1, 4)))]), 1.0)
    assert rf.path.read_bytes() == before
    assert not rf.tmp_path().exists()  # no half-written copy left behind


def test_mode_choice(monkeypatch):
    monkeypatch.delenv(h5io.WRITER_ENV, raising=False)
    assert h5io.writer_mode(SerialComm()) == "root"
    monkeypatch.setenv(h5io.WRITER_ENV, "mpio")
    with pytest.raises(InputError, match="one rank"):
        h5io.writer_mode(SerialComm())
    monkeypatch.setenv(h5io.WRITER_ENV, "parallel")
    with pytest.raises(InputError) as err:
        h5io.writer_mode(SerialComm())
    assert err.value.key == h5io.WRITER_ENV and "auto, root, mpio" in err.value.message


class _FakeComm:
    def __init__(self, size, rank=0):
        self.size, self.rank = size, rank


@pytest.mark.parametrize("size", [1, 2, 3, 8, 20])
def test_checkpoint_blocks_are_dealt_in_contiguous_shares(tmp_path, size):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    _fill_checkpoints(rf)
    job = CollectiveStageWrite(rf, _FakeComm(size), "demo")
    job.skeleton = job.prepare(_demo_writer(rf))  # rank 0's part runs without MPI
    assert Path(job.skeleton.tmp).is_file()
    tables = {t.path: i for i, t in enumerate(job.skeleton.tables)}
    owners = job.owners(tables["/demo/left_to_right/frequency"])
    assert owners == sorted(owners)  # contiguous: each rank's rows are one range of the table
    counts = np.bincount(owners, minlength=size)
    assert counts.max() - counts.min() <= 1
    forces = job.owners(tables["/demo/device/forces"])
    assert all(forces[k] == 0 for k in (1, 3, 5))  # rows held by rank 0 are written by rank 0
    # what rank 0 broadcasts carries no MemoryRows data and no small datasets' data
    assert not any(isinstance(b, MemoryRows) for t in job.skeleton.tables for b in t.blocks)
    job.discard()


# ---- both writers under MPI ------------------------------------------------------------------------
MPI_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_rows import _demo_writer, _fill_checkpoints
    from hpc_itc.parallel import world
    from hpc_itc.stages.context import Context
    from hpc_itc.store.file import ResultsFile

    folder, mode, broken = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "broken"
    os.environ["HPC_ITC_H5_WRITER"] = mode
    comm = world()
    rf = ResultsFile(folder / f"{{mode}}.h5")
    ctx = Context(cfg=None, results=rf, comm=comm)
    if comm.rank == 0:
        rf.check_or_create("a" * 64, "x = 1")
        _fill_checkpoints(rf)
        if broken:  # the last rank's share of the table has a missing checkpoint
            (rf.checkpoint_dir("demo", "left_to_right") / "task_00000006.npz").unlink()
    comm.barrier()
    assert ctx.writer_mode() == mode, ctx.writer_mode()
    ctx.write_stage("demo", lambda: _demo_writer(rf), 1.0)
    print(f"rank {{comm.rank}}: ok", flush=True)
""")


def _mpi_ready() -> str:
    if not h5py.get_config().mpi:
        return "h5py is built without MPI (h5py.get_config().mpi is False); ci/cluster_checks.sh runs this in a parallel-HDF5 venv"
    return ""


def _launcher() -> list[str]:
    return shlex.split(os.environ.get("HPC_ITC_MPIEXEC", "mpiexec"))


@pytest.fixture
def mpi_or_skip():
    why = _mpi_ready()
    if why:
        if os.environ.get("HPC_ITC_REQUIRE_MPIO") == "1":
            pytest.fail(f"HPC_ITC_REQUIRE_MPIO=1 but {why}")
        pytest.skip(why)


def _run_ranks(tmp_path, ranks: int, mode: str, broken: bool = False):
    script = tmp_path / "write_demo.py"
    script.write_text(MPI_SCRIPT.format(tests=str(Path(__file__).resolve().parent)))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [*_launcher(), "-n", str(ranks), "--oversubscribe", sys.executable, str(script), str(tmp_path), mode, "broken" if broken else "ok"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _walk(path: Path) -> dict:
    out = {}
    skip = {"writer", "wall_seconds", "finished"}
    with h5py.File(path) as f:
        def visit(name, obj):
            attrs = {k: obj.attrs[k] for k in obj.attrs if k not in skip}
            if isinstance(obj, h5py.Dataset):
                out[name] = ("dataset", obj.shape, obj.dtype.str, obj[()], attrs)
            else:
                out[name] = ("group", attrs)
        f.visititems(visit)
        out["/"] = ("root", {k: f.attrs[k] for k in f.attrs if k != "created"})
    return out


@pytest.mark.parametrize("ranks", [2, 3])
def test_mpio_and_root_writers_give_the_same_file(tmp_path, mpi_or_skip, ranks):
    for mode in ("root", "mpio"):
        proc = _run_ranks(tmp_path, ranks, mode)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert proc.stdout.count(": ok") == ranks
    root, mpio = _walk(tmp_path / "root.h5"), _walk(tmp_path / "mpio.h5")
    assert sorted(root) == sorted(mpio)
    for name in root:
        a, b = root[name], mpio[name]
        assert a[0] == b[0], name
        if a[0] == "dataset":
            assert a[1:3] == b[1:3], name  # shape, dtype
            assert np.array_equal(a[3], b[3]), name  # bit for bit: the same rows, the same transforms
        assert a[-1].keys() == b[-1].keys(), name  # the same attributes (zip below stops at the shorter list)
        for (ka, va), (kb, vb) in zip(sorted(a[-1].items()), sorted(b[-1].items())):
            assert ka == kb and np.array_equal(va, vb), (name, ka)
    with h5py.File(tmp_path / "root.h5") as f, h5py.File(tmp_path / "mpio.h5") as g:
        assert f["demo"].attrs["writer"] == "root" and g["demo"].attrs["writer"] == "mpio"
        assert np.array_equal(g["demo/left_to_right/frequency"][()], _expected_frequency(tmp_path))
    assert not (tmp_path / "mpio.h5.ckpt" / "demo").exists()


def test_mpio_failure_on_one_rank_fails_all_and_keeps_the_file(tmp_path, mpi_or_skip):
    proc = _run_ranks(tmp_path, 3, "mpio", broken=True)
    assert proc.returncode != 0
    assert "task_00000006.npz" in proc.stderr  # the message names what is missing, on every rank
    assert proc.stderr.count("RemoteError") >= 3
    with h5py.File(tmp_path / "mpio.h5") as f:
        assert "demo" not in f
    assert not list(tmp_path.glob(".mpio.h5.tmp*"))
