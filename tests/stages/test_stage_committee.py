"""The committee stage: force constants and transport per member on mlip.model's interface, h mean ± spread."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from small_input import SMALL

from hpc_itc.cli import main
from hpc_itc.core.mlip import default_model_path
from hpc_itc.store.committee import paired_ratio, read_committee


@pytest.fixture(scope="module")
def committee_of_the_default(finished_run, tmp_path_factory):
    """The finished small run plus a committee of two copies of the default model (under other names)."""
    folder = tmp_path_factory.mktemp("committee")
    shutil.copyfile(finished_run[1], folder / "small.h5")
    for name in ("a.model", "b.model"):
        shutil.copyfile(default_model_path(), folder / name)
    path = folder / "in.toml"
    path.write_text(SMALL.format(out="small.h5") + '\n[committee]\nmodels = ["a.model", "b.model"]\n')
    assert main([str(path)]) == 0
    return path, folder


def test_members_with_the_main_model_reproduce_its_h_exactly(committee_of_the_default):
    """A member identical to mlip.model, on the same relaxed interface, must give /transport's h: the known
    answer that ties the committee's numbers to the main run's (spread 0)."""
    _, folder = committee_of_the_default
    with h5py.File(folder / "small.h5") as f:
        main_itc = {d: f["transport"][d]["itc"][()] for d in ("left_to_right", "right_to_left")}
        c = read_committee(f)
        assert f["committee"].attrs["n_members"] == 2
        np.testing.assert_allclose(f["committee/itc_main_model"][()], [main_itc[d] for d in c.directions], rtol=1e-12)
    assert c.itc_MW_m2K.shape == (2, 2, 1)
    for i, d in enumerate(c.directions):
        np.testing.assert_allclose(c.itc_MW_m2K[:, i, :], np.broadcast_to(main_itc[d], (2, 1)), rtol=1e-9)
    np.testing.assert_allclose(c.spread, 0.0, atol=1e-9)
    assert paired_ratio(c, c, "left_to_right", 300.0) == pytest.approx((1.0, 0.0))


def test_member_files_hold_the_main_geometry_and_their_own_model(committee_of_the_default):
    _, folder = committee_of_the_default
    members = sorted((folder / "small.committee").glob("member_*.h5"))
    assert [p.name for p in members] == ["member_1.h5", "member_2.h5"]
    with h5py.File(folder / "small.h5") as main_f, h5py.File(members[1]) as f:
        assert set(f) >= {"structure", "relax", "force_constants", "transport"}
        np.testing.assert_array_equal(f["relax/positions"][()], main_f["relax/positions"][()])
        inputs = json.loads(f["force_constants"].attrs["inputs"])
        assert inputs["mlip.model"].endswith("b.model")  # the member's model ...
        assert inputs["mlip.relaxed_with_model_sha256"] == json.loads(main_f["relax"].attrs["inputs"])["mlip.model_sha256"]


def test_rerun_reuses_the_committee_and_inspect_reports_it(committee_of_the_default, capsys):
    path, folder = committee_of_the_default
    before = (folder / "small.committee" / "member_1.h5").stat().st_mtime_ns
    assert main([str(path)]) == 0
    assert (folder / "small.committee" / "member_1.h5").stat().st_mtime_ns == before
    capsys.readouterr()
    assert main(["inspect", str(folder / "small.h5")]) == 0
    out = capsys.readouterr().out
    assert "committee: 2 members (a.model, b.model)" in out and "± 0.000" in out


@pytest.mark.parametrize("models, says", [(["a.model"], "two or more"), (["missing.model", "a.model"], "not found"),
                                          (["shipped", "a.model"], "two or more")])
def test_bad_committee_is_refused_in_one_line(tmp_path, capsys, models, says):
    shutil.copyfile(default_model_path(), tmp_path / "a.model")
    path = tmp_path / "in.toml"
    path.write_text(SMALL.format(out="x.h5") + f"\n[committee]\nmodels = {json.dumps(models)}\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: committee.models") and says in err and "\n" not in err
    assert not (tmp_path / "x.h5").exists()


def test_committee_over_two_ranks_matches_one(committee_of_the_default, tmp_path):
    """Two ranks, two members: one member per rank (split communicator), same numbers as one rank."""
    if shutil.which("mpiexec") is None:
        pytest.skip("no mpiexec on PATH")
    from test_driver_mpi import _env

    path, folder = committee_of_the_default
    for p in ("small.h5", "a.model", "b.model", "in.toml"):
        shutil.copyfile(folder / p, tmp_path / p)
    with h5py.File(tmp_path / "small.h5", "a") as f:
        del f["committee"]
    proc = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", sys.executable, "-m", "hpc_itc", str(tmp_path / "in.toml")],
                          capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 group(s) of ranks" in proc.stderr
    with h5py.File(folder / "small.h5") as f1, h5py.File(tmp_path / "small.h5") as f2:
        np.testing.assert_allclose(f2["committee/itc"][()], f1["committee/itc"][()], rtol=1e-9)
