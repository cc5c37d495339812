"""Central-force spring models of Cu/diamond-like interfaces (tests and benchmarks; no MLIP).

The transport solver's cost depends on the geometry (atoms per layer, principal
layer size, device length) and on the force-constant range, not on where the
force constants came from.  This module builds force constants of any structure
made by :mod:`hpc_itc.core.structure` from pair springs

    Phi_ij = -k(r_ij) r_ij r_ij^T / r_ij^2   (i != j),     Phi_ii = -sum_j Phi_ij,

with ``k(r) = k0 (r0 / r)^6`` per element pair and every pair up to ``cutoff_A``.
A sum of such terms is positive semi-definite (mechanically stable), satisfies
the acoustic sum rule exactly and has every point symmetry of the geometry to
rounding.  Defaults are tuned to give roughly the right band widths (Cu up to
~8 THz, diamond up to ~40 THz); they are not a fit to anything.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses, atomic_numbers

from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.core.structure import InterfaceSpec, build, cubic_layer_cell, lead_cells

# (k0 eV/Å^2, r0 Å) per unordered element pair
DEFAULT_SPRINGS = {
    ("Cu", "Cu"): (1.55, 2.55),
    ("C", "C"): (25.0, 1.54),
    ("C", "Cu"): (3.0, 2.0),
    ("C", "N"): (22.0, 1.50),
    ("Cu", "N"): (3.0, 2.0),
    ("N", "N"): (10.0, 1.50),
}


def _law(springs):
    def k_of(a: str, b: str, r: np.ndarray) -> np.ndarray:
        k0, r0 = springs[tuple(sorted((a, b)))]
        return k0 * (r0 / r) ** 6

    return k_of


def spring_ifc(lattice: np.ndarray, positions: np.ndarray, symbols: list[str], periodic_z: bool, cutoff_A: float,
               springs: dict | None = None) -> RealSpaceIFC:
    """Pair springs of a crystal periodic along a1, a2 (and a3 when ``periodic_z``), in the cell gauge.

    ``positions`` are unwrapped Cartesian positions (Å); a pair's lattice shift is
    the image it was found at, so the result matches :meth:`RealSpaceIFC.from_phonopy`'s
    conventions (unwrapped frame, one entry per image within the cutoff).
    """
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    k_of = _law(springs or DEFAULT_SPRINGS)
    lattice = np.asarray(lattice, float)
    positions = np.asarray(positions, float)
    n = len(positions)
    cell = lattice.copy()
    if not periodic_z:  # make sure the non-periodic axis is long enough not to matter
        cell[2] = [0.0, 0.0, max(np.ptp(positions[:, 2]) + 2 * cutoff_A + 1.0, 1.0)]
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=(True, True, periodic_z))
    ii, jj, dist, vec, shift = neighbor_list("ijdDS", atoms, cutoff_A + 1e-9, self_interaction=False)
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], jj, ii))
    ii, jj, dist, vec, shift = ii[order], jj[order], dist[order], vec[order], shift[order]
    sym = np.asarray(symbols)
    k = np.empty(len(ii))
    for a in np.unique(sym):
        for b in np.unique(sym):
            sel = (sym[ii] == a) & (sym[jj] == b)
            if sel.any():
                k[sel] = k_of(a, b, dist[sel])
    u = vec / dist[:, None]
    blocks = -k[:, None, None] * u[:, :, None] * u[:, None, :]
    onsite = np.zeros((n, 3, 3))
    np.add.at(onsite, ii, -blocks)
    masses = np.array([atomic_masses[atomic_numbers[x]] for x in symbols])
    return RealSpaceIFC(lattice, positions, masses, np.concatenate([ii, np.arange(n)]),
                        np.concatenate([jj, np.arange(n)]),
                        np.vstack([shift.astype(int), np.zeros((n, 3), int)]),
                        np.concatenate([blocks, onsite]))


def spring_interface(n_left: int, n_right: int, cutoff_A: float = 6.0, *, left: str = "cu", right: str = "diamond",
                     inplane_repeat=(1, 1), interface_spacing_A: float = 1.8, n_fraction: float = 0.0,
                     springs: dict | None = None):
    """Lead primitive IFCs and device IFC of a left|right junction built by :func:`hpc_itc.core.structure.build`.

    The device force constants come from the whole slab (with buffer layers as
    thick as the force-constant reach, so every device atom has all its
    neighbours), restricted to the device atoms: the same recipe as the pipeline.
    Returns ``(left_primitive, right_primitive, device, heterostructure)``.
    """
    a = {"cu": 3.615, "diamond": 3.567}
    spec = InterfaceSpec(left, right, n_left, n_right, 0, tuple(inplane_repeat), "left", interface_spacing_A,
                         (0.0, 0.0), n_fraction, 0, 20.0)
    lcell, rcell, _ = lead_cells(spec, a[left], a[right])
    buffer = int(np.ceil(cutoff_A / min(lcell.layer_step_A, rcell.layer_step_A))) + 1
    spec = InterfaceSpec(left, right, n_left, n_right, buffer, tuple(inplane_repeat), "left", interface_spacing_A,
                         (0.0, 0.0), n_fraction, 0, 20.0)
    het = build(spec, lcell, rcell)
    lp = spring_ifc(lcell.lattice, lcell.positions, lcell.symbols, True, cutoff_A, springs)
    rp = spring_ifc(rcell.lattice, rcell.positions, rcell.symbols, True, cutoff_A, springs)
    slab = spring_ifc(np.array(het.atoms.cell), het.atoms.positions, het.atoms.get_chemical_symbols(), False, cutoff_A,
                      springs)
    device = slab.subset(het.device_indices)
    return lp, rp, device, het


def spring_bulk(material: str, cutoff_A: float = 6.0, springs: dict | None = None) -> RealSpaceIFC:
    """Primitive layer cell of an unstrained cubic crystal with spring force constants."""
    cell = cubic_layer_cell(material, {"cu": 3.615, "diamond": 3.567}[material])
    return spring_ifc(cell.lattice, cell.positions, cell.symbols, True, cutoff_A, springs)
