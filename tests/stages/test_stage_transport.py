"""The transport stage end to end on cheap force constants (no MLIP): what it writes.

The stage is run through its real entry point with a serial communicator, a validated input and
a results file; only what the earlier stages would have left (the interface system, or the relaxed
slab and force constants) is handed to the run context in code (central springs, EMT Cu through
phonopy) instead of being read from the file.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from springs import DEFAULT_SPRINGS, spring_interface
from stage_runner import run_stage

from hpc_itc import config
from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.transport.system import build_system
from hpc_itc.errors import InputError

SOFT = dict(DEFAULT_SPRINGS)
SOFT[("C", "C")] = (3.0, 1.54)
SOFT[("C", "Cu")] = (1.5, 2.0)


@pytest.fixture(scope="module")
def spring_system():
    lp, rp, dev, _ = spring_interface(4, 4, 3.0, springs=SOFT)
    return build_system(lp, rp, dev, (1, 1), (4, 4))


def test_stage_writes_caroli_paths_and_sweep(tmp_path, monkeypatch, spring_system):
    with run_stage(tmp_path, {"q_mesh": [4, 4, 4], "path_points": 12, "caroli_samples": 4,
                              "q_mesh_sweep": ["2x2x2", "4x4x4"]}, system=spring_system) as f:
        g = f["transport"]
        assert 0 <= g.attrs["caroli_max_abs_diff"] < 1e-7
        assert g.attrs["max_abs_T_plus_R_minus_1"] < 1e-10
        assert g["symmetry_rotations"].shape == (4, 3, 3)
        for direction in ("left_to_right", "right_to_left"):
            d = g[direction]
            assert d.attrs["caroli_n_samples"] == 4 and 0 <= d.attrs["caroli_max_abs_diff"] < 1e-7
            assert d["frequency"].shape == d["symmetry_image"].shape == d["solve_code"].shape
            assert d.attrs["n_irreducible_columns"] == 9 and d.attrs["n_modes_solved"] > 0
            p = d["path"]
            n_pts, n_bands = p["frequency"].shape
            assert n_bands == (3 if direction == "left_to_right" else 6) and n_pts >= 12
            assert p["transmission"].shape == p["vz_incident"].shape == (n_pts, n_bands)
            assert p["q_cartesian"].shape == (n_pts, 3) and p["distance"].shape == (n_pts,)
            assert [x.decode() for x in p["labels"][()]] == ["GAMMA", "X", "U|K", "GAMMA", "W", "K", "GAMMA", "L"]
            np.testing.assert_allclose(p["label_positions"][()], p["distance"][()][p["label_index"][()]])
            t = p["transmission"][()]
            assert np.all((t[np.isfinite(t)] >= -1e-12) & (t[np.isfinite(t)] <= 1 + 1e-12))
            sweep = g["sweep"]
            assert sweep["2x2x2"][direction]["itc"].shape == (1,)
            # the sweep entry of the main mesh is the main result itself
            np.testing.assert_allclose(sweep["4x4x4"][direction]["itc"][()], d["itc"][()], rtol=1e-14)
            assert sweep["2x2x2"][direction].attrs["n_modes"] < d["frequency"].shape[0]
    assert not (tmp_path / "r.h5.ckpt").exists()
    from hpc_itc.tools.summary import summary

    sweep_itc = summary(tmp_path / "r.h5")["q_mesh_sweep_itc_MW_m2K"]
    assert set(sweep_itc) == {"2x2x2", "4x4x4"} and set(sweep_itc["2x2x2"]) == {"left_to_right", "right_to_left"}


def test_stage_results_do_not_depend_on_symmetry_or_solver(tmp_path, spring_system):
    itc = []
    for n, extra in enumerate(({}, {"use_symmetry": False, "solver": "dense"})):
        folder = tmp_path / str(n)
        folder.mkdir()
        with run_stage(folder, {"q_mesh": [4, 4, 4], "path_points": 0, "caroli_samples": 0, **extra}, system=spring_system) as f:
            itc.append([f["transport"][d]["itc"][()] for d in ("left_to_right", "right_to_left")])
            assert "caroli_max_abs_diff" not in f["transport"].attrs
    np.testing.assert_allclose(itc[0], itc[1], rtol=1e-10)


def test_bad_settings_are_input_errors(tmp_path, spring_system):
    """Refused by the validator, before the stage starts (no results file is made)."""
    for bad, key in (({"solver": "lu"}, "transport.solver"), ({"device_model": "bulk"}, "transport.device_model"),
                     ({"q_mesh_sweep": [[4, 4]]}, "transport.q_mesh_sweep"), ({"q_mesh_sweep": ["4x4"]}, "transport.q_mesh_sweep"),
                     ({"path_points": -1}, "transport.path_points")):
        with pytest.raises(InputError) as err:
            run_stage(tmp_path, {"q_mesh": [2, 2, 2], **bad}, system=spring_system)
        assert err.value.key == key
        assert not (tmp_path / "r.h5").exists()
    assert config.parse_mesh_list("k", ["6x6x4", "2X2X2", "6x6x4"]) == ((6, 6, 4), (2, 2, 2))


@pytest.fixture(scope="module")
def emt_cu(emt_cu_phonopy):
    phonon, cell = emt_cu_phonopy
    return real_space_ifc(phonon, cell)


def test_left_lead_device_model_reaches_the_radiation_limit(tmp_path, emt_cu):
    """Cu | Cu with the device built from the left lead's bulk IFCs: T = 1, h = radiation limit."""
    het = SimpleNamespace(inplane_repeat=(1, 1))
    # the slab force constants are deliberately wrong: device_model = "left_lead" must not use them
    earlier = {"relaxed": het, "force_constants": {"left_lead": emt_cu, "right_lead": emt_cu, "device": None}}
    cu_cu = {"left_material": "cu", "right_material": "cu", "n_cells_left": 3, "n_cells_right": 3}
    with run_stage(tmp_path, {"q_mesh": [4, 4, 4], "device_model": "left_lead", "path_points": 0, "caroli_samples": 3},
                   structure=cu_cu, cutoff=4.0, earlier=earlier) as f:
        g = f["transport"]
        assert g.attrs["device_model"] == "left_lead" and g.attrs["max_abs_T_plus_R_minus_1"] < 1e-8
        for direction in ("left_to_right", "right_to_left"):
            h, rad = g[direction]["itc"][()], g[direction]["radiation_limit"][()]
            assert rad[0] > 100  # a real conductance, not an empty sum
            np.testing.assert_allclose(h, rad, rtol=1e-6)
    cu_dia = dict(cu_cu, right_material="diamond")
    with pytest.raises(InputError) as err:
        run_stage(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path,
                  {"q_mesh": [2, 2, 2], "device_model": "left_lead"}, structure=cu_dia, cutoff=4.0)
    assert err.value.key == "transport.device_model"
