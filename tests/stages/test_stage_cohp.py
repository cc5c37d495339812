"""Stage cohp (hpc_itc.stages.cohp): /cohp from the configured LOBSTER folder, nothing on bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from lobster_fixtures import ENERGY, EXPECTED_ICOHP, EXPECTED_MEAN, KEPT, make_folder

from hpc_itc.errors import InputError
from hpc_itc.stages import cohp as cohp_stage
from hpc_itc.store.cohp import summary_from_group


# ---------------------------------------------------------------------------------------
# stage
# ---------------------------------------------------------------------------------------
def _ctx(tmp_path, lobster_dir):
    from hpc_itc.config import validate
    from hpc_itc.parallel import SerialComm
    from hpc_itc.stages.context import Context
    from hpc_itc.store.file import ResultsFile

    cohp_table = {"lobster_dir": lobster_dir} if lobster_dir else {}
    cfg = validate({"cohp": cohp_table}, source=tmp_path / "in.toml", base_dir=tmp_path)
    rf = ResultsFile(tmp_path / "r.h5")
    if not rf.exists():
        rf.check_or_create("0" * 64, "")
        rf.write_stage("relax", lambda g: g.attrs.__setitem__("marker", 7), 1.0)
    return Context(comm=SerialComm(), cfg=cfg, results=rf)


def test_stage_writes_group(tmp_path):
    make_folder(tmp_path / "lob", "half", cu_above=True)
    ctx = _ctx(tmp_path, "lob")  # relative to the input file's folder
    assert not cohp_stage.is_current(ctx)
    cohp_stage.run(ctx)
    assert cohp_stage.is_current(ctx)
    assert not cohp_stage.is_current(_ctx(tmp_path, str(tmp_path / "other")))
    with h5py.File(ctx.results.path, "r") as f:
        g = f["cohp"]
        assert g.attrs["complete"] and g.attrs["n_bonds"] == len(KEPT)
        assert g.attrs["charge_spilling_percent"] == pytest.approx(1.23)
        assert g.attrs["mean_minus_icohp_eV"] == pytest.approx(EXPECTED_MEAN)
        assert json.loads(g.attrs["counts"]) == {t: n for t, (n, _) in EXPECTED_ICOHP["half"].items()}
        assert g.attrs["folder"] == str((tmp_path / "lob").resolve())
        np.testing.assert_allclose(g["energy"][()], ENERGY, atol=1e-5)
        assert g["minus_cohp_mean"].shape == ENERGY.shape and g["energy"].attrs["unit"] == "eV"
        types = [t.decode() for t in g["types"][()]]
        assert types[:4] == ["C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N"]
        table = dict(zip(types, g["type_minus_icohp_mean"][()]))
        assert table["N-Cu"] == pytest.approx(1.1) and table["C-N"] == pytest.approx(5.0)
        assert g["type_minus_cohp_mean"].shape == (len(types), len(ENERGY))
        assert len(g["bonds/label"]) == len(KEPT)
        summary = summary_from_group(g)
    assert summary["per_type"]["C(1)-C(2)"] == {"count": 1, "minus_icohp_eV": pytest.approx(5.4), "length_A": pytest.approx(summary["per_type"]["C(1)-C(2)"]["length_A"])}
    assert summary["n_bonds"] == len(KEPT)


def test_stage_error_leaves_file_alone(tmp_path):
    ctx = _ctx(tmp_path, "missing")
    before = (tmp_path / "r.h5").read_bytes()
    with pytest.raises(InputError) as info:
        cohp_stage.run(ctx)
    assert info.value.key == "cohp.lobster_dir" and "\n" not in info.value.message
    assert (tmp_path / "r.h5").read_bytes() == before
    with h5py.File(ctx.results.path, "r") as f:
        assert "cohp" not in f and f["relax"].attrs["marker"] == 7


def test_stage_without_folder_does_nothing(tmp_path):
    ctx = _ctx(tmp_path, "")
    cohp_stage.run(ctx)
    with h5py.File(ctx.results.path, "r") as f:
        assert "cohp" not in f

