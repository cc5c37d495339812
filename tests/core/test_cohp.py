"""COHP analysis of finished LOBSTER folders (hpc_itc.core.cohp; paper Eqs. 8-10, Fig. 6).

The folders are hand-built (tests/lobster_fixtures.py); the expected answers are written out from
the numbers put into the files.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import write as ase_write
from lobster_fixtures import (
    BONDS,
    CELL,
    EFERMI,
    ENERGY,
    EXPECTED_ICOHP,
    EXPECTED_MEAN,
    EXPECTED_TYPES,
    KEPT,
    SHAPE,
    build_slab,
    make_folder,
)

from hpc_itc.core import cohp
from hpc_itc.errors import InvalidInput


# ---------------------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("termination", ["bare", "N", "half"])
@pytest.mark.parametrize("cu_above", [False, True])
@pytest.mark.parametrize("fmt", ["5.1", "3.1", "5.1-spin"])
def test_analysis_known_answer(tmp_path, termination, cu_above, fmt):
    geometry, names = make_folder(tmp_path, termination, cu_above, fmt=fmt)
    res = cohp.analyse_lobster_folder(tmp_path)

    assert {int(b.label) for b in res.bonds} == KEPT
    assert {int(b.label): b.type for b in res.bonds} == EXPECTED_TYPES[termination]
    assert res.n_bonds == len(KEPT)
    assert res.minus_icohp_mean_eV == pytest.approx(EXPECTED_MEAN, abs=1e-9)
    assert res.counts() == {t: n for t, (n, _) in EXPECTED_ICOHP[termination].items()}
    for t, (n, mean) in EXPECTED_ICOHP[termination].items():
        assert res.per_type[t].minus_icohp_mean_eV == pytest.approx(mean, abs=1e-9), t
        ks = [k for k, tt in EXPECTED_TYPES[termination].items() if tt == t]
        assert res.per_type[t].length_mean_A == pytest.approx(np.mean([geometry[k][0] for k in ks]), abs=1e-4)
        scales = [BONDS[k - 1][4] for k in ks]
        np.testing.assert_allclose(res.per_type[t].minus_cohp_mean, np.mean(scales) * SHAPE, atol=1e-5)
    # the paper's four types come first, in the paper's order
    paper = [t for t in cohp.PAPER_TYPES if t in res.per_type]
    assert list(res.per_type)[: len(paper)] == paper
    # -COHP averaged over the kept bonds: mean of their scales (1,2,3,4,5,6,11,14) times the shape
    np.testing.assert_allclose(res.minus_cohp_mean, np.mean([1, 2, 3, 4, 5, 6, 11, 14]) * SHAPE, atol=1e-5)
    np.testing.assert_allclose(res.energy_eV, ENERGY, atol=1e-5)
    assert res.efermi_eV == pytest.approx(EFERMI)
    assert res.spin_polarized == (fmt == "5.1-spin")
    for b in res.bonds:
        assert abs(b.dz_A) == pytest.approx(abs(geometry[int(b.label)][1]), abs=1e-4)

    lay = res.layers
    assert lay.cu_side == ("above" if cu_above else "below")
    site = {role: int(name.lstrip("CuN")) - 1 for role, name in names.items()}
    assert lay.cu_layer == sorted([site["cuC0"], site["cuC1"]])
    assert lay.diamond_planes[0] == sorted([site["d1_0"], site["d1_1"]])
    assert lay.diamond_planes[1] == sorted([site["d2_0"], site["d2_1"]])


def test_slab_across_the_cell_boundary(tmp_path):
    """The slab straddles z = c (LOBSTER translations then have c components); same answer."""
    make_folder(tmp_path, "half", z_shift=30.0)
    res = cohp.analyse_lobster_folder(tmp_path)
    assert {int(b.label) for b in res.bonds} == KEPT
    assert res.minus_icohp_mean_eV == pytest.approx(EXPECTED_MEAN, abs=1e-9)
    assert res.counts() == {t: n for t, (n, _) in EXPECTED_ICOHP["half"].items()}


def test_lobster2_list_weights_equivalent_bonds(tmp_path):
    """LOBSTER 2.2 lists carry no translation and average over '# bonds'; bond 1 stands for two bonds."""
    make_folder(tmp_path, "bare", fmt="2.2", num={1: 2})
    res = cohp.analyse_lobster_folder(tmp_path)
    assert res.n_bonds == 9
    assert res.per_type["C(1)-Cu"].count == 5
    assert res.per_type["C(1)-Cu"].minus_icohp_mean_eV == pytest.approx((2 * 1.0 + 1.2 + 1.4 + 1.6) / 5)
    assert res.minus_icohp_mean_eV == pytest.approx((16.4 + 1.0) / 9)
    np.testing.assert_allclose(res.minus_cohp_mean, (2 * 1 + 2 + 3 + 4 + 5 + 6 + 11 + 14) / 9 * SHAPE, atol=1e-5)


def test_min_dz_threshold(tmp_path):
    """With the threshold below the 0.1 Å rumple, the in-plane bond 7 of the terminal plane counts (C(1)-C(1))."""
    make_folder(tmp_path, "bare")
    res = cohp.analyse_lobster_folder(tmp_path, min_dz_A=0.05)
    assert {int(b.label) for b in res.bonds} == KEPT | {7}
    assert res.per_type["C(1)-C(1)"].count == 1


def test_structure_file_names(tmp_path):
    make_folder(tmp_path, "N")
    (tmp_path / "POSCAR").rename(tmp_path / "CONTCAR")
    res = cohp.analyse_lobster_folder(tmp_path)
    assert res.structure_file == "CONTCAR" and res.n_bonds == len(KEPT)
    (tmp_path / "CONTCAR").rename(tmp_path / "POSCAR.lobster.vasp")  # the name LOBSTER itself writes
    res = cohp.analyse_lobster_folder(tmp_path)
    assert res.structure_file == "POSCAR.lobster.vasp" and res.n_bonds == len(KEPT)


# ---------------------------------------------------------------------------------------
# errors: one line, subject lobster_dir
# ---------------------------------------------------------------------------------------
def _error(folder, **kw) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        cohp.analyse_lobster_folder(folder, **kw)
    exc = info.value
    assert exc.subject == "lobster_dir"
    assert "\n" not in exc.message and exc.message
    return exc


def test_missing_folder_and_files(tmp_path):
    assert "not found" in _error(tmp_path / "nope").message
    make_folder(tmp_path / "a")
    (tmp_path / "a" / "COHPCAR.lobster").unlink()
    assert "COHPCAR.lobster" in _error(tmp_path / "a").message
    make_folder(tmp_path / "b")
    (tmp_path / "b" / "POSCAR").unlink()
    assert "POSCAR" in _error(tmp_path / "b").message
    make_folder(tmp_path / "c")
    (tmp_path / "c" / "ICOHPLIST.lobster").unlink()
    assert "ICOHPLIST.lobster" in _error(tmp_path / "c").message


@pytest.mark.parametrize("cut", ["cohpcar_lines", "cohpcar_mid_line", "icohp_lines", "icohp_lines_v3", "icohp_mid_line",
                                 "empty_icohp", "empty_cohpcar"])
def test_truncated_files(tmp_path, cut):
    make_folder(tmp_path, "half", fmt="3.1" if cut.endswith("v3") else "5.1")
    name = "COHPCAR.lobster" if "cohpcar" in cut else "ICOHPLIST.lobster"
    path = tmp_path / name
    text = path.read_text()
    if cut.startswith("empty"):
        path.write_text("")
    elif cut.endswith("mid_line"):
        path.write_text(text[: int(len(text) * 0.6)])
    else:
        lines = text.splitlines()
        path.write_text("\n".join(lines[: len(lines) - 5]) + "\n")
    message = _error(tmp_path).message
    assert name in message
    if cut == "icohp_lines_v3":  # parses cleanly; caught by comparing with COHPCAR.lobster
        assert "lists 9 bonds but COHPCAR.lobster 14" in message


def test_unfinished_lobsterout(tmp_path):
    make_folder(tmp_path, lobsterout=False)
    (tmp_path / "lobsterout").write_text("LOBSTER v5.1.1\nsetting up basis...\n")
    assert "did not finish" in _error(tmp_path).message


def test_no_interface(tmp_path):
    make_folder(tmp_path)
    atoms = Atoms("C4", positions=[[0, 0, 10], [1.25, 1.25, 10.9], [0, 1.25, 11.8], [1.25, 0, 12.7]], cell=CELL, pbc=True)
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    assert "no Cu/diamond interface" in _error(tmp_path).message


def test_no_vacuum(tmp_path):
    make_folder(tmp_path)
    atoms = Atoms("Cu2C2", positions=[[0, 0, 0.5], [1.25, 1.25, 2.3], [0, 0, 4.0], [1.25, 0, 4.9]], cell=np.diag([2.5, 2.5, 6.0]), pbc=True)
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    assert "vacuum" in _error(tmp_path).message


def test_structure_from_another_run(tmp_path):
    make_folder(tmp_path, "bare")
    atoms, *_ = build_slab("bare")
    atoms.positions[:, 2] *= 1.05  # same atoms, stretched: lengths do not fit
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    assert "not the one LOBSTER used" in _error(tmp_path).message


def test_no_interface_bonds_listed(tmp_path):
    make_folder(tmp_path, "bare")
    _error(tmp_path, min_dz_A=10.0)


