"""VASP + LOBSTER input writing (hpc_itc.core.lobster_inputs) and the round trip through the analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lobster_fixtures import SHAPE, write_cohpcar, write_icohplist

from hpc_itc.core import cohp
from hpc_itc.core import lobster_inputs as li
from hpc_itc.errors import InvalidInput


# ---------------------------------------------------------------------------------------
# input writing
# ---------------------------------------------------------------------------------------
def _heterostructure(n_fraction=0.0, left="cu", right="diamond", n_cells=6, buffer=4, repeat=(1, 1)):
    from hpc_itc.config import validate
    from hpc_itc.core import structure as st

    cfg = validate({"structure": {"left_material": left, "right_material": right, "n_cells_left": n_cells, "n_cells_right": n_cells,
                                  "buffer_cells": buffer, "n_fraction": n_fraction, "inplane_repeat": list(repeat)}})
    spec = st.InterfaceSpec.from_config(cfg.structure)
    lc, rc, strain = st.lead_cells(spec, cfg.lattice_constant("left"), cfg.lattice_constant("right"))
    return st.build(spec, lc, rc), strain


@pytest.mark.parametrize("n_fraction,left,thickness", [(0.0, "cu", 30.0), (1.0, "cu", 30.0), (0.5, "diamond", 20.0)])
def test_write_inputs_parsable(tmp_path, n_fraction, left, thickness):
    from pymatgen.io.lobster import Lobsterin
    from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

    right = "diamond" if left == "cu" else "cu"
    het, _ = _heterostructure(n_fraction, left, right, repeat=(2, 1) if n_fraction == 0.5 else (1, 1))
    out = tmp_path / "lob"
    summary = li.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, out, thickness_A=thickness)
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
    assert sorted(lob["basisfunctions"]) == sorted(f"{el} {li.BASIS[el]}" for el in elements)
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
    summary = li.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "o", thickness_A=30.0)
    assert summary["truncated"] and summary["n_atoms"] == len(het.atoms)


def test_write_inputs_bad_arguments(tmp_path):
    het, _ = _heterostructure()
    for kw in ({"thickness_A": 0.0}, {"vacuum_A": 1.0}):
        with pytest.raises(InvalidInput) as info:
            li.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "o", **kw)
        assert "\n" not in info.value.message
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput):
        li.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, tmp_path / "file")


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
    li.write_lobster_inputs(het.atoms, het.side, het.layer_from_interface, out)
    entries, vectors = _fake_lobster_for(out)
    prov = json.loads((out / "slab_provenance.json").read_text())
    first = {a["poscar_index"] for a in prov["atoms"] if a["layer_from_interface"] in (-1, 1)}
    expected = [e for e, v in zip(entries, vectors)
                if int(e[1].lstrip("CuN")) in first and int(e[2].lstrip("CuN")) in first and abs(v[2]) > 0.3]
    res = cohp.analyse_lobster_folder(out)
    assert sorted(int(b.label) for b in res.bonds) == sorted(e[0] for e in expected)
    assert res.minus_icohp_mean_eV == pytest.approx(np.mean([-e[5] for e in expected]), abs=1e-5)
    cu_side = "left" if left == "cu" else "right"
    d_side = "right" if left == "cu" else "left"
    assert res.layers.kind == "interface"
    assert [i + 1 for i in res.layers.side("Cu").first_layer] == prov["first_layers_poscar_index"][cu_side]
    assert [i + 1 for i in res.layers.side("diamond").first_layer] == sorted(prov["first_layers_poscar_index"][d_side])
    assert res.layers.side("Cu").position == ("below" if left == "cu" else "above")
    assert set(res.per_type) <= {"C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N", "C(2)-Cu"}
    assert ("N-Cu" in res.per_type) == (n_fraction > 0) and ("C-N" in res.per_type) == (n_fraction > 0)


