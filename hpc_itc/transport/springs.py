"""Central-force spring models of Cu/diamond-like interfaces (tests and benchmarks; no MLIP).

The transport solver's cost depends on the geometry (atoms per layer, principal
layer size, device length) and on the force-constant range, not on where the
force constants came from.  This module builds force constants of any structure
made by :mod:`hpc_itc.structure` from pair springs

    Phi_ij = -k(r_ij) r_ij r_ij^T / r_ij^2   (i != j),     Phi_ii = -sum_j Phi_ij,

with ``k(r) = k0 (r0 / r)^6`` per element pair and every pair up to ``cutoff_A``.
A sum of such terms is positive semi-definite (mechanically stable), satisfies
the acoustic sum rule exactly and has every point symmetry of the geometry to
rounding.  Defaults are tuned to give roughly the right band widths (Cu up to
~8 THz, diamond up to ~40 THz); they are not a fit to anything.
"""

from __future__ import annotations

import itertools

import numpy as np
from ase.data import atomic_masses, atomic_numbers

from ..harmonic import RealSpaceIFC
from ..structure import InterfaceSpec, build, cubic_layer_cell, lead_cells

# (k0 eV/Å^2, r0 Å) per unordered element pair
DEFAULT_SPRINGS = {
    ("Cu", "Cu"): (1.3, 2.55),
    ("C", "C"): (14.0, 1.54),
    ("C", "Cu"): (3.0, 2.0),
    ("C", "N"): (14.0, 1.50),
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
    k_of = _law(springs or DEFAULT_SPRINGS)
    lattice = np.asarray(lattice, float)
    positions = np.asarray(positions, float)
    n = len(positions)
    # enough images to reach the cutoff from any atom of the cell
    span = positions.max(axis=0) - positions.min(axis=0)
    reach = []
    for axis in range(3 if periodic_z else 2):
        other = np.delete(np.arange(3), axis)
        normal = np.cross(lattice[other[0]], lattice[other[1]])
        height = abs(lattice[axis] @ normal) / np.linalg.norm(normal)
        reach.append(int(np.ceil((cutoff_A + np.linalg.norm(span)) / height)) + 1)
    if not periodic_z:
        reach.append(0)
    rows_i, rows_j, shifts, phis = [], [], [], []
    onsite = np.zeros((n, 3, 3))
    for s in itertools.product(*(range(-r, r + 1) for r in reach)):
        t = np.array(s) @ lattice
        d = positions[None, :, :] + t - positions[:, None, :]  # (i, j, 3)
        r = np.linalg.norm(d, axis=2)
        ii, jj = np.nonzero((r <= cutoff_A + 1e-9) & (r > 1e-6))
        for i, j in zip(ii, jj):
            rij = r[i, j]
            u = d[i, j] / rij
            blk = -float(k_of(symbols[i], symbols[j], rij)) * np.outer(u, u)
            rows_i.append(i)
            rows_j.append(j)
            shifts.append(s)
            phis.append(blk)
            onsite[i] -= blk
    for i in range(n):
        rows_i.append(i)
        rows_j.append(i)
        shifts.append((0, 0, 0))
        phis.append(onsite[i])
    masses = np.array([atomic_masses[atomic_numbers[x]] for x in symbols])
    return RealSpaceIFC(lattice, positions, masses, np.array(rows_i), np.array(rows_j),
                        np.array(shifts, dtype=int).reshape(-1, 3), np.array(phis).reshape(-1, 3, 3))


def spring_interface(n_left: int, n_right: int, cutoff_A: float = 6.0, *, left: str = "cu", right: str = "diamond",
                     inplane_repeat=(1, 1), interface_spacing_A: float = 1.8, n_fraction: float = 0.0,
                     springs: dict | None = None):
    """Lead primitive IFCs and device IFC of a left|right junction built by :func:`hpc_itc.structure.build`.

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
