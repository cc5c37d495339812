"""COHP: LOBSTER input writing and the analysis of finished LOBSTER folders (paper Eqs. 8-10, Fig. 6).

The LOBSTER outputs here are written by the tests themselves, in the formats that
pymatgen's Icohplist / Cohpcar parsers read (LOBSTER 5.1 with orbital lines, 3.1,
5.1 spin-polarised, 2.2 with bond multiplicities).  The slab is built by hand, each
atom has a role (first Cu plane, terminal diamond plane, ...), and the expected
answers below are written out from the numbers put into the files, not computed
by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.io import write as ase_write

from hpc_itc.core import cohp
from hpc_itc.errors import InputError

# ---------------------------------------------------------------------------------------
# a hand-built Cu/diamond slab: in-plane 5.0 x 2.5 Å (two sites per plane), c = 40 Å
# ---------------------------------------------------------------------------------------
CELL = np.diag([5.0, 2.5, 40.0])
ROLES = {  # role: (plane, position); Cu below diamond
    "cuA0": ("Cu", (0.00, 0.00, 8.0)), "cuA1": ("Cu", (2.50, 0.00, 8.0)),
    "cuB0": ("Cu", (1.25, 1.25, 9.8)), "cuB1": ("Cu", (3.75, 1.25, 9.8)),
    "cuC0": ("Cu", (0.00, 0.00, 11.6)), "cuC1": ("Cu", (2.50, 0.00, 11.6)),  # first Cu layer
    "d1_0": ("D1", (1.25, 1.25, 13.2)), "d1_1": ("D1", (3.75, 1.25, 13.3)),  # terminal plane, rumpled by 0.1 Å
    "d2_0": ("C", (1.25, 0.00, 14.1)), "d2_1": ("C", (3.75, 0.00, 14.1)),  # second diamond plane
    "d3_0": ("C", (0.00, 0.00, 15.0)), "d3_1": ("C", (2.50, 0.00, 15.0)),
    "d4_0": ("C", (0.00, 1.25, 15.9)), "d4_1": ("C", (2.50, 1.25, 15.9)),
}
TERMINATIONS = {"bare": ("C", "C"), "N": ("N", "N"), "half": ("N", "C")}  # symbols of d1_0, d1_1

# (role1, role2, in-plane translation of atom 2 in cells, ICOHP (eV), COHP scale); the comment says why it is kept or not
BONDS = [
    ("cuC0", "d1_0", (0, 0), -1.0, 1.0),  # 1 across the interface: kept
    ("cuC1", "d1_0", (0, 0), -1.2, 2.0),  # 2 kept
    ("cuC1", "d1_1", (0, 0), -1.4, 3.0),  # 3 kept
    ("cuC0", "d1_1", (-1, 0), -1.6, 4.0),  # 4 kept, periodic image
    ("d1_0", "d2_0", (0, 0), -5.0, 5.0),  # 5 inside the first diamond layer: kept
    ("d1_1", "d2_1", (0, 0), -5.4, 6.0),  # 6 kept
    ("d1_0", "d1_1", (0, 0), -3.0, 7.0),  # 7 same plane, dz = 0.1 Å < 0.3: excluded
    ("cuC0", "cuC1", (0, 0), -0.5, 8.0),  # 8 same plane: excluded
    ("cuB0", "cuC0", (0, 0), -0.7, 9.0),  # 9 second Cu layer: excluded
    ("d2_0", "d3_0", (0, 0), -6.0, 10.0),  # 10 third diamond plane: excluded
    ("cuC0", "d2_0", (0, 0), -0.3, 11.0),  # 11 Cu to the second diamond plane: kept, type C(2)-Cu
    ("cuB1", "d1_1", (0, 0), -0.2, 12.0),  # 12 second Cu layer: excluded
    ("d2_0", "d2_1", (0, 0), -0.1, 13.0),  # 13 same plane: excluded
    ("d2_1", "cuC1", (0, 0), -0.5, 14.0),  # 14 reversed order, kept, type C(2)-Cu
]
KEPT = {1, 2, 3, 4, 5, 6, 11, 14}
# expected types of the kept bonds, by termination (written out by hand)
EXPECTED_TYPES = {
    "bare": {1: "C(1)-Cu", 2: "C(1)-Cu", 3: "C(1)-Cu", 4: "C(1)-Cu", 5: "C(1)-C(2)", 6: "C(1)-C(2)", 11: "C(2)-Cu", 14: "C(2)-Cu"},
    "N": {1: "N-Cu", 2: "N-Cu", 3: "N-Cu", 4: "N-Cu", 5: "C-N", 6: "C-N", 11: "C(2)-Cu", 14: "C(2)-Cu"},
    "half": {1: "N-Cu", 2: "N-Cu", 3: "C(1)-Cu", 4: "C(1)-Cu", 5: "C-N", 6: "C(1)-C(2)", 11: "C(2)-Cu", 14: "C(2)-Cu"},
}
# -ICOHP means by type, by hand from the table above
EXPECTED_ICOHP = {
    "bare": {"C(1)-Cu": (4, 1.3), "C(1)-C(2)": (2, 5.2), "C(2)-Cu": (2, 0.4)},
    "N": {"N-Cu": (4, 1.3), "C-N": (2, 5.2), "C(2)-Cu": (2, 0.4)},
    "half": {"C(1)-Cu": (2, 1.5), "N-Cu": (2, 1.1), "C(1)-C(2)": (1, 5.4), "C-N": (1, 5.0), "C(2)-Cu": (2, 0.4)},
}
EXPECTED_MEAN = 16.4 / 8  # (1.0+1.2+1.4+1.6+5.0+5.4+0.3+0.5) / 8, all terminations
ENERGY = np.linspace(-10.0, 5.0, 16)
SHAPE = np.exp(-0.5 * ((ENERGY + 4.0) / 2.0) ** 2)  # COHP of bond k = -scale_k * SHAPE
EFERMI = 7.12345


def build_slab(termination="bare", cu_above=False, z_shift=0.0):
    """ASE atoms grouped Cu, C, N (POSCAR order) and {role: POSCAR name like 'C7'}; also unwrapped z per role."""
    d1 = dict(zip(("d1_0", "d1_1"), TERMINATIONS[termination]))
    rows = []
    for role, (plane, pos) in ROLES.items():
        sym = d1.get(role, "Cu" if plane == "Cu" else "C")
        x, y, z = pos
        if cu_above:
            z = CELL[2, 2] - z
        rows.append((role, sym, np.array([x, y, z])))
    order = {"Cu": 0, "C": 1, "N": 2}
    rows.sort(key=lambda r: order[r[1]])  # stable
    names, unwrapped = {}, {}
    counts = {}
    for k, (role, sym, pos) in enumerate(rows):
        names[role] = f"{sym}{k + 1}"
        unwrapped[role] = pos.copy()
        counts[sym] = counts.get(sym, 0) + 1
    positions = np.array([r[2] for r in rows])
    positions[:, 2] = positions[:, 2] + z_shift
    atoms = Atoms([r[1] for r in rows], positions=positions, cell=CELL, pbc=True)
    atoms.wrap()
    index = {role: k for k, (role, _, _) in enumerate(rows)}
    return atoms, names, unwrapped, index


def bond_geometry(atoms, index, unwrapped, r1, r2, t_inplane):
    """Length and the full LOBSTER translation of atom 2 for the wrapped atoms (test-side geometry)."""
    v = unwrapped[r2] + t_inplane[0] * CELL[0] + t_inplane[1] * CELL[1] - unwrapped[r1]
    length = float(np.linalg.norm(v))
    f = atoms.get_scaled_positions(wrap=True)
    i, j = index[r1], index[r2]
    frac_needed = np.linalg.solve(CELL.T, v)  # f[j] + t - f[i] must equal this
    t = np.rint(frac_needed - (f[j] - f[i])).astype(int)
    assert np.allclose(f[j] + t - f[i], frac_needed, atol=1e-9)
    return length, tuple(int(x) for x in t), float(v[2])


def write_icohplist(path, entries, fmt):
    """entries: (label, name1, name2, length, translation, icohp_up, icohp_down or None, num)."""
    lines = []
    if fmt in ("5.1", "3.1"):
        lines.append("  COHP#       atomMU       atomNU     distance     translation      ICOHP (at) eF   for spin  1")
    elif fmt == "5.1-spin":
        lines.append("  COHP#    atomMU    atomNU   distance   translation   ICOHP (at) eF    ICOHP (at) eF ")
        lines.append("                                                          for spin 1       for spin 2 ")
    elif fmt == "2.2":
        lines.append("  COHP#  atomMU  atomNU     distance          ICOHP(eF) avg. over # bonds  for spin  1")
    for label, a1, a2, length, t, up, down, num in entries:
        if fmt == "2.2":
            lines.append(f"{label:7d} {a1:>7s} {a2:>7s} {length:12.5f} {up:18.5f} {num:17d}")
            continue
        tr = f"{t[0]:7d}{t[1]:4d}{t[2]:4d}"
        if fmt == "5.1-spin":
            lines.append(f"{label:7d} {a1:>9s} {a2:>9s} {length:10.5f} {tr} {up:15.5f} {down:16.5f} ")
            for o1, o2 in (("2s", "2s"), ("2p_z", "2s")):  # orbital lines, which must not be counted
                lines.append(f"{label:7d} {a1 + '_' + _orb(a1, o1):>9s} {a2 + '_' + _orb(a2, o2):>9s} {length:10.5f} {tr} {9.9:15.5f} {9.9:16.5f} ")
        else:
            lines.append(f"{label:7d} {a1:>12s} {a2:>12s} {length:12.5f} {tr} {up:18.5f} ")
            if fmt == "5.1":
                for o1, o2 in (("2s", "2s"), ("2p_z", "2s")):
                    lines.append(f"{label:7d} {a1 + '_' + _orb(a1, o1):>12s} {a2 + '_' + _orb(a2, o2):>12s} {length:12.5f} {tr} {9.9:18.5f} ")
    Path(path).write_text("\n".join(lines) + "\n")


def _orb(name, orb):
    return {"2s": "4s", "2p_z": "3d_z^2"}[orb] if name.startswith("Cu") else orb


def write_cohpcar(path, entries, curves_up, curves_down=None):
    nb = len(entries)
    spin = curves_down is not None
    lines = ["COHPCAR file generated by LOBSTER. Energy is shifted such that the Fermi level lies at 0 eV.",
             f"{nb + 1:7d}{2 if spin else 1:8d}{len(ENERGY):8d}{ENERGY[0] + EFERMI:12.5f}{ENERGY[-1] + EFERMI:12.5f}{EFERMI:12.5f}",
             "Average"]
    for label, a1, a2, length, *_ in entries:
        lines.append(f"No.{label}:{a1}->{a2}({length:.5f})")
    blocks = [curves_up] + ([curves_down] if spin else [])
    for e_idx, e in enumerate(ENERGY):
        cols = [e]
        for curves in blocks:
            avg = np.mean([c[e_idx] for c in curves])
            cols += [avg, 0.0]
            for c in curves:
                cols += [c[e_idx], 0.0]
        lines.append(" ".join(f"{x:.6f}" for x in cols))
    Path(path).write_text("\n".join(lines) + "\n")


def make_folder(folder, termination="bare", cu_above=False, z_shift=0.0, fmt="5.1", lobsterout=True, num=None):
    """A fake finished LOBSTER folder; returns {bond number: (length, dz)} from the test-side geometry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atoms, names, unwrapped, index = build_slab(termination, cu_above, z_shift)
    ase_write(folder / "POSCAR", atoms, format="vasp", direct=True)
    entries, geometry, up, down = [], {}, [], []
    for k, (r1, r2, t, icohp, scale) in enumerate(BONDS, start=1):
        length, trans, dz = bond_geometry(atoms, index, unwrapped, r1, r2, t)
        geometry[k] = (length, dz)
        n = (num or {}).get(k, 1)
        if fmt == "5.1-spin":
            entries.append((k, names[r1], names[r2], length, trans, icohp / 2 + 0.1, icohp / 2 - 0.1, n))
            up.append(-scale * SHAPE * 0.5 + 0.01 * ENERGY)
            down.append(-scale * SHAPE * 0.5 - 0.01 * ENERGY)
        else:
            entries.append((k, names[r1], names[r2], length, trans, icohp, None, n))
            up.append(-scale * SHAPE)
    write_icohplist(folder / "ICOHPLIST.lobster", entries, fmt)
    write_cohpcar(folder / "COHPCAR.lobster", entries, up, down if fmt == "5.1-spin" else None)
    if lobsterout:
        (folder / "lobsterout").write_text("LOBSTER v5.1.1\nabs. total spilling:   1.23 %\nfinished in 0 h 0 min 1 s 0 ms of wall time\n")
    return geometry, names


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


# ---------------------------------------------------------------------------------------
# errors: one line, key cohp.lobster_dir
# ---------------------------------------------------------------------------------------
def _error(folder, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        cohp.analyse_lobster_folder(folder, **kw)
    exc = info.value
    assert exc.key == "cohp.lobster_dir"
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


# ---------------------------------------------------------------------------------------
# input writing
# ---------------------------------------------------------------------------------------
def _heterostructure(n_fraction=0.0, left="cu", right="diamond", n_cells=6, buffer=4, repeat=(1, 1)):
    from hpc_itc.core import structure as st
    from hpc_itc.config import validate

    cfg = validate({"structure": {"left_material": left, "right_material": right, "n_cells_left": n_cells, "n_cells_right": n_cells,
                                  "buffer_cells": buffer, "n_fraction": n_fraction, "inplane_repeat": list(repeat)}})
    spec = st.InterfaceSpec.from_config(cfg["structure"])
    lc, rc, strain = st.lead_cells(spec, cfg.lattice_constant("left"), cfg.lattice_constant("right"))
    return st.build(spec, lc, rc), strain


@pytest.mark.parametrize("n_fraction,left,thickness", [(0.0, "cu", 30.0), (1.0, "cu", 30.0), (0.5, "diamond", 20.0)])
def test_write_inputs_parsable(tmp_path, n_fraction, left, thickness):
    from pymatgen.io.lobster import Lobsterin
    from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

    right = "diamond" if left == "cu" else "cu"
    het, _ = _heterostructure(n_fraction, left, right, repeat=(2, 1) if n_fraction == 0.5 else (1, 1))
    out = tmp_path / "lob"
    summary = cohp.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, out, thickness_A=thickness)
    for name in ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec", "lobsterin", "README.txt", "slab_provenance.json"):
        assert (out / name).is_file(), name
    assert not (out / "POTCAR").exists()

    incar = Incar.from_file(out / "INCAR")
    assert str(incar["GGA"]).upper() == "PS"
    assert incar["ENCUT"] == 600 and incar["ISMEAR"] == 0 and incar["SIGMA"] == pytest.approx(0.05)
    assert incar["EDIFF"] == pytest.approx(1e-6) and incar["ISYM"] == 0 and incar["NSW"] == 0 and incar["LWAVE"]
    assert incar.get("ISPIN", 1) == 1 and "MAGMOM" not in incar

    poscar = Poscar.from_file(out / "POSCAR")
    s = poscar.structure
    elements = list(dict.fromkeys(site.specie.symbol for site in s))
    assert (out / "POTCAR.spec").read_text().split() == elements
    assert ("N" in elements) == (n_fraction > 0)
    nbasis = {"Cu": 6, "C": 4, "N": 4}
    assert incar["NBANDS"] == sum(nbasis[site.specie.symbol] for site in s)
    mesh = Kpoints.from_file(out / "KPOINTS").kpts[0]
    recip = s.lattice.reciprocal_lattice.abc  # with 2 pi
    assert list(mesh) == [max(1, int(np.ceil(b / 0.4 - 1e-9))) for b in recip]
    assert mesh[2] == 1

    # geometry: in-plane cell kept, c normal, vacuum, thickness within one layer of the request
    np.testing.assert_allclose(s.lattice.matrix[:2], np.asarray(het.atoms.cell)[:2], atol=1e-8)
    z = s.cart_coords[:, 2]
    extent = z.max() - z.min()
    step = max(het.left_lead.layer_step_A, het.right_lead.layer_step_A)
    assert abs(extent - thickness) <= step
    assert s.lattice.c - extent == pytest.approx(15.0, abs=1e-6)
    assert summary["thickness_A"] == pytest.approx(extent, abs=1e-6)

    lob = Lobsterin.from_file(out / "lobsterin")
    assert sorted(lob["basisfunctions"]) == sorted(f"{el} {cohp.BASIS[el]}" for el in elements)
    assert "cohpgenerator" in lob and lob["COHPstartEnergy"] <= -25
    assert lob["gaussianSmearingWidth"] == pytest.approx(0.05)

    # provenance: every POSCAR site is its heterostructure atom (same element, same relative position), whole layers
    prov = json.loads((out / "slab_provenance.json").read_text())
    assert len(prov["atoms"]) == len(s)
    src = np.array([a["source_index"] for a in prov["atoms"]])
    assert [a["symbol"] for a in prov["atoms"]] == [het.atoms[i].symbol for i in src] == [site.specie.symbol for site in s]
    d_het = het.atoms.positions[src] - het.atoms.positions[src[0]]
    d_new = s.cart_coords - s.cart_coords[0]
    np.testing.assert_allclose(d_het[:, 2], d_new[:, 2], atol=1e-6)
    for sd, lfi in {(a["side"], a["layer_from_interface"]) for a in prov["atoms"]}:
        whole = np.flatnonzero((het.side == sd) & (het.layer_from_interface == lfi))
        assert set(whole) <= set(src), (sd, lfi)
    kept_layers = {a["layer_from_interface"] for a in prov["atoms"]}
    assert kept_layers == set(range(-prov["n_layers"]["left"], 0)) | set(range(1, prov["n_layers"]["right"] + 1))
    assert "POTCAR" in (out / "README.txt").read_text()


def test_write_inputs_thinner_structure_uses_all_layers(tmp_path):
    het, _ = _heterostructure(n_cells=2, buffer=1)
    summary = cohp.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "o", thickness_A=30.0)
    assert summary["truncated"] and summary["n_atoms"] == len(het.atoms)


def test_write_inputs_bad_arguments(tmp_path):
    het, _ = _heterostructure()
    for kw in ({"thickness_A": 0.0}, {"vacuum_A": 1.0}):
        with pytest.raises(InputError) as info:
            cohp.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "o", **kw)
        assert "\n" not in info.value.message
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        cohp.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "file")


def _fake_lobster_for(out, cutoff=3.0, seed=0):
    """LOBSTER-like outputs for a POSCAR written by write_lobster_inputs: every pair closer than cutoff."""
    from ase.io import read
    from ase.neighborlist import neighbor_list

    atoms = read(out / "POSCAR", format="vasp")
    i, j, d, D, S = neighbor_list("ijdDS", atoms, cutoff)
    keep = (i < j) | ((i == j) & [tuple(x) > (0, 0, 0) for x in S])
    rng = np.random.default_rng(seed)
    syms = atoms.get_chemical_symbols()
    entries, curves = [], []
    for k, (a, b, dist, s) in enumerate(zip(i[keep], j[keep], d[keep], S[keep]), start=1):
        entries.append((k, f"{syms[a]}{a + 1}", f"{syms[b]}{b + 1}", float(dist), tuple(int(x) for x in s), -float(rng.uniform(0.1, 5.0)), None, 1))
        curves.append(-rng.uniform(0.5, 1.5) * SHAPE)
    write_icohplist(out / "ICOHPLIST.lobster", entries, "5.1")
    write_cohpcar(out / "COHPCAR.lobster", entries, curves)
    return entries, D[keep]


@pytest.mark.parametrize("n_fraction,left", [(0.0, "cu"), (1.0, "cu"), (1.0, "diamond")])
def test_round_trip_layers_match_bookkeeping(tmp_path, n_fraction, left):
    """Analysis of a folder written by write_lobster_inputs: the geometric layers are the bookkeeping's -1 / +1 layers."""
    right = "diamond" if left == "cu" else "cu"
    het, _ = _heterostructure(n_fraction, left, right)
    out = tmp_path / "lob"
    cohp.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, out)
    entries, vectors = _fake_lobster_for(out)
    prov = json.loads((out / "slab_provenance.json").read_text())
    first = {a["poscar_index"] for a in prov["atoms"] if a["layer_from_interface"] in (-1, 1)}
    expected = [e for e, v in zip(entries, vectors)
                if int(e[1].lstrip("CuN")) in first and int(e[2].lstrip("CuN")) in first and abs(v[2]) > 0.3]
    res = cohp.analyse_lobster_folder(out)
    assert sorted(int(b.label) for b in res.bonds) == sorted(e[0] for e in expected)
    assert res.minus_icohp_mean_eV == pytest.approx(np.mean([-e[5] for e in expected]), abs=1e-5)
    cu_side = "left" if left == "cu" else "right"
    assert [i + 1 for i in res.layers.cu_layer] == prov["first_layers_poscar_index"][cu_side]
    d_side = "right" if left == "cu" else "left"
    assert sorted(i + 1 for p in res.layers.diamond_planes for i in p) == sorted(prov["first_layers_poscar_index"][d_side])
    assert res.layers.cu_side == ("below" if left == "cu" else "above")
    assert set(res.per_type) <= {"C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N", "C(2)-Cu"}
    assert ("N-Cu" in res.per_type) == (n_fraction > 0) and ("C-N" in res.per_type) == (n_fraction > 0)


def test_inputs_from_results_file(tmp_path, capsys):
    from hpc_itc.stages.context import write_heterostructure
    from hpc_itc.store.file import ResultsFile

    het, strain = _heterostructure(1.0)
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("0" * 64, "")
    with pytest.raises(InputError) as info:
        cohp.cohp_inputs_from_results(rf.path, tmp_path / "x")
    assert info.value.key == "result" and "relax" in info.value.message
    rf.write_stage("relax", lambda g: write_heterostructure(g, het, strain), 1.0)
    assert cohp.cohp_inputs_main(str(rf.path), str(tmp_path / "lob"), 25.0) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "POTCAR" in line
    prov = json.loads((tmp_path / "lob" / "slab_provenance.json").read_text())
    assert prov["source"]["results_file"] == str(rf.path.resolve()) and prov["source"]["input_sha256"] == "0" * 64
    assert abs(prov["thickness_A"] - 25.0) <= het.left_lead.layer_step_A
    with pytest.raises(InputError):
        cohp.cohp_inputs_from_results(tmp_path / "missing.h5", tmp_path / "y")


# ---------------------------------------------------------------------------------------
# stage
# ---------------------------------------------------------------------------------------
def _ctx(tmp_path, lobster_dir):
    from hpc_itc.config import RunConfig
    from hpc_itc.parallel import SerialComm
    from hpc_itc.stages.context import Context
    from hpc_itc.store.file import ResultsFile

    cfg = RunConfig(data={"cohp": {"lobster_dir": lobster_dir}}, source=tmp_path / "in.toml", base_dir=tmp_path)
    rf = ResultsFile(tmp_path / "r.h5")
    if not rf.exists():
        rf.check_or_create("0" * 64, "")
        rf.write_stage("relax", lambda g: g.attrs.__setitem__("marker", 7), 1.0)
    return Context(cfg=cfg, results=rf, comm=SerialComm())


def test_stage_writes_group(tmp_path):
    make_folder(tmp_path / "lob", "half", cu_above=True)
    ctx = _ctx(tmp_path, "lob")  # relative to the input file's folder
    assert not cohp.stage_is_current(ctx)
    cohp.stage_cohp(ctx)
    assert cohp.stage_is_current(ctx)
    assert not cohp.stage_is_current(_ctx(tmp_path, str(tmp_path / "other")))
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
        summary = cohp.summary_from_group(g)
    assert summary["per_type"]["C(1)-C(2)"] == {"count": 1, "minus_icohp_eV": pytest.approx(5.4), "length_A": pytest.approx(summary["per_type"]["C(1)-C(2)"]["length_A"])}
    assert summary["n_bonds"] == len(KEPT)


def test_stage_error_leaves_file_alone(tmp_path):
    ctx = _ctx(tmp_path, "missing")
    before = (tmp_path / "r.h5").read_bytes()
    with pytest.raises(InputError) as info:
        cohp.stage_cohp(ctx)
    assert info.value.key == "cohp.lobster_dir" and "\n" not in info.value.message
    assert (tmp_path / "r.h5").read_bytes() == before
    with h5py.File(ctx.results.path, "r") as f:
        assert "cohp" not in f and f["relax"].attrs["marker"] == 7


def test_stage_without_folder_does_nothing(tmp_path):
    ctx = _ctx(tmp_path, "")
    cohp.stage_cohp(ctx)
    with h5py.File(ctx.results.path, "r") as f:
        assert "cohp" not in f
