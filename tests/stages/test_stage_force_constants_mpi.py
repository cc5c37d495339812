"""The force-constant stage as real processes: rank-count independence under mpiexec, and a SIGKILL
in the middle of the stage followed by a rerun that evaluates only the missing displacements.

Both run the shipped default model on a tiny Cu/diamond input (9-atom slab, 3 x 3 in-plane supercell),
starting from one relaxed results file that every run copies.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_itc.cli import main

REPO = Path(__file__).resolve().parents[2]

TINY = """
[run]
output = "t.h5"
stages = {stages}
log_level = "{log_level}"
progress_seconds = 600.0

[structure]
n_cells_left = 2
n_cells_right = 2
buffer_cells = 1

[relax]
fmax_eV_A = 0.2
lattice = "model"

[force_constants]
cutoff_A = 3.0
"""
ALL_STAGES = '["structure", "relax", "force_constants"]'


def _env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMP_NUM_THREADS="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory):
    """A results file with structure and relax done (the input hash ignores run.stages and log_level)."""
    folder = tmp_path_factory.mktemp("relaxed")
    (folder / "in.toml").write_text(TINY.format(stages='["structure", "relax"]', log_level="info"))
    assert main([str(folder / "in.toml")]) == 0
    return folder / "t.h5"


def _prepare(relaxed_h5: Path, folder: Path, log_level: str = "info") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(relaxed_h5, folder / "t.h5")
    (folder / "in.toml").write_text(TINY.format(stages=ALL_STAGES, log_level=log_level))
    return folder / "in.toml"


def _mpirun(inp: Path, ranks: int) -> str:
    proc = subprocess.run(["mpiexec", "-n", str(ranks), "--oversubscribe", sys.executable, "-m", "hpc_itc", str(inp)],
                          capture_output=True, text=True, env=_env(), timeout=900, cwd=inp.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _arrays(h5: Path) -> dict:
    with h5py.File(h5) as f:
        g = f["force_constants"]
        out = {"n": int(g.attrs["n_force_evaluations"])}
        for part in ("left_lead", "right_lead", "device"):
            out[part] = {k: g[part][k][()] for k in ("force_constants", "forces")}
            out[part]["n"] = int(g[part].attrs["n_force_evaluations"])
        return out


needs_mpiexec = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec on PATH")


@pytest.fixture(scope="module")
def one_rank(relaxed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    if shutil.which("mpiexec") is None:
        inp = _prepare(relaxed, folder)
        proc = subprocess.run([sys.executable, "-m", "hpc_itc", str(inp)], capture_output=True, text=True, env=_env(), timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = proc.stderr
    else:
        log = _mpirun(_prepare(relaxed, folder), 1)
    assert "1 ranks" in log
    return _arrays(folder / "t.h5")


@needs_mpiexec
def test_two_ranks_store_the_same_force_constants(relaxed, one_rank, tmp_path):
    log = _mpirun(_prepare(relaxed, tmp_path), 2)
    assert "2 ranks" in log
    two = _arrays(tmp_path / "t.h5")
    assert two["n"] == one_rank["n"]
    for part in ("left_lead", "right_lead", "device"):
        assert two[part]["n"] == one_rank[part]["n"]
        assert two[part]["force_constants"].shape == one_rank[part]["force_constants"].shape
        assert np.abs(two[part]["force_constants"] - one_rank[part]["force_constants"]).max() <= 1e-10
        assert np.abs(two[part]["forces"] - one_rank[part]["forces"]).max() <= 1e-10


def test_sigkill_mid_stage_then_rerun_computes_only_the_missing(relaxed, one_rank, tmp_path):
    inp = _prepare(relaxed, tmp_path, log_level="debug")
    ckpt = tmp_path / "t.h5.ckpt" / "force_constants"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hpc_itc", str(inp)], stdout=log, stderr=log, env=_env())
        deadline = time.monotonic() + 600
        while True:
            if len(list(ckpt.glob("*/task_*.npz"))) >= 3:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    before = {(p.parent.name, int(p.stem.split("_")[1])) for p in ckpt.glob("*/task_*.npz")}
    all_tasks = {(part, k) for part in ("left_lead", "right_lead", "device") for k in range(one_rank[part]["n"])}
    assert 3 <= len(before) < len(all_tasks)
    with h5py.File(tmp_path / "t.h5") as f:
        assert "force_constants" not in f  # killed before the stage was written

    proc = subprocess.run([sys.executable, "-m", "hpc_itc", str(inp)], capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    assert int(re.search(r"(\d+) already checkpointed", log).group(1)) == len(before)
    evaluated = {(m.group(1), int(m.group(2))) for m in re.finditer(r"evaluated (\w+) displacement (\d+)", log)}
    assert evaluated.isdisjoint(before)  # nothing computed twice
    assert evaluated | before == all_tasks  # and nothing left out
    assert int(re.search(r"(\d+) force evaluations in this run", log).group(1)) == len(all_tasks) - len(before)
    rerun = _arrays(tmp_path / "t.h5")
    assert rerun["n"] == one_rank["n"]
    for part in ("left_lead", "right_lead", "device"):
        assert np.abs(rerun[part]["force_constants"] - one_rank[part]["force_constants"]).max() <= 1e-10
    assert not (tmp_path / "t.h5.ckpt").exists()
