"""COHP analysis of finished LOBSTER folders (hpc_itc.core.cohp; paper Eqs. 8-10, Fig. 6).

The folders are hand-built (tests/lobster_fixtures.py); the expected answers are written out from
the numbers put into the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.io import write as ase_write
from lobster_fixtures import (
    BONDS,
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
    assert lay.kind == "interface" and lay.stacking_axis == "c"
    assert [side.name for side in lay.sides] == (["diamond", "Cu"] if cu_above else ["Cu", "diamond"])
    assert lay.side("Cu").position == ("above" if cu_above else "below")
    site = {role: int(name.lstrip("CuN")) - 1 for role, name in names.items()}
    assert lay.side("Cu").first_layer_planes == (tuple(sorted([site["cuC0"], site["cuC1"]])),)
    assert lay.side("diamond").first_layer_planes == (tuple(sorted([site["d1_0"], site["d1_1"]])), tuple(sorted([site["d2_0"], site["d2_1"]])))


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


def test_vacuum_across_two_vectors_is_refused(tmp_path):
    make_folder(tmp_path)
    atoms, *_ = build_slab("bare")
    atoms.set_cell(np.diag([30.0, 2.5, 40.0]), scale_atoms=False)
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    assert "vacuum across lattice vectors a, c" in _error(tmp_path).message


def test_rotated_slab_same_answer(tmp_path):
    """A rigid rotation (a, b out of the xy plane, c not along z) changes nothing: the axis is found from the lattice."""
    make_folder(tmp_path, "half")
    atoms, *_ = build_slab("half")
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", [30.0, -50.0, 20.0], degrees=True).as_matrix()
    frac = atoms.get_scaled_positions()
    atoms.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    atoms.set_scaled_positions(frac)
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    res = cohp.analyse_lobster_folder(tmp_path)
    assert res.layers.stacking_axis == "c" and res.layers.kind == "interface"
    assert {int(b.label) for b in res.bonds} == KEPT
    assert res.counts() == {t: n for t, (n, _) in EXPECTED_ICOHP["half"].items()}
    assert res.minus_icohp_mean_eV == pytest.approx(EXPECTED_MEAN, abs=1e-9)


def test_one_material_slab_reports_every_bond(tmp_path):
    """The fixture slab with every Cu made C: no plane boundary separates two materials; all 14 bonds, by shell."""
    make_folder(tmp_path, "bare")
    atoms, *_ = build_slab("bare")
    atoms.set_chemical_symbols(["C"] * len(atoms))
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    for name in ("ICOHPLIST.lobster", "COHPCAR.lobster"):
        path = tmp_path / name
        path.write_text(path.read_text().replace("Cu", "C"))
    res = cohp.analyse_lobster_folder(tmp_path)
    assert res.layers.kind == "one-material slab" and res.layers.sides == ()
    assert len(res.bonds) == len(BONDS) == res.n_bonds
    assert res.minus_icohp_mean_eV == pytest.approx(-sum(b[3] for b in BONDS) / len(BONDS), abs=1e-9)
    assert all(t.startswith("C-C ") and t.endswith(" Å") for t in res.per_type)
    assert sum(t.count for t in res.per_type.values()) == len(BONDS)
    shortest = min(res.per_type.values(), key=lambda t: t.length_mean_A)
    assert list(res.per_type.values())[0] is shortest  # shells from the nearest outwards


ALN = Path(__file__).resolve().parents[1] / "data" / "lobster" / "AlN_v51"


def test_real_lobster5_bulk_aln_matches_pymatgen():
    """Real LOBSTER 5.1 output (wurtzite AlN, spin-polarised, POSCAR.lobster.vasp): a bulk crystal, every bond kept,
    each shell's -ICOHP the mean of pymatgen's own per-bond values (spins summed)."""
    from pymatgen.io.lobster import Icohplist

    res = cohp.analyse_lobster_folder(ALN)
    assert res.layers.kind == "bulk" and res.structure_file == "POSCAR.lobster.vasp.gz" and res.spin_polarized
    listed = Icohplist(filename=str(ALN / "ICOHPLIST.lobster.gz")).icohplist
    assert res.n_bonds == res.n_icohp_entries == len(listed)
    first = next(iter(res.per_type))
    assert first.startswith("Al-N ")
    nearest = [-sum(v["icohp"].values()) for v in listed.values() if v["length"] < 2.0]
    assert res.per_type[first].count == len(nearest) == 8  # 4 Al-N bonds around each of the 2 Al
    assert res.per_type[first].minus_icohp_mean_eV == pytest.approx(np.mean(nearest), abs=1e-9)
    assert 1.88 < res.per_type[first].length_mean_A < 1.92  # wurtzite AlN: 1.89 Å x 3, 1.90 Å
    assert res.minus_icohp_mean_eV == pytest.approx(np.mean([-sum(v["icohp"].values()) for v in listed.values()]), abs=1e-9)


def _planes_structure(planes, a=2.5, c=40.0):
    """A slab of single-atom planes (symbol, z in Å) in an a x a x c cell (pymatgen Structure)."""
    from pymatgen.core import Lattice, Structure

    species = [sym for sym, _ in planes]
    coords = [[0.5 * (k % 2), 0.0, z / c] for k, (_, z) in enumerate(planes)]
    return Structure(Lattice.from_parameters(a, a, c, 90, 90, 90), species, coords)


def test_general_two_material_interface():
    """GaN | AlN bilayers (0.6 Å within, 1.9 Å between): the interface is the wide N | Al gap, each side's first layer
    its bilayer, labels numbered by plane from the interface."""
    planes = [("Ga", 10.0), ("N", 10.6), ("Ga", 12.5), ("N", 13.1), ("Al", 15.0), ("N", 15.6), ("Al", 17.5), ("N", 18.1)]
    lay = cohp.identify_interface_layers(_planes_structure(planes))
    assert lay.kind == "interface" and [s.name for s in lay.sides] == ["GaN", "AlN"]
    assert lay.interface_z_A == pytest.approx(0.5 * (13.1 + 15.0) - 10.0)
    assert lay.labels == [None, None, "Ga(2)", "N(1)", "Al(1)", "N(2)", None, None]
    assert cohp.bond_type("N(1)", "Al(1)") == "Al(1)-N(1)"


def test_dft_interfaces_first_layers():
    """The vendored DFT interfaces: bare (terminal C plane 1.29 Å above the next) and N-terminated (C and N share the
    terminal plane): one Cu plane and two diamond planes, the paper's first layers, and N labelled N."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(Path(cohp.__file__).resolve().parents[1] / "data" / "split_train.extxyz", ":")
    for config_type, n_expected in (("cu_diamond", 0), ("cu_n_diamond", 1)):
        atoms = next(a for a in frames if a.info.get("config_type") == config_type)
        atoms = atoms.copy()
        atoms.center(vacuum=6.0, axis=2)  # the DFT cells are periodic along z; give the slab its vacuum
        lay = cohp.identify_interface_layers(AseAtomsAdaptor.get_structure(atoms))
        assert lay.kind == "interface"
        cu, dia = lay.side("Cu"), lay.side("diamond")
        assert len(cu.first_layer_planes) == 1 and len(dia.first_layer_planes) == 2
        z = lay.z_A
        gap = abs(np.mean(z[list(dia.first_layer_planes[0])]) - np.mean(z[list(cu.first_layer_planes[0])]))
        assert 1.2 < gap < 2.1  # the Cu-diamond plane spacing of the bonded interface
        labels = {lay.labels[i] for i in dia.first_layer}
        assert labels == ({"C(1)", "C(2)", "N"} if n_expected else {"C(1)", "C(2)"})


def test_structure_from_another_run(tmp_path):
    make_folder(tmp_path, "bare")
    atoms, *_ = build_slab("bare")
    atoms.positions[:, 2] *= 1.05  # same atoms, stretched: lengths do not fit
    ase_write(tmp_path / "POSCAR", atoms, format="vasp", direct=True)
    assert "not the one LOBSTER used" in _error(tmp_path).message


def test_no_interface_bonds_listed(tmp_path):
    make_folder(tmp_path, "bare")
    _error(tmp_path, min_dz_A=10.0)


