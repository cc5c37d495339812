"""The driver under mpiexec: two ranks give the same results as one."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from small_input import SMALL

pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec on PATH")


def _env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMP_NUM_THREADS="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    return env


def test_two_ranks_match_one(tmp_path, finished_run_summary):
    path = tmp_path / "in.toml"
    path.write_text(SMALL.format(out="mpi.h5"))
    proc = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", sys.executable, "-m", "hpc_itc", str(path)],
                          capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 rank(s)" in proc.stderr
    out = subprocess.run([sys.executable, "-m", "hpc_itc", "inspect", str(tmp_path / "mpi.h5"), "--json"],
                         capture_output=True, text=True, check=True)
    parallel = json.loads(out.stdout)
    import h5py

    # the distributed stages go through Context.write_stage: MPI-IO where h5py has MPI, rank 0 otherwise
    expected = "mpio" if h5py.get_config().mpi else "root"
    with h5py.File(tmp_path / "mpi.h5") as f:
        assert f["structure"].attrs["writer"] == "root"
        assert f["force_constants"].attrs["writer"] == expected and f["ldos"].attrs["writer"] == expected
    serial = finished_run_summary
    assert parallel["input_sha256"] == serial["input_sha256"]
    assert parallel["n_force_evaluations"] == serial["n_force_evaluations"]
    for direction, values in serial["itc_MW_m2K"].items():
        for temp, h in values.items():
            assert parallel["itc_MW_m2K"][direction][temp] == pytest.approx(h, rel=1e-9, abs=1e-12)


def test_error_on_bad_input_under_mpi(tmp_path):
    path = tmp_path / "in.toml"
    path.write_text("[structure]\nn_cells_left = -1\n")
    proc = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", sys.executable, "-m", "hpc_itc", str(path)],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("error: structure.n_cells_left") == 1
    assert "Traceback" not in proc.stderr
