"""The Cu/N_x/diamond builder: counts, spacings, termination, and bulk continuity."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from hpc_itc import config
from hpc_itc.core.structure import InterfaceSpec, build, cubic_layer_cell, lead_cells, terminal_diamond_plane


def spec(**over):
    cfg = config.validate({"structure": over})
    return InterfaceSpec.from_config(cfg.structure)


def het_for(**over):
    s = spec(**over)
    lat = {"cu": 3.615, "diamond": 3.567}
    left, right, strain = lead_cells(s, lat[s.left_material], lat[s.right_material])
    return build(s, left, right), strain


def test_counts_and_regions():
    het, _ = het_for(n_cells_left=5, n_cells_right=4, buffer_cells=2, inplane_repeat=[2, 1])
    n_cu = (5 + 2) * 2 * 1
    n_c = (4 + 2) * 2 * 2
    symbols = het.atoms.get_chemical_symbols()
    assert symbols.count("Cu") == n_cu and symbols.count("C") == n_c
    assert len(het.device_indices) == 5 * 2 + 4 * 2 * 2
    assert set(het.layer_from_interface[het.side == 0]) == set(range(-7, 0))


def test_layer_cells_are_primitive_cells():
    for material, a, n_basis in (("cu", 3.615, 1), ("diamond", 3.567, 2)):
        cell = cubic_layer_cell(material, a)
        assert cell.volume_A3 == pytest.approx(a**3 / 4)
        assert cell.n_basis == n_basis
        # reciprocal b3 is normal to the interface
        b = np.linalg.inv(cell.lattice).T
        assert abs(b[2, 0]) < 1e-12 and abs(b[2, 1]) < 1e-12


def test_bulk_neighbours():
    """Cu has 12 neighbours at a/sqrt2; diamond 4 at a sqrt3/4 (cubic, unstrained)."""
    for material, a, count, dist in (("cu", 3.615, 12, 3.615 / np.sqrt(2)), ("diamond", 3.567, 4, 3.567 * np.sqrt(3) / 4)):
        atoms = cubic_layer_cell(material, a).atoms().repeat((3, 3, 3))
        i, d = neighbor_list("id", atoms, dist + 0.05)
        counts = np.bincount(i, minlength=len(atoms))
        assert set(counts) == {count}
        assert np.allclose(d, dist, atol=1e-9)


def test_strain_on_chosen_side():
    s = spec(strained_side="left")
    left, right, record = lead_cells(s, 3.615, 3.567)
    assert left.inplane_A == pytest.approx(right.inplane_A) == pytest.approx(3.567 / np.sqrt(2))
    assert record["inplane_strain"] == pytest.approx(3.567 / 3.615 - 1)
    s = spec(strained_side="right")
    left, right, record = lead_cells(s, 3.615, 3.567)
    assert right.inplane_A == pytest.approx(3.615 / np.sqrt(2))


def test_nitrogen_termination_fraction_and_reproducibility():
    het, _ = het_for(n_fraction=1.0)
    plane = terminal_diamond_plane(het)
    assert len(plane) == 1 and het.atoms[plane[0]].symbol == "N"
    # the N plane is the diamond plane closest to the interface
    z_cu_max = het.atoms.positions[het.side == 0, 2].max()
    z_c = het.atoms.positions[het.side == 1, 2]
    assert het.atoms.positions[plane[0], 2] == pytest.approx(z_c.min())
    # default gap: the N-Cu bond on the bridge site is the sum of covalent radii (N 0.71, Cu 1.32 Å)
    gap = het.atoms.positions[plane[0], 2] - z_cu_max
    assert np.hypot(gap, het.left_lead.inplane_A / 2) == pytest.approx(0.71 + 1.32)
    a, _ = het_for(n_fraction=0.5, inplane_repeat=[2, 2], n_seed=3)
    b, _ = het_for(n_fraction=0.5, inplane_repeat=[2, 2], n_seed=3)
    assert a.atoms.get_chemical_symbols().count("N") == 2
    assert list(a.n_sites) == list(b.n_sites)


def test_identical_junction_is_perfect_crystal():
    """diamond | diamond with spacing a/4 and the default shift continues the lattice."""
    het, _ = het_for(left_material="diamond", right_material="diamond", interface_spacing_A=3.567 / 4,
                     n_cells_left=3, n_cells_right=3, buffer_cells=1)
    atoms = het.atoms.copy()
    atoms.pbc = (True, True, False)
    i, d = neighbor_list("id", atoms, 1.7)
    inner = np.flatnonzero((het.layer_from_interface >= -3) & (het.layer_from_interface <= 3))
    counts = np.bincount(i, minlength=len(atoms))
    assert set(counts[inner]) == {4}
    assert np.allclose(d, 3.567 * np.sqrt(3) / 4, atol=1e-9)
